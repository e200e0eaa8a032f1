//! The real Prometheus and promtool for tests: the binaries `tests/prometheus/build` compiles, a
//! Prometheus server as a child process (127.0.0.1, a free port, its own temporary directory for
//! configuration and data, killed and removed on drop) and its HTTP API. [`documented`] reads the
//! metrics the READMEs promise.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use serde_json::Value;

use crate::{
    Error, Started,
    gateway_process::{free_port, http_get},
    wait_http_ready,
};

pub mod documented;

/// Set (to 1) by `tests/run`, which builds Prometheus before the tests: a missing build is then an
/// error, never a skipped test.
pub const REQUIRE_ENV: &str = "SSTP_REQUIRE_PROMETHEUS";
/// A directory with `prometheus` and `promtool` to use instead of the build cache.
pub const BIN_ENV: &str = "PROMETHEUS_BIN";

/// How long a fresh Prometheus may take to replay its (empty) WAL and serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the start-up wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// The exit code of `build --cached` when nothing is built.
const NOT_BUILT: i32 = 3;

/// Where `prometheus` and `promtool` are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The server.
    pub prometheus: PathBuf,
    /// The rules and metrics checker.
    pub promtool: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Self {
        Self {
            prometheus: dir.join("prometheus"),
            promtool: dir.join("promtool"),
        }
    }

    /// `promtool <args>` in `dir` with `stdin` fed to it; its output whatever the exit status.
    pub fn promtool(&self, args: &[&str], dir: &Path, stdin: &str) -> Result<Output, Error> {
        let what = format!("promtool {}", args.join(" "));
        let io = |source| Error::Io {
            what: what.clone(),
            source,
        };
        let mut child = Command::new(&self.promtool)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io)?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).map_err(io)?;
        }
        child.wait_with_output().map_err(io)
    }
}

/// The binaries: from [`BIN_ENV`] when set, else from the cache of `tests/prometheus/build`.
/// `Ok(None)` when they were never built (the caller skips, saying why), except under
/// [`REQUIRE_ENV`], where the build runs (a no-op when cached) and its failure is an error.
pub fn binaries() -> Result<Option<Binaries>, Error> {
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|dir| !dir.is_empty()) {
        return Ok(Some(Binaries::in_dir(Path::new(&dir))));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/build");
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|value| value == "1");
    let mut command = Command::new(&script);
    if !required {
        // A plain `cargo test` must not start a minutes-long Go build by surprise.
        command.arg("--cached");
    }
    let failed = |reason: String| Error::Build {
        script: script.clone(),
        reason,
    };
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| failed(error.to_string()))?;
    if !required && output.status.code() == Some(NOT_BUILT) {
        return Ok(None);
    }
    if !output.status.success() {
        return Err(failed(format!("{}; its errors are above", output.status)));
    }
    let dir = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|line| PathBuf::from(line.trim()))
        .ok_or_else(|| failed("it printed no directory".to_owned()))?;
    Ok(Some(Binaries::in_dir(&dir)))
}

/// Where a Prometheus runs.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// On this host, listening on 127.0.0.1.
    Loopback,
    /// Inside the network namespace `netns` (a real node's, where pod addresses route), listening
    /// on `listen`, an address of that namespace this host reaches.
    Netns {
        /// The namespace's name under /run/netns.
        netns: &'a str,
        /// The address it listens on.
        listen: Ipv4Addr,
    },
}

/// A running Prometheus. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    /// Writes `config` (prometheus.yml) and `files` (name, contents: rule files) into a fresh
    /// directory, starts Prometheus on a free 127.0.0.1 port with its data there, and waits until
    /// `/-/ready` answers 200 (or fails with its log when it exits or takes too long).
    pub fn start(bins: &Binaries, config: &str, files: &[(&str, &str)]) -> Result<Self, Error> {
        Self::start_in(bins, Placement::Loopback, config, files)
    }

    /// [`Prometheus::start`], placed as `placement` says.
    pub fn start_in(
        bins: &Binaries,
        placement: Placement<'_>,
        config: &str,
        files: &[(&str, &str)],
    ) -> Result<Self, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sstp-prometheus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |path: &Path, contents: &str| {
            std::fs::write(path, contents).map_err(|source| Error::Io {
                what: format!("writing {}", path.display()),
                source,
            })
        };
        std::fs::create_dir_all(dir.join("data")).map_err(|source| Error::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        write(&dir.join("prometheus.yml"), config)?;
        for (name, contents) in files {
            write(&dir.join(name), contents)?;
        }
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).map_err(|source| Error::Io {
            what: format!("creating {}", log_path.display()),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| Error::Io {
            what: "duplicating the log file".into(),
            source,
        })?;
        // A port free here is as good as any in a node's namespace, where only the kubelet's,
        // kube-proxy's and pods' ports are taken.
        let port = free_port()?;
        let (mut command, addr) = match placement {
            Placement::Loopback => (
                Command::new(&bins.prometheus),
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ),
            Placement::Netns { netns, listen } => {
                // `ip netns exec` execs the program: the child's pid is Prometheus' own.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&bins.prometheus);
                (command, SocketAddr::from((listen, port)))
            }
        };
        let child = command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // Relative rule_files resolve against the config file's directory anyway; this keeps
            // anything else Prometheus might write out of the test's working directory.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("starting {}", bins.prometheus.display()),
                source,
            })?;
        let mut prometheus = Self { child, addr, dir };
        prometheus.wait_ready()?;
        Ok(prometheus)
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let started = wait_http_ready(self.addr, "/-/ready", START_TIMEOUT, POLL, || {
            self.child.try_wait().ok().flatten()
        })?;
        match started {
            Started::Ready => Ok(()),
            Started::Exited(status) => Err(Error::Unavailable(format!(
                "prometheus exited ({status}) while starting; its log:\n{}",
                self.log()
            ))),
            Started::TimedOut => Err(Error::Unavailable(format!(
                "prometheus was not ready within {START_TIMEOUT:?}; its log:\n{}",
                self.log()
            ))),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET <path_and_query>` of the HTTP API: the `data` of a `"status": "success"` answer.
    pub fn api(&self, path_and_query: &str) -> Result<Value, Error> {
        let (status, body) = http_get(self.addr, path_and_query).map_err(|source| Error::Io {
            what: format!("GET http://{}{path_and_query}", self.addr),
            source,
        })?;
        let answer: Value = serde_json::from_str(&body).map_err(|error| {
            Error::Prometheus(format!(
                "GET {path_and_query}: HTTP {status}, not JSON ({error}): {body}"
            ))
        })?;
        if answer["status"] != "success" {
            return Err(Error::Prometheus(format!(
                "GET {path_and_query}: HTTP {status}: {} {}",
                answer["errorType"], answer["error"]
            )));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query: the result vector (one object per series, `metric` and `value`).
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, Error> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        if data["resultType"] != "vector" && data["resultType"] != "scalar" {
            return Err(Error::Prometheus(format!(
                "{promql}: a {} result, not a vector",
                data["resultType"]
            )));
        }
        Ok(match &data["result"] {
            Value::Array(series) => series.clone(),
            Value::Null => Vec::new(),
            scalar => vec![serde_json::json!({"metric": {}, "value": scalar})],
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a query parameter).
pub fn url_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
