//! One real control plane per test binary, started through `tests/k8s/up --foreground`, with or
//! without real nodes (`--nodes N`: containerd, kubelet and kube-proxy, `tests/k8s/node.sh`).
//!
//! Lifetime: `up` is spawned from a dedicated keeper thread under `setpriv --pdeathsig TERM`, in its
//! own process group. The parent-death signal fires when the spawning *thread* ends, so the keeper
//! thread lives exactly as long as the control plane should: until [`ControlPlane`] is dropped, or
//! until the process exits for the one in [`ControlPlane::shared`] (statics are never dropped). On
//! SIGTERM, or on EOF of its stdin (the keeper holds the write end), `up` stops etcd, kube-apiserver
//! and kube-controller-manager and removes their state; they carry a parent-death SIGKILL of their own
//! in case `up` itself is killed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;

/// Safety net around `up`, which gives up by itself after 120 s; generous so a loaded machine does
/// not turn into a flaky test.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `up` gets to stop its components before its process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// `up`'s own bound when it starts nodes (its default of 120 s is for the control plane alone).
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long an apiserver restart may take, stop and readiness included (`up` itself gives up
/// after its ready timeout, 120 s by default, and tears the control plane down).
const APISERVER_RESTART_BOUND: Duration = Duration::from_secs(180);

/// A running control plane: where its kubeconfig and binaries are.
#[derive(Debug)]
pub struct ControlPlane {
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
    state_dir: Option<PathBuf>,
    startup: Option<Duration>,
    nodes: u8,
    /// Held for its Drop, which stops the control plane.
    _keeper: Option<Keeper>,
}

/// The thread that owns the `up` process; dropping `stop` makes it tear the control plane down.
#[derive(Debug)]
struct Keeper {
    stop: mpsc::Sender<()>,
    thread: Option<thread::JoinHandle<()>>,
}

/// The lines `up` prints once the control plane is ready.
#[derive(Debug, Default)]
struct Ready {
    state_dir: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
}

/// What the keeper thread reports while starting.
enum Event {
    Spawned(u32),
    Ready {
        state_dir: PathBuf,
        kubeconfig: PathBuf,
    },
    Failed(String),
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary: the one named by `KUBECONFIG`
    /// when that is set (binaries from `K8S_BIN`, else from the build cache), otherwise one started
    /// on first use and stopped when the test binary exits. A failed start is remembered, so each
    /// later test fails fast with the same error.
    pub fn shared() -> Result<&'static Self, Error> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let reuse = std::env::var_os("KUBECONFIG").filter(|path| !path.is_empty());
                match reuse {
                    Some(kubeconfig) => Self::existing(PathBuf::from(kubeconfig)),
                    None => Self::start(),
                }
                .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|error| Error::Unavailable(error.clone()))
    }

    /// The control plane with `nodes` real nodes shared by every test of this test binary: the
    /// one named by `KUBECONFIG` when that is set (it must have been started with `up --nodes
    /// N`, N at least `nodes`), otherwise one started on first use and stopped, nodes included,
    /// when the test binary exits. One count per test binary: the first call decides.
    pub fn shared_with_nodes(nodes: u8) -> Result<&'static Self, Error> {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let reuse = std::env::var_os("KUBECONFIG").filter(|path| !path.is_empty());
                match reuse {
                    Some(kubeconfig) => {
                        Self::existing(PathBuf::from(kubeconfig)).map(|mut plane| {
                            plane.nodes = nodes;
                            plane
                        })
                    }
                    None => Self::start_with_nodes(nodes),
                }
                .map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(|error| Error::Unavailable(error.clone()))
    }

    /// Uses an already running control plane given by its kubeconfig.
    pub fn existing(kubeconfig: PathBuf) -> Result<Self, Error> {
        let state_dir = std::env::var_os("SSTP_K8S_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| kubeconfig.parent().map(Path::to_path_buf));
        Ok(Self {
            kubeconfig,
            bin_dir: bin_dir()?,
            state_dir,
            startup: None,
            nodes: 0,
            _keeper: None,
        })
    }

    /// Builds the binaries if the cache lacks them, starts a new control plane and waits until it
    /// is ready. It is stopped, and its state removed, when the returned value drops.
    pub fn start() -> Result<Self, Error> {
        Self::start_with_nodes(0)
    }

    /// [`Self::start`] with `nodes` real nodes, returning once every Node is Ready. Builds the
    /// node runtime (`tests/k8s/build-runtime`) first when the cache lacks it.
    pub fn start_with_nodes(nodes: u8) -> Result<Self, Error> {
        let bin_dir = bin_dir()?;
        let runtime_dir = if nodes > 0 {
            Some(built_dir("build-runtime", "K8S_RUNTIME_BIN")?)
        } else {
            None
        };
        let up = k8s_dir().join("up");
        let began = Instant::now();
        let (events, received) = mpsc::channel();
        let (stop, stop_received) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("k8s-control-plane".to_owned())
            .spawn({
                let bin_dir = bin_dir.clone();
                move || {
                    keep(
                        &up,
                        &bin_dir,
                        runtime_dir.as_deref(),
                        nodes,
                        &events,
                        &stop_received,
                    );
                }
            })
            .map_err(|error| Error::Start(format!("spawning the keeper thread: {error}")))?;
        let mut keeper = Keeper {
            stop,
            thread: Some(thread),
        };

        let mut pid = None;
        let ready = loop {
            let left = READY_TIMEOUT.saturating_sub(began.elapsed());
            match received.recv_timeout(left) {
                Ok(Event::Spawned(id)) => pid = Some(id),
                Ok(Event::Ready {
                    state_dir,
                    kubeconfig,
                }) => break Ok((state_dir, kubeconfig)),
                Ok(Event::Failed(reason)) => break Err(Error::Start(reason)),
                Err(_) => {
                    // Killing the group ends `up`'s output, which ends the keeper thread.
                    if let Some(pid) = pid {
                        signal_group(pid, "KILL");
                    }
                    break Err(Error::Start(format!(
                        "tests/k8s/up did not report a ready control plane within {READY_TIMEOUT:?}"
                    )));
                }
            }
        };
        let (state_dir, kubeconfig) = match ready {
            Ok(ready) => ready,
            Err(error) => {
                keeper.shut_down();
                return Err(error);
            }
        };
        let startup = began.elapsed();
        // Straight to stderr, past the test harness's output capture, so every run's log shows it.
        let _ = writeln!(
            std::io::stderr(),
            "sstp-e2e: control plane ready in {:.1}s with {nodes} node(s) ({})",
            startup.as_secs_f64(),
            state_dir.display()
        );
        Ok(Self {
            kubeconfig,
            bin_dir,
            state_dir: Some(state_dir),
            startup: Some(startup),
            nodes,
            _keeper: Some(keeper),
        })
    }

    /// The admin kubeconfig (static token in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory holding kubectl, helm, kube-apiserver, kube-controller-manager and etcd.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The state directory: of a control plane this harness started, or for a reused one
    /// `SSTP_K8S_DIR`, else the directory of its kubeconfig (where `up` puts it).
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// How many real nodes it has (0: Pods are stored, never run).
    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// From spawning `up` to its ready report, for a control plane this harness started.
    pub fn startup_time(&self) -> Option<Duration> {
        self.startup
    }

    /// Restarts kube-apiserver (the control plane going away and coming back: same etcd, port and
    /// certificates) and returns once it is ready again, with how long it was gone. Only for a
    /// control plane this harness started.
    pub fn restart_apiserver(&self) -> Result<Duration, Error> {
        let (Some(dir), Some(_)) = (&self.state_dir, &self._keeper) else {
            return Err(Error::Unavailable(
                "only a control plane this harness started can restart its apiserver".into(),
            ));
        };
        let restarts = dir.join("apiserver-restarts");
        let count = || {
            std::fs::read_to_string(&restarts)
                .map(|text| text.lines().count())
                .unwrap_or(0)
        };
        let before = count();
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Io { what, source }
        };
        let pid: i32 = std::fs::read_to_string(dir.join("up.pid"))
            .map_err(io("reading up.pid"))?
            .trim()
            .parse()
            .map_err(|_| Error::Unavailable("up.pid holds no pid".into()))?;
        let started = std::time::Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|errno| Error::Unavailable(format!("signalling up ({pid}): {errno}")))?;
        crate::poll_until(APISERVER_RESTART_BOUND, Duration::from_millis(100), || {
            Ok((count() > before).then_some(()))
        })?
        .ok_or(Error::Timeout {
            what: "kube-apiserver to come back".into(),
            after: APISERVER_RESTART_BOUND,
        })?;
        Ok(started.elapsed())
    }

    /// A command running the named binary from [`Self::bin_dir`] with `KUBECONFIG` set.
    pub fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(binary));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// A client with admin rights. Make one per test: a client belongs to the async runtime it was
    /// made in.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let invalid = |reason: String| Error::Kubeconfig {
            path: self.kubeconfig.clone(),
            reason,
        };
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|error| invalid(error.to_string()))?;
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|error| invalid(error.to_string()))?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Keeper {
    /// Tells the keeper thread to stop the control plane and waits until it has.
    fn shut_down(&mut self) {
        // Replacing the sender drops the only other one, which wakes the keeper thread.
        drop(std::mem::replace(&mut self.stop, mpsc::channel().0));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The keeper thread: spawns `up`, reports its pid and its ready lines, then holds it until told to
/// stop (never, for the shared control plane) and stops it.
fn keep(
    up: &Path,
    bin_dir: &Path,
    runtime_dir: Option<&Path>,
    nodes: u8,
    events: &mpsc::Sender<Event>,
    stop: &mpsc::Receiver<()>,
) {
    let mut command = Command::new("setpriv");
    command
        .args(["--pdeathsig", "TERM", "--"])
        .arg(up)
        .arg("--foreground")
        .env("K8S_BIN", bin_dir)
        .env_remove("KUBECONFIG");
    if let Some(runtime_dir) = runtime_dir {
        command
            .args(["--nodes", &nodes.to_string()])
            .env("K8S_RUNTIME_BIN", runtime_dir)
            // A node's kubelet, containerd and CNI start within seconds on a quiet machine; a
            // loaded one gets room (`up` fails by itself at this bound).
            .env(
                "SSTP_K8S_READY_TIMEOUT",
                NODE_READY_TIMEOUT.as_secs().to_string(),
            );
    }
    let spawned = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let _ = events.send(Event::Failed(format!(
                "running setpriv (util-linux) with {}: {error}",
                up.display()
            )));
            return;
        }
    };
    let _ = events.send(Event::Spawned(child.id()));
    // Held, never written: `up` sees EOF on its stdin once this thread, or the process, is gone.
    let _stdin = child.stdin.take();

    let mut ready = Ready::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(dir) = line.strip_prefix("SSTP_K8S_DIR=") {
                ready.state_dir = Some(PathBuf::from(dir));
            } else if let Some(path) = line.strip_prefix("KUBECONFIG=") {
                ready.kubeconfig = Some(PathBuf::from(path));
            } else if line.starts_with("K8S_BIN=") {
                // The last line `up` prints; the reader is dropped here and `up` prints no more.
                break;
            }
        }
    }
    let (Some(state_dir), Some(kubeconfig)) = (ready.state_dir, ready.kubeconfig) else {
        let status = match child.wait() {
            Ok(status) => status.to_string(),
            Err(error) => error.to_string(),
        };
        let _ = events.send(Event::Failed(format!(
            "tests/k8s/up ended ({status}) without reporting a ready control plane; its errors \
             are above"
        )));
        return;
    };
    let _ = events.send(Event::Ready {
        state_dir,
        kubeconfig,
    });

    // Blocks until the ControlPlane drops its sender.
    let _ = stop.recv();
    stop_up(&mut child);
}

/// SIGTERM to `up`, which stops its components and removes their state; SIGKILL to the whole group
/// if that takes longer than [`STOP_TIMEOUT`].
fn stop_up(child: &mut Child) {
    let pid = child.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let began = Instant::now();
    while began.elapsed() < STOP_TIMEOUT {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    signal_group(pid, "KILL");
    let _ = child.wait();
}

/// Sends `signal` to the process group led by `pid` (std can only SIGKILL a single child).
fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .status();
}

/// tests/k8s in this checkout.
fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

/// `K8S_BIN` when set, else the cache directory printed by `tests/k8s/build` (which builds on a
/// cache miss; its progress goes straight to stderr).
fn bin_dir() -> Result<PathBuf, Error> {
    built_dir("build", "K8S_BIN")
}

/// The directory of kubectl, helm and the control plane binaries ([`ControlPlane::bin_dir`]),
/// without starting a control plane: for `helm template`, which needs none.
pub fn k8s_bin_dir() -> Result<PathBuf, Error> {
    bin_dir()
}

/// `$env` when set, else the cache directory printed by `tests/k8s/<script>`.
fn built_dir(script: &str, env: &str) -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os(env).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = k8s_dir().join(script);
    let failed = |reason: String| Error::Build {
        script: script.clone(),
        reason,
    };
    let output = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("{}; its errors are above", output.status)));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|line| PathBuf::from(line.trim()))
        .ok_or_else(|| failed("it printed no directory".to_owned()))
}
