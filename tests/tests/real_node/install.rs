//! Step 1 and the last steps: `helm install`, each gateway pod's process on its node, a gateway
//! whose pods cannot start, the init-container way to forward, and removal; with their tests.

// The scenario's constants, shared helpers and `Outcome` live in the test's root.
use super::*;

#[derive(Debug, Default)]
pub(super) struct Install {
    pub(super) operator_pods_ready: usize,
    pub(super) lease_holder: String,
    pub(super) operator_pods: Vec<String>,
    pub(super) gateway_pods: Vec<GatewayPod>,
}

/// One gateway pod as the node runs it: its container's process, read from /proc.
#[derive(Debug, Default, Clone)]
pub(super) struct GatewayPod {
    pub(super) name: String,
    /// The node running it.
    pub(super) node: String,
    pub(super) cap_eff: String,
    pub(super) cap_bnd: String,
    pub(super) no_new_privs: String,
    pub(super) seccomp: String,
    pub(super) tun: bool,
    pub(super) ip_forward: String,
}

#[derive(Debug, Default)]
pub(super) struct Removal {
    pub(super) after_delete: Vec<String>,
    pub(super) after_uninstall: Vec<String>,
    pub(super) crds_kept: bool,
}

pub(super) fn install(cp: &ControlPlane, images: &Images, dir: &Path) -> Result<Install, Error> {
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
pub(super) fn inspect_gateway_pod(cp: &ControlPlane, name: &str) -> Result<GatewayPod, Error> {
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

/// A gateway whose image does not exist on the node: its pods cannot start, and the status must
/// say so.
pub(super) fn unstartable(cp: &ControlPlane, dir: &Path) -> Result<Value, Error> {
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

/// A gateway that gets IPv4 forwarding from a privileged init container of its own image (the
/// way for clusters whose kubelets allow no unsafe sysctl): Ready, and forwarding, with no pod
/// sysctl.
pub(super) fn init_container(cp: &ControlPlane, dir: &Path) -> Result<(GatewayPod, Value), Error> {
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

pub(super) fn removal(cp: &ControlPlane) -> Result<Removal, Error> {
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
