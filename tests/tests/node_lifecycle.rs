//! The node harness (`tests/k8s/up --nodes 1`, `tests/k8s/node.sh`): a real kubelet, containerd
//! and kube-proxy come up as a Ready Node, and tearing it down, whether the harness is dropped or
//! the test process is killed, leaves no process, mount, cgroup, namespace, bridge or sysctl
//! change behind.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, api::ListParams};
use sstp_e2e::{ControlPlane, Error};

/// The VM-global sysctls the kubelet rewrites at start (setupKernelTunables).
const GLOBAL_SYSCTLS: [&str; 4] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
];
/// The cgroup hierarchies the node makes its root in (node.sh, node_hierarchies).
const HIERARCHIES: [&str; 10] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "systemd", "blkio", "devices", "freezer",
    "unified",
];
/// How long a killed harness gets to clean up after itself.
const CLEANUP_BOUND: Duration = Duration::from_secs(90);

/// One node at a time: the last node of any control plane restores the global sysctls, so a
/// test can only see them restored when no other node is up.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io {
        what: what.to_owned(),
        source,
    }
}

fn sysctls() -> Vec<(String, String)> {
    GLOBAL_SYSCTLS
        .iter()
        .map(|name| {
            let value = std::fs::read_to_string(Path::new("/proc/sys").join(name))
                .unwrap_or_default()
                .trim()
                .to_owned();
            ((*name).to_owned(), value)
        })
        .collect()
}

/// What one node of a control plane made on this machine, read from its state directory.
#[derive(Debug)]
struct NodeFootprint {
    state_dir: PathBuf,
    netns: String,
    cgroup: String,
    bridge: String,
    pids: Vec<i32>,
}

impl NodeFootprint {
    fn read(state_dir: &Path) -> Result<Self, Error> {
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path)
                .map(|text| text.trim().to_owned())
                .map_err(|source| Error::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })
        };
        let node = state_dir.join("nodes/node0");
        let mut pids = Vec::new();
        for component in [
            "node0-containerd",
            "node0-kubelet",
            "node0-kube-proxy",
            "kube-scheduler",
        ] {
            let pid = read(state_dir.join(format!("{component}.pid")))?;
            pids.push(pid.parse().map_err(|_| {
                Error::Unavailable(format!("{component}.pid holds {pid:?}, not a pid"))
            })?);
        }
        // Every process in the node's cgroup: containerd's shims and pods too.
        let cgroup = read(node.join("cgroup"))?;
        pids.extend(processes_in(
            &Path::new("/sys/fs/cgroup/pids").join(&cgroup),
        ));
        Ok(Self {
            state_dir: state_dir.to_owned(),
            netns: read(node.join("netns"))?,
            bridge: format!("sk8s{}", read(state_dir.join("net"))?),
            cgroup,
            pids,
        })
    }

    /// Everything of it that still exists, described; empty when it is all gone.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for pid in &self.pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                left.push(format!("process {pid}"));
            }
        }
        if Path::new("/run/netns").join(&self.netns).exists() {
            left.push(format!("network namespace {}", self.netns));
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            left.push(format!("bridge {}", self.bridge));
        }
        for hierarchy in HIERARCHIES {
            let dir = Path::new("/sys/fs/cgroup")
                .join(hierarchy)
                .join(&self.cgroup);
            if dir.exists() {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.state_dir.display().to_string();
        for line in mounts.lines().filter(|line| line.contains(&dir)) {
            left.push(format!("mount {line}"));
        }
        if self.state_dir.exists() {
            left.push(format!("state directory {dir}"));
        }
        left
    }
}

fn processes_in(cgroup: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir(cgroup) else {
        return pids;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            pids.extend(processes_in(&path));
        } else if path.file_name().is_some_and(|name| name == "cgroup.procs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            pids.extend(
                text.lines()
                    .filter_map(|line| line.trim().parse::<i32>().ok()),
            );
        }
    }
    pids
}

async fn assert_node_ready(control_plane: &ControlPlane) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(control_plane.client().await?);
    let list = nodes.list(&ListParams::default()).await?;
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|node| node.metadata.name.clone())
        .collect();
    assert_eq!(names, ["node0"], "the nodes registered");
    let node = &list.items[0];
    let ready = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|condition| condition.status.clone());
    assert_eq!(ready.as_deref(), Some("True"), "node0 is Ready");
    let internal_ip = node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .and_then(|addresses| addresses.iter().find(|a| a.type_ == "InternalIP"))
        .map(|address| address.address.clone());
    assert!(
        internal_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.250.")),
        "node0's address is on the node bridge: {internal_ip:?}"
    );
    Ok(())
}

#[test]
fn a_dropped_node_leaves_nothing_behind() -> Result<(), Error> {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = sysctls();
    let control_plane = ControlPlane::start_with_nodes(1)?;
    let state_dir = control_plane
        .state_dir()
        .ok_or_else(|| Error::Unavailable("a started control plane has a state dir".to_owned()))?
        .to_owned();
    tokio::runtime::Runtime::new()
        .map_err(io("starting a tokio runtime"))?
        .block_on(assert_node_ready(&control_plane))?;
    let footprint = NodeFootprint::read(&state_dir)?;
    assert!(
        footprint.leftovers().len() > footprint.pids.len(),
        "the footprint is read while it exists: {footprint:?}"
    );

    drop(control_plane);

    assert_eq!(footprint.leftovers(), Vec::<String>::new(), "left behind");
    assert_eq!(sysctls(), before, "global sysctls restored");
    Ok(())
}

#[test]
fn a_killed_test_leaves_nothing_behind() -> Result<(), Error> {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = sysctls();
    let up = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/up");
    // The test process as the harness has it: `up --foreground` under a parent-death SIGTERM, its
    // stdin held open. Here the parent is a shell this test kills with SIGKILL, as a CI timeout or
    // a developer's ^C^C would kill a test binary.
    let mut parent = Command::new("bash")
        .arg("-c")
        .arg(r#"sleep infinity | setpriv --pdeathsig TERM -- "$0" --foreground --nodes 1"#)
        .arg(&up)
        .env_remove("KUBECONFIG")
        .env("SSTP_K8S_READY_TIMEOUT", "240")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(io("spawning bash with tests/k8s/up"))?;
    let stdout = parent
        .stdout
        .take()
        .ok_or_else(|| Error::Unavailable("no stdout pipe".to_owned()))?;
    let mut state_dir = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(io("reading up's output"))?;
        if let Some(dir) = line.strip_prefix("SSTP_K8S_DIR=") {
            state_dir = Some(PathBuf::from(dir));
        }
        if line.starts_with("K8S_BIN=") {
            break;
        }
    }
    let state_dir =
        state_dir.ok_or_else(|| Error::Unavailable("up reported no state dir".to_owned()))?;
    let footprint = NodeFootprint::read(&state_dir)?;

    // SIGKILL to the shell alone: `up` learns of it only through its parent-death signal.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(parent.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|errno| Error::Unavailable(format!("killing the shell: {errno}")))?;
    let _ = parent.wait();

    let began = Instant::now();
    while !footprint.leftovers().is_empty() && began.elapsed() < CLEANUP_BOUND {
        std::thread::sleep(Duration::from_millis(200));
    }
    // `sleep infinity` was the shell's other child; it is not the harness's to clean.
    let _ = Command::new("pkill")
        .args(["-KILL", "-g", &parent.id().to_string()])
        .status();
    assert_eq!(footprint.leftovers(), Vec::<String>::new(), "left behind");
    assert_eq!(sysctls(), before, "global sysctls restored");
    Ok(())
}
