//! A platform team's first hour, on a real node: `helm install` of the chart with the images
//! built here (`tests/images/build`), `kubectl apply` of an `SstpGateway` and two `SstpUser`s,
//! gateway pods run by a real kubelet + containerd + runc, and the real SSTP client (sstpc + pppd
//! in the VM) dialling **through the Service** (its NodePort on the node's address): MS-CHAPv2 with
//! crypto binding, ping and 50 MB each way to a server pod with NAT on, the CA and CRL fetched
//! through the Service's port 80, a user disabled with `kubectl patch`, a rollout while a client is
//! connected, deleting the gateway, `helm uninstall`, and a pod that cannot start. A real
//! Prometheus on the node, configured with the chart README's scrape jobs, finds the gateway and
//! operator pods through Kubernetes service discovery against the project's API server.
//!
//! One control plane with two nodes per test binary ([`ControlPlane::shared_with_nodes`]), so
//! the gateway's two replicas spread over nodes and one node can be drained under load, and one
//! VM boot for every call (a boot costs about 20 s of emulated CPU): the first test to run drives
//! the whole scenario ([`outcome`]); each test asserts its own part of what happened, so a failure
//! names the behaviour that broke. Needs root, the VM (`tests/vm/install`) and the node.
//!
//! The steps and their tests by topic: `real_node/install.rs` (install, pods that cannot start,
//! init container, removal), `calls.rs` (sstpc through the Service, disable, census, rollouts),
//! `ha.rs` (leader change, control-plane outage, per-pod limits, node drain), `discovery.rs`
//! (Prometheus); `kube.rs` is the plumbing they share and `hold.rs` the held load.
#![allow(clippy::unwrap_used)]

#[path = "real_node/calls.rs"]
mod calls;
mod chart_support;
#[path = "real_node/discovery.rs"]
mod discovery;
#[path = "real_node/ha.rs"]
mod ha;
#[path = "real_node/hold.rs"]
mod hold;
#[path = "real_node/install.rs"]
mod install;
#[path = "real_node/kube.rs"]
mod kube;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
    process::Command,
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use serde_json::Value;
use sstp_e2e::{
    ControlPlane, Error,
    prometheus::{self, Placement, Prometheus, documented},
    vm::VmRun,
};

use chart_support::{
    TempDir, chart_dir, get_json, helm_ok, kubectl_ok, output, repo_dir, succeed, wait_until,
};

use calls::*;
use discovery::*;
use ha::*;
use install::*;
use kube::*;

const GUEST_SCRIPT: &str = include_str!("real_node/guest.sh");
/// Where the operator runs: the "restricted" Pod Security level, as the chart promises.
const OPERATOR_NS: &str = "sstp-system";
/// Where the gateways and users live: "privileged" (NET_ADMIN, /dev/net/tun, the sysctl).
const GATEWAY_NS: &str = "vpn";
/// The transfer server's namespace: "restricted" too.
const APPS_NS: &str = "apps";
const RELEASE: &str = "sstp";
/// Nodes in the cluster: two, for the spread and the drain.
const NODES: u8 = 2;
/// Sessions of `load` held through `kubectl drain` of a gateway pod's node.
const DRAIN_SESSIONS: u32 = 40;
const GATEWAY: &str = "office";
const SERVER_PORT: u16 = 9000;
/// Bulk data each way through the tunnel.
const GET_BYTES: u64 = 50 * 1024 * 1024;
const PUT_BYTES: u64 = 50 * 1024 * 1024;
/// The session of a disabled user must end within this long after `kubectl patch` returns.
const DISABLE_DEADLINE: Duration = Duration::from_secs(2);
/// Sessions held through the control plane's outage.
const OUTAGE_SESSIONS: u32 = 20;
/// `status.activeSessions` must follow a session starting or ending within this long (issue 12).
const COUNT_DEADLINE: Duration = Duration::from_secs(10);
/// How long the host watches for the counts: past the deadline, so a miss reports its time.
const COUNT_BOUND: Duration = Duration::from_secs(30);
/// Pods starting, images unpacking, a rollout: generous, so a loaded machine is slow, not red.
const POD_BOUND: Duration = Duration::from_secs(300);
/// The whole VM run, boot included.
const VM_TIMEOUT: Duration = Duration::from_secs(1500);
/// Sessions of the project's client (`sstp-load hold`) up through the Service during the
/// rollout, beside the VM's sstpc.
const HOLD_SESSIONS: u32 = 200;
const LOAD_PASSWORD: &str = "load-quartz-meadow-violin";
const DRAIN_PASSWORD: &str = "drain-copper-willow-atlas";
const SOLO_PASSWORD: &str = "solo-harbor-lantern-pebble";
const ALICE_PASSWORD: &str = "alice-correct-horse-battery";
const BOB_PASSWORD: &str = "bob-staple-lantern-orbit";

/// What happened, step by step; a step that could not run says why.
#[derive(Debug)]
struct Outcome {
    /// Step 1: `helm install`, the operator pods, the Lease, the gateway pods.
    install: Result<Install, String>,
    /// What a real Prometheus on the node discovered and scraped; `None` when Prometheus is not
    /// built (a plain `cargo test` without `tests/prometheus/build`).
    discovered: Result<Option<Discovered>, String>,
    /// Steps 2-4: the VM's results file, the host's measurements.
    calls: Result<Calls, String>,
    /// After the calls: the leader operator pod deleted, its successor's writes.
    restart: Result<Restart, String>,
    /// Then both operator pods deleted and the API server restarted under load.
    outage: Result<Outage, String>,
    /// A user limited to one session, dialling each gateway pod directly.
    per_pod: Result<PerPod, String>,
    /// `kubectl drain` of the node of one gateway pod under [`DRAIN_SESSIONS`] sessions.
    drain: Result<Drain, String>,
    /// Step 5: what was left after deleting the gateway, then after `helm uninstall`.
    removal: Result<Removal, String>,
    /// Step 6: the condition a gateway whose pods cannot start gets.
    unstartable: Result<Value, String>,
    /// A gateway forwarding by `ipForwarding: initContainer`: its pod, and its pod spec.
    init_container: Result<(GatewayPod, Value), String>,
}

fn outcome() -> &'static Outcome {
    static OUTCOME: OnceLock<Outcome> = OnceLock::new();
    OUTCOME.get_or_init(|| {
        let result = run_scenario();
        eprintln!("real-node scenario: {result:#?}");
        result
    })
}

fn run_scenario() -> Outcome {
    let mut outcome = Outcome {
        install: Err("not run".into()),
        discovered: Err("not run".into()),
        calls: Err("not run".into()),
        restart: Err("not run".into()),
        outage: Err("not run".into()),
        per_pod: Err("not run".into()),
        drain: Err("not run".into()),
        removal: Err("not run".into()),
        unstartable: Err("not run".into()),
        init_container: Err("not run".into()),
    };
    if let Some(reason) = sstp_e2e::vm::vm_unavailable() {
        outcome.install = Err(format!("the VM is not available: {reason}"));
        return outcome;
    }
    let cp = match ControlPlane::shared_with_nodes(NODES) {
        Ok(cp) => cp,
        Err(error) => {
            outcome.install = Err(format!("no control plane with a node: {error}"));
            return outcome;
        }
    };
    let images = match build_images(cp) {
        Ok(images) => images,
        Err(error) => {
            outcome.install = Err(format!("tests/images/build: {error}"));
            return outcome;
        }
    };
    let work = TempDir::new("real-node");
    outcome.install = step(|| install(cp, &images, work.path()));
    if let Ok(install) = &outcome.install {
        outcome.discovered = step(|| discovered(cp, install));
        outcome.calls = step(|| calls(cp, &images, work.path()));
        outcome.restart = step(|| restart_the_leader(cp));
        outcome.outage = step(|| control_plane_outage(cp, work.path()));
        outcome.per_pod = step(|| per_pod_limit(cp, work.path()));
        outcome.drain = step(|| drain_a_node(cp, work.path()));
        outcome.unstartable = step(|| unstartable(cp, work.path()));
        outcome.init_container = step(|| init_container(cp, work.path()));
        outcome.removal = step(|| removal(cp));
    }
    outcome
}

/// Runs one step of the scenario; an error or a panic (the kubectl and helm helpers assert)
/// becomes that step's failure, so the scenario still runs once and every test sees why.
fn step<T>(run: impl FnOnce() -> Result<T, Error>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned())),
    }
}

fn installed() -> &'static Install {
    match &outcome().install {
        Ok(install) => install,
        Err(reason) => panic!("the install step failed: {reason}"),
    }
}

fn discovery() -> Option<&'static Discovered> {
    installed();
    match &outcome().discovered {
        Ok(discovered) => discovered.as_ref(),
        Err(reason) => panic!("the discovery step failed: {reason}"),
    }
}

fn called() -> &'static Calls {
    installed();
    match &outcome().calls {
        Ok(calls) => calls,
        Err(reason) => panic!("the calls failed: {reason}"),
    }
}

fn result<'a>(calls: &'a Calls, key: &str) -> &'a str {
    calls.results.get(key).map_or("<missing>", String::as_str)
}
