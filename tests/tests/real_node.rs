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
#![allow(clippy::unwrap_used)]

mod chart_support;
#[path = "real_node/hold.rs"]
mod hold;

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

#[derive(Debug, Default)]
struct Install {
    operator_pods_ready: usize,
    lease_holder: String,
    operator_pods: Vec<String>,
    gateway_pods: Vec<GatewayPod>,
}

/// One gateway pod as the node runs it: its container's process, read from /proc.
#[derive(Debug, Default, Clone)]
struct GatewayPod {
    name: String,
    /// The node running it.
    node: String,
    cap_eff: String,
    cap_bnd: String,
    no_new_privs: String,
    seccomp: String,
    tun: bool,
    ip_forward: String,
}

#[derive(Debug, Default)]
struct Calls {
    results: BTreeMap<String, String>,
    /// What the transfer server pod logged: (kind, bytes, sha256).
    server: Vec<(String, u64, String)>,
    ca_matches_secret: bool,
    crl_verify: String,
    disable_elapsed: Option<Duration>,
    rollout_pods_before: Vec<String>,
    rollout_pods_after: Vec<String>,
    /// The session audit records the gateway pods logged by the time bob was kicked, with the
    /// pod that logged each.
    audit: Vec<(String, Value)>,
    /// From bob's call being up (the guest's signal) until the gateway's and bob's
    /// `status.activeSessions` said 1; `None`: not within [`COUNT_BOUND`].
    counted_up: Option<Duration>,
    /// From bob's call being over until both said 0.
    counted_down: Option<Duration>,
    /// The `RESULT` of `sstp-load hold` run through the rollout.
    hold: BTreeMap<String, String>,
}

/// The control plane going away under [`OUTAGE_SESSIONS`] sessions of `load`, then `load`
/// disabled once it is back.
#[derive(Debug, Default)]
struct Outage {
    /// How long the API server was gone (stop, start, ready).
    apiserver_gone: Duration,
    /// `kubectl patch` disabling `load`: started and returned (Unix ms).
    disable_started_ms: u128,
    disable_returned_ms: u128,
    /// The load's `RESULT`.
    hold: BTreeMap<String, String>,
}

/// `solo` (maxSessions 1) with a session held on one gateway pod: a second session on the other
/// pod, then one more on the first, each dialled at the pod's own address from the node.
#[derive(Debug, Default)]
struct PerPod {
    held: BTreeMap<String, String>,
    other_pod: BTreeMap<String, String>,
    same_pod: BTreeMap<String, String>,
}

/// `kubectl drain` of the node running one of the two gateway pods while the load holds
/// sessions through the Service.
#[derive(Debug, Default)]
struct Drain {
    /// Node of each gateway pod before the drain (pod -> node).
    nodes_before: BTreeMap<String, String>,
    /// The node drained.
    drained: String,
    /// Node of each gateway pod once the drain is over.
    nodes_after: BTreeMap<String, String>,
    /// How long `kubectl drain` took, and what it said.
    took: Duration,
    said: String,
    /// `status.activeSessions` of `drain` once the drain was over and the redials had time.
    counted_after: Option<u64>,
    /// The load's `RESULT`.
    hold: BTreeMap<String, String>,
}

/// The leader operator pod deleted with nothing connected: what its successor wrote.
#[derive(Debug, Default)]
struct Restart {
    old_leader: String,
    new_leader: String,
    /// The new leader's census rounds when it was read.
    census_rounds: u64,
    /// Its `sstp_operator_writes_total`, every kind.
    writes: u64,
    /// resourceVersion of the gateway, alice and bob: before the deletion, then after.
    versions_before: Vec<String>,
    versions_after: Vec<String>,
}

/// A real Prometheus's view of the installed pods, found by Kubernetes service discovery.
#[derive(Debug, Default)]
struct Discovered {
    /// The `pod` label of every healthy target, by job.
    up: BTreeMap<String, BTreeSet<String>>,
    /// The `sstp_` metric names each pod exposes (a histogram's by its base name), by pod.
    metrics: BTreeMap<String, BTreeSet<String>>,
    /// The operator pods whose `sstp_operator_leader` is 1.
    leaders: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Removal {
    after_delete: Vec<String>,
    after_uninstall: Vec<String>,
    crds_kept: bool,
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

/// The image references `tests/images/build` printed, by kind.
type Images = BTreeMap<String, String>;

fn build_images(cp: &ControlPlane) -> Result<Images, Error> {
    let state_dir = cp
        .state_dir()
        .ok_or_else(|| Error::Unavailable("the control plane has no state dir".into()))?;
    let stdout = succeed(
        Command::new(repo_dir().join("tests/images/build"))
            .args(["gateway", "operator", "pause", "transfer"])
            .env("SSTP_K8S_DIR", state_dir)
            .env("KUBECONFIG", cp.kubeconfig()),
        "tests/images/build",
    )?;
    let images: Images = stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("IMAGE ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect();
    for kind in ["gateway", "operator", "pause", "transfer"] {
        if !images.contains_key(kind) {
            return Err(Error::Unavailable(format!(
                "tests/images/build printed no {kind} image: {stdout}"
            )));
        }
    }
    Ok(images)
}

/// `repository:tag` split at the last colon after the last slash.
fn split_reference(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => (&reference[..slash + colon], &reference[slash + colon + 1..]),
        None => (reference, "latest"),
    }
}

fn apply(cp: &ControlPlane, dir: &Path, name: &str, yaml: &str) -> Result<(), Error> {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).map_err(|source| Error::Io {
        what: format!("writing {}", file.display()),
        source,
    })?;
    kubectl_ok(cp, &["apply", "-f", &file.display().to_string()])?;
    Ok(())
}

fn items(list: Option<Value>) -> Vec<Value> {
    list.and_then(|list| list["items"].as_array().cloned())
        .unwrap_or_default()
}

/// `Kind/name` of an object.
fn kind_and_name(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        name_of(object)
    )
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Waits until exactly `count` pods match `selector` in `namespace` and all are Ready (none
/// terminating); their names.
fn wait_ready_pods(
    cp: &ControlPlane,
    namespace: &str,
    selector: &str,
    count: usize,
) -> Result<Vec<String>, Error> {
    wait_until(
        &format!("{count} Ready pods {selector} in {namespace}"),
        POD_BOUND,
        || {
            let pods = items(get_json(cp, &["pods", "-n", namespace, "-l", selector])?);
            let ready = pods.iter().filter(|pod| pod_ready(pod)).count();
            Ok((pods.len() == count && ready == count).then(|| pods.iter().map(name_of).collect()))
        },
    )
}

fn namespace_yaml(name: &str, level: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: {level}\n    pod-security.kubernetes.io/warn: {level}\n"
    )
}

fn gateway_yaml() -> String {
    format!(
        r#"apiVersion: sstp.io/v1alpha1
kind: SstpGateway
metadata:
  name: {GATEWAY}
  namespace: {GATEWAY_NS}
spec:
  replicas: 2
  hostnames: [gw.test]
  addressPool: 10.8.0.0/24
  nat: true
  service:
    type: NodePort
  auth:
    methods: [mschapv2]
  limits:
    idleTimeoutSeconds: 3600
    # The rollout's 200 load sessions all come from the host's one address, and redial at once
    # when a pod drains; the default (32 not yet logged in per source) would refuse most.
    maxConnectionsPerSource: 256
  logging:
    format: json
  users:
    selector:
      matchLabels:
        sstp.io/gateway: {GATEWAY}
"#
    )
}

fn user_yaml(user: &str, password: &str) -> String {
    user_yaml_with(user, password, "")
}

/// `user_yaml` with `extra` (indented spec lines) added to the spec.
fn user_yaml_with(user: &str, password: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {user}-password
  namespace: {GATEWAY_NS}
type: Opaque
stringData:
  password: {password}
---
apiVersion: sstp.io/v1alpha1
kind: SstpUser
metadata:
  name: {user}
  namespace: {GATEWAY_NS}
  labels:
    sstp.io/gateway: {GATEWAY}
spec:
  username: {user}
  passwordSecretRef:
    name: {user}-password
    key: password
{extra}"#
    )
}

const GATEWAY_SELECTOR: &str =
    "app.kubernetes.io/name=sstp-gateway,app.kubernetes.io/instance=office";
const OPERATOR_SELECTOR: &str =
    "app.kubernetes.io/name=sstp-operator,app.kubernetes.io/instance=sstp";

/// The name of node0's network namespace (where the pod addresses route).
fn node_netns(cp: &ControlPlane) -> Result<String, Error> {
    let state_dir = cp
        .state_dir()
        .ok_or_else(|| Error::Unavailable("the control plane has no state dir".into()))?;
    let netns_file = state_dir.join("nodes/node0/netns");
    let netns = std::fs::read_to_string(&netns_file).map_err(|source| Error::Io {
        what: format!("reading {}", netns_file.display()),
        source,
    })?;
    Ok(netns.trim().to_owned())
}

fn install(cp: &ControlPlane, images: &Images, dir: &Path) -> Result<Install, Error> {
    apply(
        cp,
        dir,
        "ns-operator",
        &namespace_yaml(OPERATOR_NS, "restricted"),
    )?;
    apply(
        cp,
        dir,
        "ns-gateway",
        &namespace_yaml(GATEWAY_NS, "privileged"),
    )?;
    let (operator_repo, operator_tag) = split_reference(&images["operator"]);
    let (gateway_repo, gateway_tag) = split_reference(&images["gateway"]);
    let chart = chart_dir().display().to_string();
    helm_ok(
        cp,
        &[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            OPERATOR_NS,
            "--set",
            &format!("image.repository={operator_repo}"),
            "--set",
            &format!("image.tag={operator_tag}"),
            "--set",
            &format!("gateway.image.repository={gateway_repo}"),
            "--set",
            &format!("gateway.image.tag={gateway_tag}"),
            "--wait",
            "--timeout",
            "5m",
        ],
    )?;
    let operator_pods = wait_ready_pods(cp, OPERATOR_NS, OPERATOR_SELECTOR, 2)?;
    let lease_holder = wait_until("the operator Lease to have a holder", POD_BOUND, || {
        let leases = items(get_json(cp, &["leases", "-n", OPERATOR_NS])?);
        Ok(leases.iter().find_map(|lease| {
            lease["spec"]["holderIdentity"]
                .as_str()
                .filter(|holder| !holder.is_empty())
                .map(str::to_owned)
        }))
    })?;

    apply(cp, dir, "gateway", &gateway_yaml())?;
    apply(cp, dir, "alice", &user_yaml("alice", ALICE_PASSWORD))?;
    apply(cp, dir, "bob", &user_yaml("bob", BOB_PASSWORD))?;
    // The rollout's load: every session from this one user (its own limit, per pod).
    apply(
        cp,
        dir,
        "load",
        &user_yaml_with("load", LOAD_PASSWORD, "  maxSessions: 250\n"),
    )?;
    // The drain's load (`load` is disabled by then, at the end of the outage step).
    apply(
        cp,
        dir,
        "drain",
        &user_yaml_with("drain", DRAIN_PASSWORD, "  maxSessions: 100\n"),
    )?;
    let names = wait_ready_pods(cp, GATEWAY_NS, GATEWAY_SELECTOR, 2)?;
    // A Ready pod has a users document in force, not necessarily the one with both users yet:
    // on a slow machine the operator may not have rendered bob when the pods came up.
    wait_until("alice, bob, load and drain to be Ready", POD_BOUND, || {
        let users = items(get_json(cp, &["sstpusers", "-n", GATEWAY_NS])?);
        let ready = users
            .iter()
            .filter(|user| {
                user["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        Ok((ready == 4).then_some(()))
    })?;
    let mut gateway_pods = Vec::new();
    for name in names {
        gateway_pods.push(inspect_gateway_pod(cp, &name)?);
    }
    Ok(Install {
        operator_pods_ready: operator_pods.len(),
        lease_holder,
        operator_pods,
        gateway_pods,
    })
}

/// The node's view of a gateway pod's container: its process's credentials, seccomp, devices
/// and IPv4 forwarding, read from /proc through containerd's task list.
fn inspect_gateway_pod(cp: &ControlPlane, name: &str) -> Result<GatewayPod, Error> {
    let pod = get_json(cp, &["pod", "-n", GATEWAY_NS, name])?
        .ok_or_else(|| Error::Unavailable(format!("pod {name} is gone")))?;
    let container = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|statuses| statuses.iter().find(|s| s["name"] == "gateway"))
        .and_then(|status| status["containerID"].as_str())
        .and_then(|id| id.strip_prefix("containerd://"))
        .ok_or_else(|| Error::Unavailable(format!("pod {name} has no gateway container id")))?
        .to_owned();
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pid = container_pid(cp, &node, &container)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|value| value.trim().to_owned())
            .unwrap_or_default()
    };
    let tun = std::fs::metadata(format!("/proc/{pid}/root/dev/net/tun")).is_ok();
    let ip_forward = succeed(
        Command::new("nsenter").args([
            "-t",
            &pid.to_string(),
            "-n",
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ]),
        "reading ip_forward in the pod's network namespace",
    )?
    .trim()
    .to_owned();
    Ok(GatewayPod {
        name: name.to_owned(),
        node,
        cap_eff: field("CapEff:"),
        cap_bnd: field("CapBnd:"),
        no_new_privs: field("NoNewPrivs:"),
        seccomp: field("Seccomp:"),
        tun,
        ip_forward,
    })
}

/// The host pid of a container, from the containerd task list of the node running it.
fn container_pid(cp: &ControlPlane, node: &str, container: &str) -> Result<u32, Error> {
    let state_dir = cp
        .state_dir()
        .ok_or_else(|| Error::Unavailable("the control plane has no state dir".into()))?;
    let tasks = succeed(
        Command::new(state_dir.join("node-bin/ctr")).args([
            "--address",
            &state_dir
                .join(format!("nodes/{node}/containerd.sock"))
                .display()
                .to_string(),
            "-n",
            "k8s.io",
            "tasks",
            "ls",
        ]),
        "ctr tasks ls",
    )?;
    tasks
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == container).then(|| words.next()?.parse().ok())?
        })
        .ok_or_else(|| Error::Unavailable(format!("containerd has no task {container}: {tasks}")))
}

/// Bounds the wait for Prometheus to discover and scrape every pod: 2 s scrapes, so seconds when
/// healthy; a loaded machine gets room.
const SCRAPE_BOUND: Duration = Duration::from_secs(180);

/// The `scrape_configs` of the chart README's "Scraping without prometheus-operator", with the
/// API server's address and credentials (`kubeconfig_file`) and the two namespaces added to each
/// discovery, as a Prometheus outside the cluster needs them.
fn documented_scrape_configs(cp: &ControlPlane) -> Value {
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let block = readme
        .split("## Scraping without prometheus-operator")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the chart README has a scrape_configs block under its Scraping section");
    let mut config: Value = serde_norway::from_str(block).unwrap();
    let jobs = config["scrape_configs"]
        .as_array_mut()
        .expect("scrape_configs");
    assert_eq!(jobs.len(), 2, "{block}");
    for job in jobs {
        for sd in job["kubernetes_sd_configs"]
            .as_array_mut()
            .expect("kubernetes_sd_configs")
        {
            sd["kubeconfig_file"] = cp.kubeconfig().display().to_string().into();
            sd["namespaces"] = serde_json::json!({ "names": [GATEWAY_NS, OPERATOR_NS] });
        }
    }
    config["scrape_configs"].take()
}

/// Step 2: a real Prometheus in the node's network namespace (where pod addresses route), with
/// the documented scrape jobs, discovers the pods from the API server and scrapes them.
fn discovered(cp: &ControlPlane, install: &Install) -> Result<Option<Discovered>, Error> {
    let Some(bins) = prometheus::binaries()? else {
        return Ok(None);
    };
    let netns = node_netns(cp)?;
    let (node_ip, _, _) = service_endpoint(cp)?;
    let listen: Ipv4Addr = node_ip
        .parse()
        .map_err(|_| Error::Unavailable(format!("node0's InternalIP {node_ip} is not IPv4")))?;
    let config = serde_json::json!({
        "global": { "scrape_interval": "2s", "scrape_timeout": "2s" },
        "scrape_configs": documented_scrape_configs(cp),
    });
    let prom = Prometheus::start_in(
        &bins,
        Placement::Netns {
            netns: &netns,
            listen,
        },
        &config.to_string(),
        &[],
    )?;
    let expected: BTreeMap<String, BTreeSet<String>> = [
        (
            "sstp-gateway".to_owned(),
            install
                .gateway_pods
                .iter()
                .map(|p| p.name.clone())
                .collect(),
        ),
        (
            "sstp-operator".to_owned(),
            install.operator_pods.iter().cloned().collect(),
        ),
    ]
    .into();
    let mut up = BTreeMap::new();
    let waited = wait_until(
        "Prometheus to discover and scrape every pod",
        SCRAPE_BOUND,
        || {
            let targets = prom.api("/api/v1/targets?state=active")?;
            up.clear();
            for target in targets["activeTargets"].as_array().into_iter().flatten() {
                if target["health"] == "up" {
                    let label =
                        |name: &str| target["labels"][name].as_str().unwrap_or("").to_owned();
                    up.entry(label("job"))
                        .or_insert_with(BTreeSet::new)
                        .insert(label("pod"));
                }
            }
            Ok((up == expected).then_some(()))
        },
    );
    if let Err(error) = waited {
        let targets = prom.api("/api/v1/targets").unwrap_or_default();
        return Err(Error::Unavailable(format!(
            "{error}; up: {up:?}, expected {expected:?}\ntargets: {targets:#}\nprometheus log:\n{}",
            prom.log()
        )));
    }
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for series in prom.query(r#"count by (pod, __name__) ({__name__=~"sstp_.+"})"#)? {
        let name = series["metric"]["__name__"].as_str().unwrap_or("");
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        metrics
            .entry(series["metric"]["pod"].as_str().unwrap_or("").to_owned())
            .or_default()
            .insert(base.to_owned());
    }
    let leaders = prom
        .query(r#"sstp_operator_leader{job="sstp-operator"} == 1"#)?
        .iter()
        .filter_map(|series| series["metric"]["pod"].as_str().map(str::to_owned))
        .collect();
    Ok(Some(Discovered {
        up,
        metrics,
        leaders,
    }))
}

/// The node's InternalIP and the gateway Service's NodePorts (sstp, http).
fn service_endpoint(cp: &ControlPlane) -> Result<(String, u16, u16), Error> {
    let node =
        get_json(cp, &["node", "node0"])?.ok_or_else(|| Error::Unavailable("no node0".into()))?;
    let node_ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| Error::Unavailable("node0 has no InternalIP".into()))?
        .to_owned();
    let service = get_json(cp, &["service", "-n", GATEWAY_NS, GATEWAY])?
        .ok_or_else(|| Error::Unavailable("no gateway Service".into()))?;
    let node_port = |port: i64| {
        service["spec"]["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["port"] == port))
            .and_then(|p| p["nodePort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| Error::Unavailable(format!("the Service has no NodePort for {port}")))
    };
    Ok((node_ip, node_port(443)?, node_port(80)?))
}

/// The load of `user` dialling the gateway Service's NodePort on node0 from the host, with the
/// CA the calls fetched into `dir`.
fn through_service<'a>(
    cp: &ControlPlane,
    dir: &'a Path,
    user: &'a str,
    password: &'a str,
) -> Result<hold::Target<'a>, Error> {
    let (node_ip, sstp_port, _) = service_endpoint(cp)?;
    Ok(hold::Target {
        dir,
        address: format!("{node_ip}:{sstp_port}"),
        ca: dir.join("ca.crt"),
        user,
        password,
        netns: None,
    })
}

fn transfer_server_yaml(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: transfer
  namespace: {APPS_NS}
  labels:
    app: transfer
spec:
  containers:
    - name: transfer
      image: {image}
      imagePullPolicy: Never
      args: ["0.0.0.0:{SERVER_PORT}"]
      ports:
        - containerPort: {SERVER_PORT}
      readinessProbe:
        tcpSocket:
          port: {SERVER_PORT}
        periodSeconds: 2
      securityContext:
        allowPrivilegeEscalation: false
        runAsNonRoot: true
        runAsUser: 65534
        capabilities:
          drop: [ALL]
        seccompProfile:
          type: RuntimeDefault
"#
    )
}

fn read_results(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Waits until the guest's results have `key`.
fn wait_result(out: &Path, key: &str, bound: Duration) -> Result<String, Error> {
    wait_until(&format!("the guest's {key}"), bound, || {
        Ok(guest_result(out, key))
    })
}

fn calls(cp: &ControlPlane, images: &Images, dir: &Path) -> Result<Calls, Error> {
    let mut calls = Calls::default();
    apply(cp, dir, "ns-apps", &namespace_yaml(APPS_NS, "restricted"))?;
    apply(
        cp,
        dir,
        "transfer",
        &transfer_server_yaml(&images["transfer"]),
    )?;
    wait_ready_pods(cp, APPS_NS, "app=transfer", 1)?;
    let server_ip = get_json(cp, &["pod", "-n", APPS_NS, "transfer"])?
        .and_then(|pod| pod["status"]["podIP"].as_str().map(str::to_owned))
        .ok_or_else(|| Error::Unavailable("the transfer pod has no IP".into()))?;
    let (node_ip, sstp_port, http_port) = service_endpoint(cp)?;

    // The CA and its CRL, through the Service's port 80 as Windows fetches them.
    let ca = dir.join("ca.crt");
    let crl = dir.join("ca.crl");
    for (path, file) in [("/sstp/ca.crt", &ca), ("/sstp/ca.crl", &crl)] {
        succeed(
            Command::new("curl").args([
                "-sSf",
                "--max-time",
                "20",
                "-o",
                &file.display().to_string(),
                &format!("http://{node_ip}:{http_port}{path}"),
            ]),
            &format!("curl {path} through the Service"),
        )?;
    }
    let secret = get_json(cp, &["secret", "-n", GATEWAY_NS, &format!("{GATEWAY}-tls")])?
        .ok_or_else(|| Error::Unavailable("no TLS Secret".into()))?;
    // k8s-openapi's Secret decodes `data` (base64) itself.
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret).map_err(|e| Error::Unavailable(e.to_string()))?;
    let secret_ca = secret
        .data
        .and_then(|data| data.get("ca.crt").map(|bytes| bytes.0.clone()))
        .unwrap_or_default();
    let served_ca = std::fs::read(&ca).unwrap_or_default();
    calls.ca_matches_secret = !served_ca.is_empty()
        && pem_body(&String::from_utf8_lossy(&served_ca))
            == pem_body(&String::from_utf8_lossy(&secret_ca));
    let verify = output(
        Command::new("openssl").args([
            "crl",
            "-in",
            &crl.display().to_string(),
            "-inform",
            if std::fs::read(&crl)
                .unwrap_or_default()
                .starts_with(b"-----")
            {
                "PEM"
            } else {
                "DER"
            },
            "-CAfile",
            &ca.display().to_string(),
            "-noout",
        ]),
        "openssl crl -CAfile",
    )?;
    calls.crl_verify = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    )
    .trim()
    .to_owned();

    let out = dir.join("out");
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
        what: "creating the guest output directory".into(),
        source,
    })?;
    let script = dir.join("guest.sh");
    std::fs::write(&script, GUEST_SCRIPT).map_err(|source| Error::Io {
        what: "writing the guest script".into(),
        source,
    })?;
    let guest_lib = sstp_e2e::vm::write_guest_lib(dir)?;
    let node_net = format!(
        "{}.0/24",
        node_ip
            .rsplit_once('.')
            .map_or(node_ip.as_str(), |(net, _)| net)
    );
    let env = [
        ("OUT", out.display().to_string()),
        ("GUEST_LIB", guest_lib.display().to_string()),
        ("NODE_NET", node_net),
        ("NODE_IP", node_ip.clone()),
        ("SSTP_PORT", sstp_port.to_string()),
        ("CA", ca.display().to_string()),
        ("SERVER_IP", server_ip),
        ("SERVER_PORT", SERVER_PORT.to_string()),
        ("ALICE_PASSWORD", ALICE_PASSWORD.to_owned()),
        ("BOB_PASSWORD", BOB_PASSWORD.to_owned()),
        ("GET_BYTES", GET_BYTES.to_string()),
        ("PUT_BYTES", PUT_BYTES.to_string()),
    ];
    let console = dir.join("console.log");
    let mut vm = VmRun::start(&script, &env, dir, VM_TIMEOUT, &console)?;

    // Step 3 of the scenario: bob is connected; disable him and time the gateway's kick.
    vm.wait_for_file(&out.join("ready-disable"), VM_TIMEOUT)?;
    if guest_result(&out, "disable.addr").is_some() {
        disable_bob(cp, &out, &mut calls)?;
    }
    std::fs::write(out.join("go-disable-counted"), b"").map_err(|source| Error::Io {
        what: "writing go-disable-counted".into(),
        source,
    })?;
    // Step 4: alice is connected; roll the Deployment by changing the gateway's configuration.
    vm.wait_for_file(&out.join("ready-rollout"), VM_TIMEOUT)?;
    if guest_result(&out, "roll.attempts").is_some_and(|attempts| attempts != "failed") {
        let target = through_service(cp, dir, "load", LOAD_PASSWORD)?;
        roll_the_gateway(cp, &target, &mut calls)?;
    }
    std::fs::write(out.join("go-rollout-done"), b"").map_err(|source| Error::Io {
        what: "writing go-rollout-done".into(),
        source,
    })?;
    let status = vm.wait(VM_TIMEOUT)?;
    calls.results = read_results(&out.join("results"));
    calls.results.insert("vm.exit".into(), status.to_string());
    if !status.success() || calls.results.values().any(|value| value == "failed") {
        // The tests report the results; how the guest got there is on its console.
        eprintln!(
            "real-node: a guest step failed; console tail:\n{}",
            vm.console_tail(80)
        );
    }
    eprintln!(
        "real-node: rollout: longest time without a tunnel {} s over {} drop(s)",
        calls
            .results
            .get("roll.longest_gap")
            .map_or("?", String::as_str),
        calls.results.get("roll.drops").map_or("?", String::as_str)
    );

    let logs = kubectl_ok(cp, &["logs", "-n", APPS_NS, "transfer"])?;
    calls.server = logs
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("TRANSFER ")?.split_whitespace();
            let kind = words.next()?.to_owned();
            let bytes = words.next()?.parse().ok()?;
            let sha = words.next()?.to_owned();
            (words.next()? == "complete").then_some((kind, bytes, sha))
        })
        .collect();
    Ok(calls)
}

/// What the guest recorded under `key` so far.
fn guest_result(out: &Path, key: &str) -> Option<String> {
    read_results(&out.join("results")).remove(key)
}

/// Disables bob (whose call is up) with `kubectl patch` and records how long the gateway took to
/// end his session.
fn disable_bob(cp: &ControlPlane, out: &Path, calls: &mut Calls) -> Result<(), Error> {
    // bob's call is the only one up: the census counts it on the gateway and on bob.
    calls.counted_up = wait_counts(cp, 1)?;
    let patched_at = SystemTime::now();
    disable(cp, "bob")?;
    let patch_returned = SystemTime::now();
    wait_result(out, "disable.sstpc_rc", Duration::from_secs(90))?;
    // From kubectl's return: the change is in the API then (kubectl's own start-up, seconds on a
    // loaded machine, is not the gateway's). A kick logged before kubectl got its answer back
    // counts as 0.
    let kicked = kick_time(cp, patched_at)?;
    calls.audit = audit_records(cp)?;
    calls.disable_elapsed =
        kicked.map(|at| at.duration_since(patch_returned).unwrap_or(Duration::ZERO));
    eprintln!(
        "real-node: disabling bob: the gateway ended his session {:?} after kubectl patch \
         returned ({:?} after it was started)",
        calls.disable_elapsed,
        kicked.and_then(|at| at.duration_since(patched_at).ok())
    );
    // Nothing is connected now: the guest waits for go-disable-counted before its next call.
    calls.counted_down = wait_counts(cp, 0)?;
    Ok(())
}

/// `kubectl patch` of the SstpUser `user` to disabled.
fn disable(cp: &ControlPlane, user: &str) -> Result<(), Error> {
    kubectl_ok(
        cp,
        &[
            "patch",
            "sstpuser",
            user,
            "-n",
            GATEWAY_NS,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ],
    )?;
    Ok(())
}

/// `status.activeSessions` of the gateway and of bob, as stored.
fn session_counts(cp: &ControlPlane) -> Result<(Option<i64>, Option<i64>), Error> {
    let count = |object: Option<Value>| object.and_then(|o| o["status"]["activeSessions"].as_i64());
    Ok((
        count(get_json(cp, &["sstpgateway", "-n", GATEWAY_NS, GATEWAY])?),
        count(get_json(cp, &["sstpuser", "-n", GATEWAY_NS, "bob"])?),
    ))
}

/// How long until the gateway and bob both count `sessions` (`None`: not within
/// [`COUNT_BOUND`]).
fn wait_counts(cp: &ControlPlane, sessions: i64) -> Result<Option<Duration>, Error> {
    let started = std::time::Instant::now();
    let mut last = (None, None);
    let reached = sstp_e2e::poll_until(COUNT_BOUND, Duration::from_millis(250), || {
        last = session_counts(cp)?;
        Ok((last == (Some(sessions), Some(sessions))).then_some(()))
    })?;
    let elapsed = reached.map(|()| started.elapsed());
    eprintln!(
        "real-node: census: {sessions} session(s) in the gateway's and bob's status after \
         {elapsed:?} (last seen {last:?})"
    );
    Ok(elapsed)
}

/// Deletes the operator pod holding the Lease (nothing is connected), waits until the other
/// replica leads and its census has run a few rounds, and reads what it wrote.
fn restart_the_leader(cp: &ControlPlane) -> Result<Restart, Error> {
    let versions = || -> Result<Vec<String>, Error> {
        let mut versions = Vec::new();
        for (kind, name) in [
            ("sstpgateway", GATEWAY),
            ("sstpuser", "alice"),
            ("sstpuser", "bob"),
        ] {
            let object = get_json(cp, &[kind, "-n", GATEWAY_NS, name])?;
            versions.push(
                object
                    .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
            );
        }
        Ok(versions)
    };
    let mut restart = Restart::default();
    // The counts are settled (0) before the old leader goes.
    wait_until("the counts to settle at 0", COUNT_BOUND, || {
        Ok((session_counts(cp)? == (Some(0), Some(0))).then_some(()))
    })?;
    restart.old_leader = lease_holder(cp)?;
    restart.versions_before = versions()?;
    let operators = items(get_json(
        cp,
        &["pods", "-n", OPERATOR_NS, "-l", OPERATOR_SELECTOR],
    )?);
    let old_pod = operators
        .iter()
        .map(name_of)
        .find(|pod| restart.old_leader.starts_with(pod.as_str()))
        .ok_or_else(|| Error::Unavailable(format!("no pod holds {}", restart.old_leader)))?;
    kubectl_ok(
        cp,
        &["delete", "pod", "-n", OPERATOR_NS, &old_pod, "--wait=false"],
    )?;
    restart.new_leader = wait_until("another replica to take the Lease", POD_BOUND, || {
        let holder = lease_holder(cp)?;
        Ok((!holder.is_empty() && !holder.starts_with(old_pod.as_str())).then_some(holder))
    })?;
    let new_pod = items(get_json(
        cp,
        &["pods", "-n", OPERATOR_NS, "-l", OPERATOR_SELECTOR],
    )?)
    .into_iter()
    .find(|pod| restart.new_leader.starts_with(name_of(pod).as_str()))
    .ok_or_else(|| Error::Unavailable(format!("no pod for {}", restart.new_leader)))?;
    let ip = new_pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Three rounds at least: the first one compares, the later ones would repeat a write.
    let metrics = wait_until("the new leader's census to run 3 rounds", POD_BOUND, || {
        let text = node_http_get(cp, &format!("http://{ip}:8080/metrics"))?;
        let rounds = metric_sum(&text, "sstp_operator_session_census_rounds_total");
        Ok((rounds >= 3.0).then_some(text))
    })?;
    restart.census_rounds =
        metric_sum(&metrics, "sstp_operator_session_census_rounds_total") as u64;
    restart.writes = metric_sum(&metrics, "sstp_operator_writes_total") as u64;
    restart.versions_after = versions()?;
    Ok(restart)
}

/// With [`OUTAGE_SESSIONS`] sessions of `load` up: deletes both operator pods and restarts the
/// API server; once it is back and a new operator pod leads (and has counted the sessions),
/// disables `load` and records when every session ended.
fn control_plane_outage(cp: &ControlPlane, dir: &Path) -> Result<Outage, Error> {
    let target = through_service(cp, dir, "load", LOAD_PASSWORD)?;
    // One dial each: a session cut off by the disable does not keep coming back in (it may once,
    // on a pod that has not seen the disable yet; the test allows that).
    let load = hold::HoldRun::start(&target, "outage", OUTAGE_SESSIONS, 1)?;
    load.wait_ready(POD_BOUND)?;
    let mut outage = Outage::default();
    let old_operators: Vec<String> = items(get_json(
        cp,
        &["pods", "-n", OPERATOR_NS, "-l", OPERATOR_SELECTOR],
    )?)
    .iter()
    .map(name_of)
    .collect();
    kubectl_ok(
        cp,
        &[
            "delete",
            "pods",
            "-n",
            OPERATOR_NS,
            "-l",
            OPERATOR_SELECTOR,
            "--wait=false",
        ],
    )?;
    outage.apiserver_gone = cp.restart_apiserver()?;
    eprintln!(
        "real-node: the API server was gone for {:?}",
        outage.apiserver_gone
    );
    wait_until("a new operator pod to lead", POD_BOUND, || {
        let holder = lease_holder(cp)?;
        let fresh = !holder.is_empty()
            && !old_operators
                .iter()
                .any(|old| holder.starts_with(old.as_str()));
        Ok(fresh.then_some(()))
    })?;
    // Counted by the new leader: every session is still up.
    wait_until(
        "the new leader to count the load's sessions",
        POD_BOUND,
        || {
            let user = get_json(cp, &["sstpuser", "-n", GATEWAY_NS, "load"])?;
            let count = user.and_then(|u| u["status"]["activeSessions"].as_u64());
            Ok((count == Some(u64::from(OUTAGE_SESSIONS))).then_some(()))
        },
    )?;
    let unix_ms = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis())
    };
    outage.disable_started_ms = unix_ms();
    disable(cp, "load")?;
    outage.disable_returned_ms = unix_ms();
    wait_until(
        "the load's sessions to end",
        Duration::from_secs(60),
        || {
            let user = get_json(cp, &["sstpuser", "-n", GATEWAY_NS, "load"])?;
            let count = user.and_then(|u| u["status"]["activeSessions"].as_u64());
            Ok((count == Some(0)).then_some(()))
        },
    )?;
    outage.hold = load.finish("through the control plane's outage")?;
    Ok(outage)
}

/// The per-user limit is per pod (the CRD says so): `solo`, limited to one session, holds one
/// on each gateway pod at once, and a second one on the same pod is refused.
fn per_pod_limit(cp: &ControlPlane, dir: &Path) -> Result<PerPod, Error> {
    let users_in_document = || -> Result<Option<i64>, Error> {
        Ok(get_json(cp, &["sstpgateway", "-n", GATEWAY_NS, GATEWAY])?
            .and_then(|gw| gw["status"]["users"].as_i64()))
    };
    let before = users_in_document()?.unwrap_or(0);
    apply(
        cp,
        dir,
        "solo",
        &user_yaml_with("solo", SOLO_PASSWORD, "  maxSessions: 1\n"),
    )?;
    // In the users Secret; the pods' watches have it within a second or two after.
    wait_until("solo in the users document", POD_BOUND, || {
        Ok((users_in_document()? == Some(before + 1)).then_some(()))
    })?;
    let pods = wait_ready_pods(cp, GATEWAY_NS, GATEWAY_SELECTOR, 2)?;
    let ip_of = |pod: &str| -> Result<String, Error> {
        get_json(cp, &["pod", "-n", GATEWAY_NS, pod])?
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned))
            .ok_or_else(|| Error::Unavailable(format!("{pod} has no IP")))
    };
    let (first, second) = (ip_of(&pods[0])?, ip_of(&pods[1])?);
    let netns = node_netns(cp)?;
    let target = |address: &str| hold::Target {
        dir,
        address: format!("{address}:443"),
        ca: dir.join("ca.crt"),
        user: "solo",
        password: SOLO_PASSWORD,
        netns: Some(&netns),
    };
    let (on_first, on_second) = (target(&first), target(&second));
    // A few dials at most (the authentication throttle allows 10 failures a minute), in case the
    // pod has not read the new document yet.
    let held = hold::HoldRun::start(&on_first, "solo-held", 1, 5)?;
    held.wait_ready(Duration::from_secs(120))?;
    let one_session = |target: &hold::Target<'_>, tag: &str, what: &str| {
        let mut command = target.command("setup", tag)?;
        command.args(["--sessions", "1", "--duration", "0s"]);
        hold::run(command, what)
    };
    let other_pod = one_session(&on_second, "solo-other", "setup (solo on the other pod)")?;
    let same_pod = one_session(
        &on_first,
        "solo-same",
        "setup (solo again on the first pod)",
    )?;
    Ok(PerPod {
        held: held.finish("(solo, one session on the first pod)")?,
        other_pod,
        same_pod,
    })
}

/// The nodes the gateway pods run on (pod -> node).
fn gateway_nodes(cp: &ControlPlane) -> Result<BTreeMap<String, String>, Error> {
    Ok(items(get_json(
        cp,
        &["pods", "-n", GATEWAY_NS, "-l", GATEWAY_SELECTOR],
    )?)
    .iter()
    .filter(|pod| pod_ready(pod))
    .map(|pod| {
        (
            name_of(pod),
            pod["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    })
    .collect())
}

/// With [`DRAIN_SESSIONS`] sessions of `load` held through the Service (node0's NodePort),
/// `kubectl drain` of the node running one gateway pod, the way an operator does it; the
/// PodDisruptionBudget lets one pod go, its sessions get CALL_DISCONNECT and redial to the other
/// pod, and the replacement lands on the node left. The load says whether anyone was connected
/// at every moment (`fewest_up`). The node is uncordoned after.
fn drain_a_node(cp: &ControlPlane, dir: &Path) -> Result<Drain, Error> {
    let mut drain = Drain::default();
    wait_ready_pods(cp, GATEWAY_NS, GATEWAY_SELECTOR, 2)?;
    drain.nodes_before = gateway_nodes(cp)?;
    // The node of the first pod that is not on node0: the load dials node0's NodePort, so the
    // drained node's kube-proxy is not on the clients' way (a NodePort on a drained node still
    // forwards, but a client of a real cluster dials a load balancer, not a node).
    drain.drained = drain
        .nodes_before
        .values()
        .find(|node| node.as_str() != "node0")
        .or_else(|| drain.nodes_before.values().next())
        .cloned()
        .ok_or_else(|| Error::Unavailable("no gateway pod to drain".into()))?;
    // The calls' transfer server is a bare pod, which `kubectl drain` refuses to evict; the calls
    // are done with it.
    kubectl_ok(
        cp,
        &[
            "delete",
            "pod",
            "-n",
            APPS_NS,
            "transfer",
            "--ignore-not-found",
            "--wait",
        ],
    )?;
    let target = through_service(cp, dir, "drain", DRAIN_PASSWORD)?;
    let load = hold::HoldRun::start(&target, "drain", DRAIN_SESSIONS, 20)?;
    load.wait_ready(POD_BOUND)?;
    let began = std::time::Instant::now();
    let drained = kubectl_ok(
        cp,
        &[
            "drain",
            &drain.drained,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=300s",
        ],
    );
    drain.took = began.elapsed();
    // Uncordoned whatever happened, so the later steps have both nodes.
    let uncordoned = kubectl_ok(cp, &["uncordon", &drain.drained]);
    drain.said = drained?;
    uncordoned?;
    wait_ready_pods(cp, GATEWAY_NS, GATEWAY_SELECTOR, 2)?;
    drain.nodes_after = gateway_nodes(cp)?;
    // Every session that was cut off redials at once; the census says when all are back. Not
    // an error when they are not: the test reads the load's own account of every session.
    let counted = || -> Result<Option<u64>, Error> {
        let user = get_json(cp, &["sstpuser", "-n", GATEWAY_NS, "drain"])?;
        Ok(user.and_then(|u| u["status"]["activeSessions"].as_u64()))
    };
    let _ = wait_until("the load's sessions to be back", COUNT_BOUND, || {
        Ok((counted()? == Some(u64::from(DRAIN_SESSIONS))).then_some(()))
    });
    drain.counted_after = counted()?;
    drain.hold = load.finish("through kubectl drain")?;
    Ok(drain)
}

/// The operator Lease's holder ("" when none).
fn lease_holder(cp: &ControlPlane) -> Result<String, Error> {
    let leases = items(get_json(cp, &["leases", "-n", OPERATOR_NS])?);
    Ok(leases
        .iter()
        .find_map(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .unwrap_or_default())
}

/// The body of an HTTP GET from inside node0's network namespace (where the pod addresses are).
fn node_http_get(cp: &ControlPlane, url: &str) -> Result<String, Error> {
    let netns = node_netns(cp)?;
    let got = output(
        Command::new("ip").args([
            "netns",
            "exec",
            &netns,
            "curl",
            "-sSf",
            "--max-time",
            "5",
            url,
        ]),
        "curl in the node's network namespace",
    )?;
    Ok(String::from_utf8_lossy(&got.stdout).into_owned())
}

/// The sum of every sample of `name` in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Rolls the gateway Deployment (alice's call is up in the VM, and [`HOLD_SESSIONS`] of the
/// project's client from the host) by changing its configuration, and waits until only new pods
/// serve; then stops the load and keeps its result.
fn roll_the_gateway(
    cp: &ControlPlane,
    target: &hold::Target<'_>,
    calls: &mut Calls,
) -> Result<(), Error> {
    calls.rollout_pods_before = wait_ready_pods(cp, GATEWAY_NS, GATEWAY_SELECTOR, 2)?;
    // Redials: a session may land on a pod that goes next.
    let load = hold::HoldRun::start(target, "rollout", HOLD_SESSIONS, 40)?;
    load.wait_ready(POD_BOUND)?;
    kubectl_ok(
        cp,
        &[
            "patch",
            "sstpgateway",
            GATEWAY,
            "-n",
            GATEWAY_NS,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"limits":{"idleTimeoutSeconds":3500}}}"#,
        ],
    )?;
    calls.rollout_pods_after = wait_until("the rollout to finish", POD_BOUND, || {
        let pods = items(get_json(
            cp,
            &["pods", "-n", GATEWAY_NS, "-l", GATEWAY_SELECTOR],
        )?);
        let names: Vec<String> = pods.iter().map(name_of).collect();
        let fresh = names
            .iter()
            .all(|name| !calls.rollout_pods_before.contains(name));
        let ready = pods.iter().filter(|pod| pod_ready(pod)).count();
        Ok((pods.len() == 2 && ready == 2 && fresh).then_some(names))
    })?;
    calls.hold = load.finish("through the rollout")?;
    Ok(())
}

/// Every JSON line with `"target":"sstp_audit"` in the gateway pods' logs, with its pod.
fn audit_records(cp: &ControlPlane) -> Result<Vec<(String, Value)>, Error> {
    let mut records = Vec::new();
    for pod in items(get_json(
        cp,
        &["pods", "-n", GATEWAY_NS, "-l", GATEWAY_SELECTOR],
    )?) {
        let name = name_of(&pod);
        let logs = kubectl_ok(cp, &["logs", "-n", GATEWAY_NS, &name])?;
        records.extend(
            logs.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|record| record["target"] == "sstp_audit")
                .map(|record| (name.clone(), record)),
        );
    }
    Ok(records)
}

/// When a gateway pod logged that it ended sessions of users no longer admitted, after `since`
/// (the kubelet's timestamps on the container log: the same clock as this process).
fn kick_time(cp: &ControlPlane, since: SystemTime) -> Result<Option<SystemTime>, Error> {
    let since = jiff::Timestamp::try_from(since).map_err(|e| Error::Unavailable(e.to_string()))?;
    let mut earliest: Option<jiff::Timestamp> = None;
    for pod in items(get_json(
        cp,
        &["pods", "-n", GATEWAY_NS, "-l", GATEWAY_SELECTOR],
    )?) {
        let logs = kubectl_ok(
            cp,
            &["logs", "--timestamps", "-n", GATEWAY_NS, &name_of(&pod)],
        )?;
        for line in logs.lines() {
            if !line.contains("ending sessions of users no longer admitted") {
                continue;
            }
            let Some(Ok(at)) = line
                .split_whitespace()
                .next()
                .map(str::parse::<jiff::Timestamp>)
            else {
                continue;
            };
            if at >= since && earliest.is_none_or(|e| at < e) {
                earliest = Some(at);
            }
        }
    }
    Ok(earliest.map(SystemTime::from))
}

fn pem_body(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
}

/// A gateway whose image does not exist on the node: its pods cannot start, and the status must
/// say so.
fn unstartable(cp: &ControlPlane, dir: &Path) -> Result<Value, Error> {
    let yaml = format!(
        r#"apiVersion: sstp.io/v1alpha1
kind: SstpGateway
metadata:
  name: broken
  namespace: {GATEWAY_NS}
spec:
  replicas: 1
  hostnames: [broken.test]
  addressPool: 10.9.0.0/24
  service:
    type: NodePort
  pod:
    image: localhost/sstp-gateway:does-not-exist
"#
    );
    apply(cp, dir, "broken", &yaml)?;
    let condition = wait_until(
        "a condition saying why the pod cannot start",
        POD_BOUND,
        || {
            let gateway = get_json(cp, &["sstpgateway", "-n", GATEWAY_NS, "broken"])?;
            Ok(gateway.and_then(|gateway| {
                gateway["status"]["conditions"]
                    .as_array()
                    .and_then(|conditions| {
                        conditions
                            .iter()
                            .find(|c| {
                                c["status"] == "False"
                                    && c["reason"].as_str().is_some_and(|r| {
                                        r.contains("ImagePull") || r.contains("Image")
                                    })
                            })
                            .cloned()
                    })
            }))
        },
    )?;
    delete_gateway(cp, "broken")?;
    Ok(condition)
}

/// `kubectl delete sstpgateway NAME --wait` in the gateways' namespace.
fn delete_gateway(cp: &ControlPlane, name: &str) -> Result<(), Error> {
    kubectl_ok(
        cp,
        &["delete", "sstpgateway", "-n", GATEWAY_NS, name, "--wait"],
    )?;
    Ok(())
}

/// A gateway that gets IPv4 forwarding from a privileged init container of its own image (the
/// way for clusters whose kubelets allow no unsafe sysctl): Ready, and forwarding, with no pod
/// sysctl.
fn init_container(cp: &ControlPlane, dir: &Path) -> Result<(GatewayPod, Value), Error> {
    let yaml = format!(
        r#"apiVersion: sstp.io/v1alpha1
kind: SstpGateway
metadata:
  name: branch
  namespace: {GATEWAY_NS}
spec:
  replicas: 1
  hostnames: [branch.test]
  addressPool: 10.10.0.0/24
  service:
    type: NodePort
  pod:
    ipForwarding: initContainer
"#
    );
    apply(cp, dir, "branch", &yaml)?;
    let selector = "app.kubernetes.io/name=sstp-gateway,app.kubernetes.io/instance=branch";
    let names = wait_ready_pods(cp, GATEWAY_NS, selector, 1)?;
    let pod = inspect_gateway_pod(cp, &names[0])?;
    let spec = get_json(cp, &["pod", "-n", GATEWAY_NS, &names[0]])?
        .map(|pod| pod["spec"].clone())
        .unwrap_or_default();
    delete_gateway(cp, "branch")?;
    Ok((pod, spec))
}

/// Everything labelled as a child of the gateway, as `kind/name`.
fn children(
    cp: &ControlPlane,
    namespace: &str,
    selector: &str,
    kinds: &str,
) -> Result<Vec<String>, Error> {
    Ok(
        items(get_json(cp, &[kinds, "-n", namespace, "-l", selector])?)
            .iter()
            .map(kind_and_name)
            .collect(),
    )
}

fn removal(cp: &ControlPlane) -> Result<Removal, Error> {
    let kinds = "deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,roles,\
                 rolebindings,poddisruptionbudgets";
    let selector = format!("app.kubernetes.io/instance={GATEWAY}");
    kubectl_ok(
        cp,
        &["delete", "sstpgateway", "-n", GATEWAY_NS, GATEWAY, "--wait"],
    )?;
    let after_delete = wait_until("the gateway's children to go", POD_BOUND, || {
        let left = children(cp, GATEWAY_NS, &selector, kinds)?;
        Ok(left.is_empty().then_some(left))
    })
    .or_else(|_| children(cp, GATEWAY_NS, &selector, kinds))?;

    helm_ok(
        cp,
        &["uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait"],
    )?;
    // The operator pods take their grace period to go (helm waits for the Deployment only).
    let leftovers = || -> Result<Vec<String>, Error> {
        let release = format!("app.kubernetes.io/instance={RELEASE}");
        let mut left = children(cp, OPERATOR_NS, &release, kinds)?;
        left.extend(
            items(get_json(
                cp,
                &["clusterroles,clusterrolebindings", "-l", &release],
            )?)
            .iter()
            .map(kind_and_name),
        );
        // Whatever the operator made at run time and no label names (its Lease).
        for lease in items(get_json(cp, &["leases", "-n", OPERATOR_NS])?) {
            left.push(format!("Lease/{}", name_of(&lease)));
        }
        Ok(left)
    };
    let after_uninstall = wait_until("the release's objects to go", POD_BOUND, || {
        let left = leftovers()?;
        Ok(left.is_empty().then_some(left))
    })
    .or_else(|_| leftovers())?;
    let crds_kept = ["sstpgateways.sstp.io", "sstpusers.sstp.io"]
        .iter()
        .all(|crd| get_json(cp, &["crd", crd]).ok().flatten().is_some());
    Ok(Removal {
        after_delete,
        after_uninstall,
        crds_kept,
    })
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

#[test]
fn helm_install_runs_the_operator_and_the_gateway_pods_with_least_privilege() {
    let install = installed();
    assert_eq!(install.operator_pods_ready, 2, "operator pods Ready");
    assert!(
        install
            .operator_pods
            .iter()
            .any(|pod| install.lease_holder.starts_with(pod.as_str())),
        "the Lease holder {} is one of the operator pods {:?}",
        install.lease_holder,
        install.operator_pods
    );
    assert_eq!(
        install.gateway_pods.len(),
        2,
        "gateway pods Running and Ready"
    );
    // The operator's default topology spread: one replica on each node.
    let nodes: BTreeSet<&str> = install
        .gateway_pods
        .iter()
        .map(|pod| pod.node.as_str())
        .collect();
    assert_eq!(
        nodes.len(),
        usize::from(NODES),
        "the replicas spread over the nodes: {:?}",
        install.gateway_pods
    );
    for pod in &install.gateway_pods {
        // NET_ADMIN (12) and NET_BIND_SERVICE (10), nothing else, not even in the bounding set.
        assert_eq!(
            pod.cap_eff, "0000000000001400",
            "{}: effective capabilities ({pod:?})",
            pod.name
        );
        assert_eq!(pod.cap_bnd, "0000000000001400", "{pod:?}: bounding set");
        assert_eq!(pod.no_new_privs, "1", "{pod:?}: no privilege escalation");
        assert_eq!(pod.seccomp, "2", "{pod:?}: seccomp filter (RuntimeDefault)");
        assert!(pod.tun, "{pod:?}: /dev/net/tun in the container");
        assert_eq!(
            pod.ip_forward, "1",
            "{pod:?}: net.ipv4.ip_forward in the pod"
        );
    }
}

#[test]
fn sstpc_connects_through_the_service_and_moves_50_mb_each_way_intact() {
    let calls = called();
    // A retry is allowed only for sstpc's own post-handshake race (guest-lib.sh race_lost),
    // recorded as svc.races; anything else fails the call.
    let attempts = result(calls, "svc.attempts");
    assert!(
        attempts != "failed" && attempts != "<missing>",
        "{:?}",
        calls.results
    );
    let races: u32 = result(calls, "svc.races").parse().unwrap_or(u32::MAX);
    assert_eq!(
        attempts.parse::<u32>().ok(),
        races.checked_add(1),
        "only lost races are retried: {:?}",
        calls.results
    );
    assert!(
        result(calls, "svc.addr").starts_with("10.8.0."),
        "{:?}",
        calls.results
    );
    assert_eq!(
        result(calls, "ping.rc"),
        "0",
        "ping the server pod through the tunnel"
    );
    assert_eq!(result(calls, "transfer.rc"), "0", "{:?}", calls.results);
    let server = |kind: &str| {
        calls
            .server
            .iter()
            .find(|(k, _, _)| k == kind)
            .map(|(_, bytes, sha)| (bytes.to_string(), sha.clone()))
    };
    assert_eq!(
        server("GET"),
        Some((
            GET_BYTES.to_string(),
            result(calls, "get.sha256").to_owned()
        )),
        "what the server sent is what the client received"
    );
    assert_eq!(
        server("PUT"),
        Some((
            PUT_BYTES.to_string(),
            result(calls, "put.sha256").to_owned()
        )),
        "what the client sent is what the server received"
    );
}

#[test]
fn the_ca_and_its_crl_are_served_through_the_service_and_verify() {
    let calls = called();
    assert!(calls.ca_matches_secret, "the served CA is the gateway's");
    assert!(
        calls.crl_verify.contains("verify OK"),
        "openssl: {}",
        calls.crl_verify
    );
}

#[test]
fn disabling_a_user_with_kubectl_patch_ends_the_session_within_2_s() {
    let calls = called();
    assert_ne!(
        result(calls, "disable.sstpc_rc"),
        "running",
        "the call ended"
    );
    assert_eq!(
        result(calls, "disable.received_disconnect"),
        "1",
        "{:?}",
        calls.results
    );
    let elapsed = calls
        .disable_elapsed
        .expect("no gateway pod logged ending bob's session");
    assert!(
        elapsed <= DISABLE_DEADLINE,
        "bob's session ended {elapsed:?} after kubectl patch returned"
    );
}

#[test]
fn the_gateway_and_the_user_count_the_session_in_status_within_10_s_of_it_starting_and_ending() {
    let calls = called();
    for (what, took) in [
        ("bob's call up", calls.counted_up),
        ("bob's call over", calls.counted_down),
    ] {
        let took = took.unwrap_or_else(|| panic!("{what}: not counted within {COUNT_BOUND:?}"));
        assert!(
            took <= COUNT_DEADLINE,
            "{what}: status.activeSessions followed after {took:?}, over {COUNT_DEADLINE:?}"
        );
    }
}

#[test]
fn a_new_leader_that_finds_the_same_session_counts_writes_nothing() {
    let restart = outcome().restart.as_ref().expect("the leader restart step");
    assert_ne!(restart.old_leader, restart.new_leader);
    assert!(restart.census_rounds >= 3, "{restart:?}");
    assert_eq!(restart.writes, 0, "the new leader wrote: {restart:?}");
    assert_eq!(
        restart.versions_before, restart.versions_after,
        "{restart:?}"
    );
    assert!(restart.versions_before.iter().all(|v| !v.is_empty()));
}

#[test]
fn the_operators_deleted_and_the_api_server_restarted_drop_no_session_and_a_disable_after_still_cuts_off_within_2_s()
 {
    let outage = outcome().outage.as_ref().expect("the outage step");
    let field = |key: &str| u128::from(hold::field(&outage.hold, key));
    let sessions = u128::from(OUTAGE_SESSIONS);
    assert_eq!(field("up_at_start"), sessions, "{outage:?}");
    // Every session ended, by CALL_DISCONNECT, and none before the disable was asked for. Each
    // pod learns of the disable on its own (within a second of each other): a session cut off
    // by the first may log in once more on the other before that one has it, and is cut off
    // again when it does; those ends count too, and none is left up.
    assert!(field("ends") >= sessions, "{outage:?}");
    assert_eq!(field("ends_by_disconnect"), field("ends"), "{outage:?}");
    assert_eq!(field("up_at_stop"), 0, "{outage:?}");
    assert!(
        field("first_end_unix_ms") >= outage.disable_started_ms,
        "a session ended before the disable: {outage:?}"
    );
    let cut_off = field("last_end_unix_ms").saturating_sub(outage.disable_returned_ms);
    eprintln!(
        "real-node: after the outage ({:?} without an API server) the disabled user's last session \
         ended {cut_off} ms after kubectl patch returned",
        outage.apiserver_gone
    );
    assert!(
        cut_off <= DISABLE_DEADLINE.as_millis(),
        "the last session ended {cut_off} ms after the patch: {outage:?}"
    );
}

#[test]
fn a_per_user_limit_holds_on_each_pod_and_pods_share_no_counts() {
    let per_pod = outcome().per_pod.as_ref().expect("the per-pod limit step");
    let held = |key: &str| hold::field(&per_pod.held, key);
    assert_eq!(held("up_at_start"), 1, "{per_pod:?}");
    assert_eq!(
        held("up_at_stop"),
        1,
        "the held session stayed: {per_pod:?}"
    );
    assert_eq!(hold::field(&per_pod.other_pod, "up"), 1, "{per_pod:?}");
    assert_eq!(hold::field(&per_pod.same_pod, "up"), 0, "{per_pod:?}");
    assert_eq!(hold::field(&per_pod.same_pod, "failed"), 1, "{per_pod:?}");
}

#[test]
fn the_gateway_pods_run_on_both_nodes_and_a_node_drain_keeps_someone_connected_at_every_moment() {
    let drain = outcome().drain.as_ref().expect("the drain step");
    let nodes: BTreeSet<&String> = drain.nodes_before.values().collect();
    assert_eq!(
        nodes.len(),
        usize::from(NODES),
        "two replicas spread over both nodes: {drain:?}"
    );
    assert!(
        drain.nodes_after.len() == 2 && drain.nodes_after.values().all(|n| *n != drain.drained),
        "both pods run on the nodes left: {drain:?}"
    );
    let field = |key: &str| hold::field(&drain.hold, key);
    let sessions = u64::from(DRAIN_SESSIONS);
    eprintln!(
        "real-node: kubectl drain {} took {:?}; {} of {DRAIN_SESSIONS} sessions were cut off and \
         redialed, the longest gap {} ms, at least {} connected at every moment",
        drain.drained,
        drain.took,
        field("ends"),
        field("longest_gap_ms"),
        field("fewest_up")
    );
    assert_eq!(field("up_at_start"), sessions, "{drain:?}");
    assert!(
        field("fewest_up") >= 1,
        "nobody connected at some moment: {drain:?}"
    );
    // The drained pod's sessions, and only those: each told by CALL_DISCONNECT, each back.
    assert!(
        field("ends") >= 1,
        "no session was on the drained pod: {drain:?}"
    );
    assert!(field("ends") < sessions, "{drain:?}");
    assert_eq!(field("ends_other"), 0, "{drain:?}");
    assert_eq!(field("redialed"), field("ends"), "{drain:?}");
    assert_eq!(field("up_at_stop"), sessions, "{drain:?}");
    assert_eq!(
        drain.counted_after,
        Some(sessions),
        "the census after: {drain:?}"
    );
}

#[test]
fn a_rollout_disconnects_the_client_cleanly_and_it_reconnects_through_the_service() {
    let calls = called();
    let drops: u32 = result(calls, "roll.drops").parse().unwrap_or(0);
    assert!(
        drops >= 1,
        "the rollout ended the call: {:?}",
        calls.results
    );
    for drop in 1..=drops {
        assert_eq!(
            result(calls, &format!("roll.drop{drop}")),
            "disconnect",
            "drop {drop} came with CALL_DISCONNECT, not a reset: {:?}",
            calls.results
        );
    }
    assert_ne!(
        result(calls, "roll.redial"),
        "failed",
        "{:?}",
        calls.results
    );
    assert_eq!(
        result(calls, "roll.final_ping_rc"),
        "0",
        "the call is up on a new pod (no old one is left): {:?} -> {:?}",
        calls.rollout_pods_before,
        calls.rollout_pods_after
    );
}

#[test]
fn a_rollout_under_200_sessions_ends_every_one_with_call_disconnect_and_all_reconnect() {
    let hold = &called().hold;
    let field = |key: &str| hold::field(hold, key);
    let sessions = u64::from(HOLD_SESSIONS);
    assert_eq!(field("up_at_start"), sessions, "{hold:?}");
    // Every session started on an old pod, and every old pod went: each ended at least once.
    assert!(field("ends") >= sessions, "{hold:?}");
    assert_eq!(
        field("ends_by_disconnect"),
        field("ends"),
        "some ended by a reset: {hold:?}"
    );
    assert_eq!(field("ends_other"), 0, "{hold:?}");
    assert_eq!(
        field("redialed"),
        field("ends"),
        "some never came back: {hold:?}"
    );
    assert_eq!(field("up_at_stop"), sessions, "{hold:?}");
    eprintln!(
        "real-node: rollout under load: {} ends, all by CALL_DISCONNECT, longest gap {} ms",
        field("ends"),
        field("longest_gap_ms")
    );
}

#[test]
fn deleting_the_gateway_removes_every_child_and_helm_uninstall_keeps_only_the_crds() {
    installed();
    let removal = match &outcome().removal {
        Ok(removal) => removal,
        Err(reason) => panic!("the removal step failed: {reason}"),
    };
    assert_eq!(removal.after_delete, Vec::<String>::new(), "children left");
    assert_eq!(
        removal.after_uninstall,
        Vec::<String>::new(),
        "left by helm uninstall"
    );
    assert!(
        removal.crds_kept,
        "the CRDs stay (helm.sh/resource-policy: keep)"
    );
}

#[test]
fn a_gateway_whose_pods_cannot_start_says_why_in_its_status() {
    installed();
    let condition = match &outcome().unstartable {
        Ok(condition) => condition,
        Err(reason) => panic!("{reason}"),
    };
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("broken-"),
        "the message names the pod: {condition}"
    );
}

#[test]
fn the_init_container_way_forwards_without_an_unsafe_sysctl() {
    installed();
    let (pod, spec) = match &outcome().init_container {
        Ok(found) => found,
        Err(reason) => panic!("{reason}"),
    };
    assert_eq!(pod.ip_forward, "1", "{pod:?}");
    assert_eq!(
        pod.cap_eff, "0000000000001400",
        "the gateway container stays unprivileged"
    );
    assert!(
        spec["securityContext"]["sysctls"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "no pod sysctl: {}",
        spec["securityContext"]
    );
    let init = &spec["initContainers"][0];
    assert_eq!(init["args"][0], "enable-ip-forward", "{init}");
    assert_eq!(init["securityContext"]["privileged"], true, "{init}");
}

#[test]
fn the_gateway_pods_log_json_audit_records_that_name_the_pod_and_the_kick() {
    let calls = called();
    let find = |event: &str, user: &str| {
        calls
            .audit
            .iter()
            .find(|(_, record)| record["event"] == event && record["user"] == user)
    };
    let Some((pod, start)) = find("session_start", "alice") else {
        panic!("no session_start for alice: {:#?}", calls.audit)
    };
    assert_eq!(start["gateway"], pod.as_str(), "{start}");
    assert_eq!(
        start["tunnel_address"].as_str(),
        Some(result(calls, "svc.addr")),
        "{start}"
    );
    let (_, alice_end) = find("session_end", "alice").expect("alice's first call ended");
    assert!(
        alice_end["bytes_to_client"].as_u64().unwrap_or(0) > GET_BYTES,
        "{alice_end}"
    );
    let Some((pod, end)) = find("session_end", "bob") else {
        panic!("no session_end for bob: {:#?}", calls.audit)
    };
    assert_eq!(end["gateway"], pod.as_str(), "{end}");
    assert_eq!(end["reason"], "user_not_admitted", "{end}");
    for (_, record) in &calls.audit {
        let text = record.to_string();
        assert!(
            !text.contains(ALICE_PASSWORD) && !text.contains(BOB_PASSWORD),
            "{text}"
        );
    }
}

#[test]
fn a_real_prometheus_finds_every_pod_and_documented_series_through_kubernetes_discovery() {
    let install = installed();
    let Some(found) = discovery() else {
        eprintln!("skipped: Prometheus is not built (tests/prometheus/build)");
        return;
    };
    let gateway_pods: BTreeSet<String> = install
        .gateway_pods
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(found.up["sstp-gateway"], gateway_pods, "{found:#?}");
    let operator_pods: BTreeSet<String> = install.operator_pods.iter().cloned().collect();
    assert_eq!(found.up["sstp-operator"], operator_pods, "{found:#?}");
    // Every series the gateway README documents, on each pod: what an alert or the dashboard
    // selects is there from the start, not only once something happened.
    let documented: BTreeSet<String> = documented::gateway().into_iter().map(|d| d.name).collect();
    for pod in &gateway_pods {
        assert_eq!(
            found.metrics.get(pod),
            Some(&documented),
            "gateway pod {pod}"
        );
    }
    let operator_documented: BTreeSet<String> =
        documented::operator().into_iter().map(|d| d.name).collect();
    for pod in &operator_pods {
        let exposed = found.metrics.get(pod).cloned().unwrap_or_default();
        // writes_total appears with the first write, which only the leader makes.
        let missing: Vec<&String> = operator_documented
            .difference(&exposed)
            .filter(|name| name.as_str() != "sstp_operator_writes_total")
            .collect();
        assert!(missing.is_empty(), "operator pod {pod} lacks {missing:?}");
        assert!(
            exposed.is_subset(&operator_documented),
            "{pod}: {exposed:?}"
        );
    }
    assert_eq!(found.leaders.len(), 1, "one operator leads: {found:#?}");
    let leader = found.leaders.first().unwrap();
    assert!(
        install.lease_holder.starts_with(leader.as_str()),
        "the pod reporting leadership {leader} holds the Lease {}",
        install.lease_holder
    );
}
