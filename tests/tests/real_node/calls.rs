//! Steps 2-4: the real sstpc in the VM through the Service (50 MB each way, the CA and CRL, a
//! user disabled, the census), rollouts under one client and under 200; with their tests.

// The scenario's constants, shared helpers and `Outcome` live in the test's root.
use super::*;

#[derive(Debug, Default)]
pub(super) struct Calls {
    pub(super) results: BTreeMap<String, String>,
    /// What the transfer server pod logged: (kind, bytes, sha256).
    pub(super) server: Vec<(String, u64, String)>,
    pub(super) ca_matches_secret: bool,
    pub(super) crl_verify: String,
    pub(super) disable_elapsed: Option<Duration>,
    pub(super) rollout_pods_before: Vec<String>,
    pub(super) rollout_pods_after: Vec<String>,
    /// The session audit records the gateway pods logged by the time bob was kicked, with the
    /// pod that logged each.
    pub(super) audit: Vec<(String, Value)>,
    /// From bob's call being up (the guest's signal) until the gateway's and bob's
    /// `status.activeSessions` said 1; `None`: not within [`COUNT_BOUND`].
    pub(super) counted_up: Option<Duration>,
    /// From bob's call being over until both said 0.
    pub(super) counted_down: Option<Duration>,
    /// The `RESULT` of `sstp-load hold` run through the rollout.
    pub(super) hold: BTreeMap<String, String>,
}

pub(super) fn transfer_server_yaml(image: &str) -> String {
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

pub(super) fn calls(cp: &ControlPlane, images: &Images, dir: &Path) -> Result<Calls, Error> {
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

/// Disables bob (whose call is up) with `kubectl patch` and records how long the gateway took to
/// end his session.
pub(super) fn disable_bob(cp: &ControlPlane, out: &Path, calls: &mut Calls) -> Result<(), Error> {
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

/// Rolls the gateway Deployment (alice's call is up in the VM, and [`HOLD_SESSIONS`] of the
/// project's client from the host) by changing its configuration, and waits until only new pods
/// serve; then stops the load and keeps its result.
pub(super) fn roll_the_gateway(
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

/// When a gateway pod logged that it ended sessions of users no longer admitted, after `since`
/// (the kubelet's timestamps on the container log: the same clock as this process).
pub(super) fn kick_time(cp: &ControlPlane, since: SystemTime) -> Result<Option<SystemTime>, Error> {
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
