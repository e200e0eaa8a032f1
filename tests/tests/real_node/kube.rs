//! Kubernetes and node plumbing the steps share: applying YAML, reading objects and pods, the
//! node's network namespace and container processes, the gateway's Service, users, session
//! counts, audit records, and the images `tests/images/build` makes.

// The scenario's constants, shared helpers and `Outcome` live in the test's root.
use super::*;

/// The image references `tests/images/build` printed, by kind.
pub(super) type Images = BTreeMap<String, String>;

pub(super) fn build_images(cp: &ControlPlane) -> Result<Images, Error> {
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
pub(super) fn split_reference(reference: &str) -> (&str, &str) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => (&reference[..slash + colon], &reference[slash + colon + 1..]),
        None => (reference, "latest"),
    }
}

pub(super) fn apply(cp: &ControlPlane, dir: &Path, name: &str, yaml: &str) -> Result<(), Error> {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).map_err(|source| Error::Io {
        what: format!("writing {}", file.display()),
        source,
    })?;
    kubectl_ok(cp, &["apply", "-f", &file.display().to_string()])?;
    Ok(())
}

pub(super) fn items(list: Option<Value>) -> Vec<Value> {
    list.and_then(|list| list["items"].as_array().cloned())
        .unwrap_or_default()
}

/// `Kind/name` of an object.
pub(super) fn kind_and_name(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        name_of(object)
    )
}

pub(super) fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Waits until exactly `count` pods match `selector` in `namespace` and all are Ready (none
/// terminating); their names.
pub(super) fn wait_ready_pods(
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

pub(super) fn namespace_yaml(name: &str, level: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: {level}\n    pod-security.kubernetes.io/warn: {level}\n"
    )
}

pub(super) fn gateway_yaml() -> String {
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

pub(super) fn user_yaml(user: &str, password: &str) -> String {
    user_yaml_with(user, password, "")
}

/// `user_yaml` with `extra` (indented spec lines) added to the spec.
pub(super) fn user_yaml_with(user: &str, password: &str, extra: &str) -> String {
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

pub(super) const GATEWAY_SELECTOR: &str =
    "app.kubernetes.io/name=sstp-gateway,app.kubernetes.io/instance=office";
pub(super) const OPERATOR_SELECTOR: &str =
    "app.kubernetes.io/name=sstp-operator,app.kubernetes.io/instance=sstp";

/// The name of node0's network namespace (where the pod addresses route).
pub(super) fn node_netns(cp: &ControlPlane) -> Result<String, Error> {
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

/// The host pid of a container, from the containerd task list of the node running it.
pub(super) fn container_pid(cp: &ControlPlane, node: &str, container: &str) -> Result<u32, Error> {
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

/// The node's InternalIP and the gateway Service's NodePorts (sstp, http).
pub(super) fn service_endpoint(cp: &ControlPlane) -> Result<(String, u16, u16), Error> {
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
pub(super) fn through_service<'a>(
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

pub(super) fn read_results(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Waits until the guest's results have `key`.
pub(super) fn wait_result(out: &Path, key: &str, bound: Duration) -> Result<String, Error> {
    wait_until(&format!("the guest's {key}"), bound, || {
        Ok(guest_result(out, key))
    })
}

/// What the guest recorded under `key` so far.
pub(super) fn guest_result(out: &Path, key: &str) -> Option<String> {
    read_results(&out.join("results")).remove(key)
}

/// `kubectl patch` of the SstpUser `user` to disabled.
pub(super) fn disable(cp: &ControlPlane, user: &str) -> Result<(), Error> {
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
pub(super) fn session_counts(cp: &ControlPlane) -> Result<(Option<i64>, Option<i64>), Error> {
    let count = |object: Option<Value>| object.and_then(|o| o["status"]["activeSessions"].as_i64());
    Ok((
        count(get_json(cp, &["sstpgateway", "-n", GATEWAY_NS, GATEWAY])?),
        count(get_json(cp, &["sstpuser", "-n", GATEWAY_NS, "bob"])?),
    ))
}

/// How long until the gateway and bob both count `sessions` (`None`: not within
/// [`COUNT_BOUND`]).
pub(super) fn wait_counts(cp: &ControlPlane, sessions: i64) -> Result<Option<Duration>, Error> {
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

/// The nodes the gateway pods run on (pod -> node).
pub(super) fn gateway_nodes(cp: &ControlPlane) -> Result<BTreeMap<String, String>, Error> {
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

/// The operator Lease's holder ("" when none).
pub(super) fn lease_holder(cp: &ControlPlane) -> Result<String, Error> {
    let leases = items(get_json(cp, &["leases", "-n", OPERATOR_NS])?);
    Ok(leases
        .iter()
        .find_map(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .unwrap_or_default())
}

/// The body of an HTTP GET from inside node0's network namespace (where the pod addresses are).
pub(super) fn node_http_get(cp: &ControlPlane, url: &str) -> Result<String, Error> {
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
pub(super) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Every JSON line with `"target":"sstp_audit"` in the gateway pods' logs, with its pod.
pub(super) fn audit_records(cp: &ControlPlane) -> Result<Vec<(String, Value)>, Error> {
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

pub(super) fn pem_body(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
}

/// `kubectl delete sstpgateway NAME --wait` in the gateways' namespace.
pub(super) fn delete_gateway(cp: &ControlPlane, name: &str) -> Result<(), Error> {
    kubectl_ok(
        cp,
        &["delete", "sstpgateway", "-n", GATEWAY_NS, name, "--wait"],
    )?;
    Ok(())
}

/// Everything labelled as a child of the gateway, as `kind/name`.
pub(super) fn children(
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
