//! High availability: a new leader, both operators and the API server gone under load, per-pod
//! limits, and a node drained under 40 held sessions; with their tests.

// The scenario's constants, shared helpers and `Outcome` live in the test's root.
use super::*;

/// The control plane going away under [`OUTAGE_SESSIONS`] sessions of `load`, then `load`
/// disabled once it is back.
#[derive(Debug, Default)]
pub(super) struct Outage {
    /// How long the API server was gone (stop, start, ready).
    pub(super) apiserver_gone: Duration,
    /// `kubectl patch` disabling `load`: started and returned (Unix ms).
    pub(super) disable_started_ms: u128,
    pub(super) disable_returned_ms: u128,
    /// The load's `RESULT`.
    pub(super) hold: BTreeMap<String, String>,
}

/// `solo` (maxSessions 1) with a session held on one gateway pod: a second session on the other
/// pod, then one more on the first, each dialled at the pod's own address from the node.
#[derive(Debug, Default)]
pub(super) struct PerPod {
    pub(super) held: BTreeMap<String, String>,
    pub(super) other_pod: BTreeMap<String, String>,
    pub(super) same_pod: BTreeMap<String, String>,
}

/// `kubectl drain` of the node running one of the two gateway pods while the load holds
/// sessions through the Service.
#[derive(Debug, Default)]
pub(super) struct Drain {
    /// Node of each gateway pod before the drain (pod -> node).
    pub(super) nodes_before: BTreeMap<String, String>,
    /// The node drained.
    pub(super) drained: String,
    /// Node of each gateway pod once the drain is over.
    pub(super) nodes_after: BTreeMap<String, String>,
    /// How long `kubectl drain` took, and what it said.
    pub(super) took: Duration,
    pub(super) said: String,
    /// `status.activeSessions` of `drain` once the drain was over and the redials had time.
    pub(super) counted_after: Option<u64>,
    /// The load's `RESULT`.
    pub(super) hold: BTreeMap<String, String>,
}

/// The leader operator pod deleted with nothing connected: what its successor wrote.
#[derive(Debug, Default)]
pub(super) struct Restart {
    pub(super) old_leader: String,
    pub(super) new_leader: String,
    /// The new leader's census rounds when it was read.
    pub(super) census_rounds: u64,
    /// Its `sstp_operator_writes_total`, every kind.
    pub(super) writes: u64,
    /// resourceVersion of the gateway, alice and bob: before the deletion, then after.
    pub(super) versions_before: Vec<String>,
    pub(super) versions_after: Vec<String>,
}

/// Deletes the operator pod holding the Lease (nothing is connected), waits until the other
/// replica leads and its census has run a few rounds, and reads what it wrote.
pub(super) fn restart_the_leader(cp: &ControlPlane) -> Result<Restart, Error> {
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
pub(super) fn control_plane_outage(cp: &ControlPlane, dir: &Path) -> Result<Outage, Error> {
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
pub(super) fn per_pod_limit(cp: &ControlPlane, dir: &Path) -> Result<PerPod, Error> {
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

/// With [`DRAIN_SESSIONS`] sessions of `load` held through the Service (node0's NodePort),
/// `kubectl drain` of the node running one gateway pod, the way an operator does it; the
/// PodDisruptionBudget lets one pod go, its sessions get CALL_DISCONNECT and redial to the other
/// pod, and the replacement lands on the node left. The load says whether anyone was connected
/// at every moment (`fewest_up`). The node is uncordoned after.
pub(super) fn drain_a_node(cp: &ControlPlane, dir: &Path) -> Result<Drain, Error> {
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
