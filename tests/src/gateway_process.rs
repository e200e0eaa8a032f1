//! The real `sstp-gateway` binary as a child process of a test: built on demand, started in
//! standalone mode on loopback ports, observed through its admin server's `/metrics`, and
//! stopped (SIGTERM, or SIGKILL from `Drop`) by the test.

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{Error, Started, poll_until, wait_http_ready};

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(50);
/// How long a fresh gateway may take to create its PKI, TUN and nftables table and be ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one admin HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Paths of the workspace binaries the real-network tests run.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `sstp-gateway`.
    pub gateway: PathBuf,
    /// `sstp-load`.
    pub load: PathBuf,
}

/// Builds `sstp-gateway`'s binaries (debug profile, once per test process; a no-op when they
/// are up to date) and returns where they are.
pub fn binaries() -> Result<Binaries, Error> {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|err| err.to_string()))
        .clone()
        .map_err(Error::Unavailable)
}

fn build() -> Result<Binaries, Error> {
    let dir = crate::workspace_bins::build("sstp-gateway", &["--bins"])?;
    Ok(Binaries {
        gateway: dir.join("sstp-gateway"),
        load: dir.join("sstp-load"),
    })
}

/// A free TCP port on 127.0.0.1 (free when asked; the gateway binds it right after).
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Io {
        what: "binding 127.0.0.1:0".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| Error::Io {
            what: "reading a bound port".into(),
            source,
        })
}

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `--data-dir` (CA, certificates, users.json, and the gateway's log file `gateway.log`).
    pub data_dir: PathBuf,
    /// `--address-pool`.
    pub address_pool: String,
    /// `--tun-name` (also names the nftables table), at most 15 bytes.
    pub tun_name: String,
    /// `--pap`: offer PAP besides MS-CHAPv2.
    pub pap: bool,
    /// Masquerade (false: `--no-nat`).
    pub nat: bool,
    /// Further flags, e.g. `--max-connections-per-source 2000`.
    pub extra_args: Vec<String>,
}

/// A running gateway. Dropping it kills the process (SIGKILL) if it still runs.
#[derive(Debug)]
pub struct GatewayProcess {
    binary: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
    sstp: SocketAddr,
    admin: SocketAddr,
    data_dir: PathBuf,
}

impl GatewayProcess {
    /// Adds (or re-keys) `name` in `users_file` with `sstp-gateway user add` (password on stdin).
    pub fn add_user(
        binary: &Path,
        users_file: &Path,
        name: &str,
        password: &str,
    ) -> Result<(), Error> {
        let what = format!("sstp-gateway user add {name}");
        let mut child = Command::new(binary)
            .args(["user", "add", "--users-file"])
            .arg(users_file)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Io {
                what: what.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{password}").map_err(|source| Error::Io {
                what: what.clone(),
                source,
            })?;
        }
        finish(child, &what)
    }

    /// Starts `sstp-gateway standalone` with SSTP, HTTP and admin on free 127.0.0.1 ports and
    /// waits until `/readyz` says ready (or fails with the gateway's log when it exits).
    pub fn start(binary: &Path, options: &GatewayOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(&options.data_dir).map_err(|source| Error::Io {
            what: format!("creating {}", options.data_dir.display()),
            source,
        })?;
        let sstp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let log_path = options.data_dir.join("gateway.log");
        let log = File::create(&log_path).map_err(|source| Error::Io {
            what: format!("creating {}", log_path.display()),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| Error::Io {
            what: "duplicating the log file".into(),
            source,
        })?;
        let mut command = Command::new(binary);
        command
            .arg("standalone")
            .arg("--data-dir")
            .arg(&options.data_dir)
            .args(["--listen", &sstp.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--hostname", "localhost"])
            .args(["--address-pool", &options.address_pool])
            .args(["--tun-name", &options.tun_name])
            .args([
                "--log",
                "info,sstp_gateway=debug,sstp_proto=debug,rustls::server::hs=debug",
            ])
            .args(&options.extra_args);
        if options.pap {
            command.arg("--pap");
        }
        if !options.nat {
            command.arg("--no-nat");
        }
        // The gateway reads SSTP_GATEWAY_* variables as flags; the test's own must not leak in.
        for (name, _) in std::env::vars() {
            if name.starts_with("SSTP_GATEWAY_") {
                command.env_remove(name);
            }
        }
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("starting {}", binary.display()),
                source,
            })?;
        let mut gateway = Self {
            binary: binary.to_owned(),
            child,
            exit: None,
            sstp,
            admin,
            data_dir: options.data_dir.clone(),
        };
        gateway.wait_ready()?;
        Ok(gateway)
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let admin = self.admin;
        let started = wait_http_ready(admin, "/readyz", START_TIMEOUT, POLL, || {
            self.try_wait().ok().flatten()
        })?;
        match started {
            Started::Ready => Ok(()),
            Started::Exited(status) => Err(Error::Unavailable(format!(
                "the gateway exited ({status}) while starting; its log:\n{}",
                self.log()
            ))),
            Started::TimedOut => Err(Error::Unavailable(format!(
                "the gateway was not ready within {START_TIMEOUT:?}; its log:\n{}",
                self.log()
            ))),
        }
    }

    /// Removes `name` from this gateway's users file (`sstp-gateway user remove`).
    pub fn remove_user(&self, name: &str) -> Result<(), Error> {
        let what = format!("sstp-gateway user remove {name}");
        let child = Command::new(&self.binary)
            .args(["user", "remove", "--users-file"])
            .arg(self.users_file())
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Io {
                what: what.clone(),
                source,
            })?;
        finish(child, &what)
    }

    /// The SSTP (TLS) listen address.
    pub fn sstp_addr(&self) -> SocketAddr {
        self.sstp
    }

    /// The admin listen address (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CA certificate clients must trust (`DIR/ca.crt`).
    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("ca.crt")
    }

    /// The users file (`DIR/users.json`).
    pub fn users_file(&self) -> PathBuf {
        self.data_dir.join("users.json")
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("gateway.log")).unwrap_or_default()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> Result<String, Error> {
        match http_get(self.admin, "/metrics") {
            Ok((200, body)) => Ok(body),
            Ok((status, _)) => Err(Error::Unavailable(format!("/metrics answered {status}"))),
            Err(source) => Err(Error::Io {
                what: format!("GET http://{}/metrics", self.admin),
                source,
            }),
        }
    }

    /// The value of one series, e.g. `sstp_sessions_active` or
    /// `sstp_sessions_total{result="established"}` (labels written as the gateway writes them);
    /// `None` when the series is absent.
    pub fn metric(&self, series: &str) -> Result<Option<f64>, Error> {
        Ok(metric_value(&self.metrics()?, series))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> Result<(), Error> {
        signal(self.child.id(), Signal::SIGTERM)
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        poll_until(timeout, POLL, || self.try_wait())?.ok_or_else(|| Error::Timeout {
            what: "the gateway to exit".into(),
            after: timeout,
        })
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().map_err(|source| Error::Io {
                what: "waiting for the gateway".into(),
                source,
            })?;
        }
        Ok(self.exit)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> Result<(), Error> {
    let pid =
        i32::try_from(pid).map_err(|_| Error::Unavailable(format!("pid {pid} out of range")))?;
    kill(Pid::from_raw(pid), signal).map_err(|errno| Error::Io {
        what: format!("kill -{signal} {pid}"),
        source: errno.into(),
    })
}

/// The value of `series` (name plus `{labels}` exactly as exposed) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Waits for a finished helper command and turns a failure into an error carrying its stderr.
fn finish(child: Child, what: &str) -> Result<(), Error> {
    let out = child.wait_with_output().map_err(|source| Error::Io {
        what: what.to_owned(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Io {
            what: what.to_owned(),
            source: std::io::Error::other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    }
}

/// `GET path` over HTTP/1.0: (status code, body, lossily UTF-8). HTTP/1.0 because a server then
/// neither chunks the body (Go's, Prometheus') nor keeps the connection open, so reading to EOF
/// is the whole answer. The gateway's, the operator's and Prometheus' servers all answer it.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
