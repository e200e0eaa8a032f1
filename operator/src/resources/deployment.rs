//! Deployment `<gw>`: the gateway pods, with the least privilege the data plane needs.
//!
//! The data plane needs `NET_ADMIN` (TUN device, addresses, routes, nftables) and
//! `NET_BIND_SERVICE` (ports 443 and 80), the TUN character device `/dev/net/tun` (mounted from
//! the host), and IPv4 forwarding in the pod's network namespace, got one of three ways
//! (`spec.pod.ipForwarding`): the pod sysctl `net.ipv4.ip_forward` (namespaced but "unsafe": the
//! kubelet must allow it), a privileged init container running the gateway image's own
//! `sstp-gateway enable-ip-forward` (the image has no shell), or nothing (inherited from the
//! node). Everything else is dropped from the gateway container: all other capabilities,
//! privilege escalation, writable root filesystem; seccomp stays on.
//! Rolling updates surge by one and never take a pod away first (maxUnavailable 0), so the
//! desired number of gateways keeps serving during a rollout.
//!
//! The pod template carries the hash of itself (`sstp.io/template-hash`), so the status can tell
//! the pods of the current template from leftovers of earlier ones.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
            HTTPGetAction, HostPathVolumeSource, ObjectFieldSelector, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Sysctl,
            TopologySpreadConstraint, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use sha2::{Digest, Sha256};
use sstp_api::{
    SstpGateway,
    gateway::{ImagePullPolicy, IpForwarding, LogFormat},
};

use super::{
    Owner,
    config::{CONFIG_DIR, CONFIG_FILE, TLS_DIR},
    ports,
};

/// What the pod template depends on besides the spec.
#[derive(Debug, Clone)]
pub struct PodInputs<'a> {
    /// The gateway image when the spec does not name one.
    pub default_image: &'a str,
    /// Its pull policy when the spec sets none (`None`: Kubernetes' default).
    pub default_pull_policy: Option<ImagePullPolicy>,
    /// The rendered `config.json`: its hash goes into a pod annotation, so a configuration
    /// change rolls the pods (the gateway reads it once at start; users and certificate reload
    /// live and do not roll anything).
    pub config_json: &'a str,
}

/// The Deployment of `gateway`.
pub fn deployment(gateway: &SstpGateway, owner: &Owner, inputs: &PodInputs<'_>) -> Deployment {
    let mut annotations = gateway.spec.pod.annotations.clone();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_owned(),
        sha256_hex(inputs.config_json),
    );
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(owner.labels()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(gateway, owner, inputs)),
    };
    let hash = sha256_hex(&serde_json::to_string(&template).unwrap_or_default());
    if let Some(annotations) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        annotations.insert(TEMPLATE_HASH_ANNOTATION.to_owned(), hash);
    }
    Deployment {
        metadata: owner.meta(&owner.names.base),
        spec: Some(DeploymentSpec {
            replicas: Some(gateway.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(owner.selector_labels()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn pod_spec(gateway: &SstpGateway, owner: &Owner, inputs: &PodInputs<'_>) -> PodSpec {
    let pod = &gateway.spec.pod;
    let non_empty_map =
        |map: &std::collections::BTreeMap<String, String>| (!map.is_empty()).then(|| map.clone());
    PodSpec {
        service_account_name: Some(owner.names.base.clone()),
        // The gateway watches its own users and TLS Secrets through the API.
        automount_service_account_token: Some(true),
        // Sessions get CALL_DISCONNECT after SIGTERM (spec.drain); the gateway exits within
        // the same period, so the kubelet's SIGKILL never cuts a session short.
        termination_grace_period_seconds: Some(gateway.spec.drain.grace_period_seconds()),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            sysctls: (pod.ip_forwarding == IpForwarding::PodSysctl).then(|| {
                vec![Sysctl {
                    name: IP_FORWARD_SYSCTL.to_owned(),
                    value: "1".to_owned(),
                }]
            }),
            ..PodSecurityContext::default()
        }),
        init_containers: (pod.ip_forwarding == IpForwarding::InitContainer)
            .then(|| vec![ip_forward_init_container(gateway, inputs)]),
        containers: vec![container(gateway, inputs)],
        volumes: Some(volumes(owner)),
        node_selector: non_empty_map(&pod.node_selector),
        tolerations: non_empty_vec(&pod.tolerations),
        affinity: pod.affinity.clone(),
        topology_spread_constraints: Some(spread(gateway, owner)),
        ..PodSpec::default()
    }
}

/// The gateway's own topology spread constraints, else one that spreads its pods over nodes:
/// losing a node (or draining it) then takes at most its share of the sessions. `ScheduleAnyway`
/// so that a one-node cluster still runs every replica; `pod-template-hash` so that a rollout
/// spreads the new pods without counting the old ones.
fn spread(gateway: &SstpGateway, owner: &Owner) -> Vec<TopologySpreadConstraint> {
    let pod = &gateway.spec.pod;
    if !pod.topology_spread_constraints.is_empty() {
        return pod.topology_spread_constraints.clone();
    }
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: HOSTNAME_TOPOLOGY_KEY.to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(owner.selector_labels()),
            ..LabelSelector::default()
        }),
        match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
        ..TopologySpreadConstraint::default()
    }]
}

/// The node label every kubelet sets to its node's name.
const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

fn non_empty_vec<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

/// The gateway image and its pull policy, the same for the init container.
fn image(gateway: &SstpGateway, inputs: &PodInputs<'_>) -> (String, Option<String>) {
    let pod = &gateway.spec.pod;
    let image = pod
        .image
        .clone()
        .unwrap_or_else(|| inputs.default_image.to_owned());
    let policy = pod
        .image_pull_policy
        .or(inputs.default_pull_policy)
        .map(|policy| policy.as_str().to_owned());
    (image, policy)
}

/// `sstp-gateway enable-ip-forward`, privileged: the only way to write `/proc/sys` from a
/// container (the runtime mounts it read-only otherwise). It exits once the sysctl reads 1; its
/// error, if any, reaches the pod status through the termination message.
fn ip_forward_init_container(gateway: &SstpGateway, inputs: &PodInputs<'_>) -> Container {
    let (image, image_pull_policy) = image(gateway, inputs);
    Container {
        name: IP_FORWARD_INIT_CONTAINER.to_owned(),
        image: Some(image),
        image_pull_policy,
        args: Some(vec!["enable-ip-forward".to_owned()]),
        // Same as the gateway's, so quotas and LimitRanges that ask for them are met; an init
        // container's requests never add to the pod's.
        resources: gateway.spec.pod.resources.clone(),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some(TERMINATION_MESSAGE_POLICY.to_owned()),
        ..Container::default()
    }
}

/// `run --config ...`, plus the logging flags only when they differ from the gateway's defaults
/// (so a gateway that sets nothing keeps the pod template it had before `spec.logging`).
fn gateway_args(gateway: &SstpGateway) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--config".to_owned(),
        format!("{CONFIG_DIR}/{CONFIG_FILE}"),
    ];
    let logging = &gateway.spec.logging;
    if logging.format == LogFormat::Json {
        args.extend(["--log-format".to_owned(), "json".to_owned()]);
    }
    if logging.omit_user_names {
        args.push("--audit-omit-user-names".to_owned());
    }
    args
}

fn container(gateway: &SstpGateway, inputs: &PodInputs<'_>) -> Container {
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let (image, image_pull_policy) = image(gateway, inputs);
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(image),
        image_pull_policy,
        // A gateway that exits on an error (bad config, no TUN device) leaves its last log
        // lines in the pod status, where the operator's status condition quotes them.
        termination_message_policy: Some(TERMINATION_MESSAGE_POLICY.to_owned()),
        args: Some(gateway_args(gateway)),
        env: Some(vec![
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
        ]),
        ports: Some(vec![
            port("sstp", ports::SSTP),
            port("http", ports::HTTP),
            port("admin", ports::ADMIN),
        ]),
        readiness_probe: Some(probe("/readyz", 2, 5)),
        liveness_probe: Some(probe("/healthz", 10, 10)),
        resources: gateway.spec.pod.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned(), "NET_BIND_SERVICE".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR),
            mount("tls", TLS_DIR),
            mount("tun", TUN_DEVICE),
        ]),
        ..Container::default()
    }
}

fn volumes(owner: &Owner) -> Vec<Volume> {
    vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: owner.names.config.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tls".to_owned(),
            // Mounted whole (no subPath) so the kubelet's updates reach the files too.
            secret: Some(SecretVolumeSource {
                secret_name: Some(owner.names.tls.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tun".to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: TUN_DEVICE.to_owned(),
                type_: Some("CharDevice".to_owned()),
            }),
            ..Volume::default()
        },
    ]
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(name != "tun"),
        ..VolumeMount::default()
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Name of the gateway container.
pub const CONTAINER_NAME: &str = "gateway";
/// Name of the init container of `ipForwarding: initContainer`.
pub const IP_FORWARD_INIT_CONTAINER: &str = "enable-ip-forward";
/// Pod annotation carrying the hash of `config.json`.
pub const CONFIG_HASH_ANNOTATION: &str = "sstp.io/config-hash";
/// Pod annotation carrying the hash of the pod template (without this annotation).
pub const TEMPLATE_HASH_ANNOTATION: &str = "sstp.io/template-hash";
/// The sysctl of IPv4 forwarding.
pub const IP_FORWARD_SYSCTL: &str = "net.ipv4.ip_forward";
/// Both containers: the log's tail becomes the termination message when the process wrote none.
const TERMINATION_MESSAGE_POLICY: &str = "FallbackToLogsOnError";
/// The TUN clone device.
pub const TUN_DEVICE: &str = "/dev/net/tun";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    fn build(gateway: &SstpGateway, config: &str) -> Deployment {
        build_with(gateway, config, None)
    }

    fn build_with(
        gateway: &SstpGateway,
        config: &str,
        default_pull_policy: Option<ImagePullPolicy>,
    ) -> Deployment {
        let owner = Owner::of(gateway).unwrap();
        deployment(
            gateway,
            &owner,
            &PodInputs {
                default_image: "example/sstp-gateway:1",
                default_pull_policy,
                config_json: config,
            },
        )
    }

    fn template_annotation(deployment: &Deployment, key: &str) -> String {
        deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap()
    }

    fn pod_of(deployment: Deployment) -> PodSpec {
        deployment.spec.unwrap().template.spec.unwrap()
    }

    fn with_forwarding(mode: IpForwarding) -> SstpGateway {
        let mut gateway = fixtures::minimal();
        gateway.spec.pod.ip_forwarding = mode;
        gateway
    }

    fn sysctls(pod: &PodSpec) -> Vec<(String, String)> {
        pod.security_context
            .as_ref()
            .and_then(|s| s.sysctls.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect()
    }

    #[test]
    fn by_default_forwarding_is_the_pod_sysctl_and_there_is_no_init_container() {
        assert_eq!(
            fixtures::minimal().spec.pod.ip_forwarding,
            IpForwarding::PodSysctl
        );
        let pod = pod_of(build(&fixtures::minimal(), "{}"));
        assert_eq!(
            sysctls(&pod),
            [("net.ipv4.ip_forward".to_owned(), "1".to_owned())]
        );
        assert!(pod.init_containers.is_none());
    }

    #[test]
    fn init_container_mode_runs_the_gateway_image_privileged_and_only_that_container() {
        let mut gateway = with_forwarding(IpForwarding::InitContainer);
        gateway.spec.pod.image = Some("local/gw:dev".into());
        gateway.spec.pod.image_pull_policy = Some(ImagePullPolicy::Never);
        let pod = pod_of(build(&gateway, "{}"));
        assert!(sysctls(&pod).is_empty(), "no unsafe sysctl in this mode");
        let init = pod.init_containers.clone().unwrap();
        assert_eq!(init.len(), 1);
        let init = &init[0];
        assert_eq!(init.name, "enable-ip-forward");
        assert_eq!(init.image.as_deref(), Some("local/gw:dev"));
        assert_eq!(init.image_pull_policy.as_deref(), Some("Never"));
        assert!(
            init.command.is_none(),
            "the image's entrypoint is the binary"
        );
        assert_eq!(init.args.clone().unwrap(), ["enable-ip-forward"]);
        let security = init.security_context.clone().unwrap();
        assert_eq!(security.privileged, Some(true));
        assert_eq!(
            init.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let gateway_security = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(gateway_security.privileged, Some(false));
        assert_eq!(gateway_security.allow_privilege_escalation, Some(false));
    }

    #[test]
    fn inherit_mode_sets_neither_a_sysctl_nor_an_init_container() {
        let pod = pod_of(build(&with_forwarding(IpForwarding::InheritFromNode), "{}"));
        assert!(sysctls(&pod).is_empty());
        assert!(pod.init_containers.is_none());
    }

    #[test]
    fn the_pull_policy_comes_from_the_spec_else_the_operator_else_kubernetes() {
        let plain = fixtures::minimal();
        let policy = |d: Deployment| pod_of(d).containers[0].image_pull_policy.clone();
        assert_eq!(policy(build(&plain, "{}")), None);
        assert_eq!(
            policy(build_with(
                &plain,
                "{}",
                Some(ImagePullPolicy::IfNotPresent)
            )),
            Some("IfNotPresent".into())
        );
        let mut always = fixtures::minimal();
        always.spec.pod.image_pull_policy = Some(ImagePullPolicy::Always);
        assert_eq!(
            policy(build_with(&always, "{}", Some(ImagePullPolicy::Never))),
            Some("Always".into())
        );
    }

    #[test]
    fn the_template_hash_follows_the_template_and_only_it() {
        let hash = |d: &Deployment| template_annotation(d, TEMPLATE_HASH_ANNOTATION);
        let sysctl = build(&fixtures::minimal(), "{}");
        assert_eq!(hash(&sysctl), hash(&build(&fixtures::minimal(), "{}")));
        let init = build(&with_forwarding(IpForwarding::InitContainer), "{}");
        assert_ne!(hash(&sysctl), hash(&init));
        let mut more = fixtures::minimal();
        more.spec.replicas = 5;
        assert_eq!(
            hash(&sysctl),
            hash(&build(&more, "{}")),
            "replicas are not the template"
        );
    }

    #[test]
    fn pods_spread_over_nodes_unless_the_gateway_says_how() {
        let spread = |gateway: &SstpGateway| {
            build(gateway, "{}")
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .topology_spread_constraints
                .unwrap()
        };
        let default = spread(&fixtures::minimal());
        assert_eq!(default.len(), 1);
        let constraint = &default[0];
        assert_eq!(constraint.topology_key, "kubernetes.io/hostname");
        assert_eq!(constraint.max_skew, 1);
        // One node still runs every replica.
        assert_eq!(constraint.when_unsatisfiable, "ScheduleAnyway");
        let labels = constraint
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "sstp-gateway");
        assert_eq!(labels["app.kubernetes.io/instance"], "gw");
        assert_eq!(
            constraint.match_label_keys.as_deref(),
            Some(&["pod-template-hash".to_owned()][..])
        );

        let own = fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24",
            "pod": {"topologySpreadConstraints": [{
                "maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule"
            }]}
        }));
        let own = spread(&own);
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].topology_key, "topology.kubernetes.io/zone");
        assert_eq!(own[0].when_unsatisfiable, "DoNotSchedule");
    }

    #[test]
    fn the_deployment_never_drops_below_the_desired_replicas_and_probes_the_admin_port() {
        let deployment = build(&fixtures::minimal(), "{}");
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let rolling = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        let readiness = container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        assert_eq!(readiness.port, IntOrString::String("admin".into()));
        let liveness = container
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        assert_eq!(container.image.as_deref(), Some("example/sstp-gateway:1"));
        assert_eq!(
            container.args.as_ref().unwrap(),
            &["run", "--config", "/etc/sstp-gateway/config/config.json"]
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("gw"));
    }

    #[test]
    fn spec_logging_becomes_the_gateway_flags_and_the_default_adds_none() {
        let mut gateway = fixtures::minimal();
        gateway.spec.logging.format = LogFormat::Json;
        gateway.spec.logging.omit_user_names = true;
        let deployment = build(&gateway, "{}");
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(
            pod.containers[0].args.as_ref().unwrap(),
            &[
                "run",
                "--config",
                "/etc/sstp-gateway/config/config.json",
                "--log-format",
                "json",
                "--audit-omit-user-names"
            ]
        );
    }

    #[test]
    fn the_container_gets_only_net_admin_and_net_bind_service_and_the_tun_device() {
        let deployment = build(&fixtures::minimal(), "{}");
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let security = pod.containers[0].security_context.clone().unwrap();
        let caps = security.capabilities.unwrap();
        assert_eq!(caps.drop.unwrap(), ["ALL"]);
        assert_eq!(caps.add.unwrap(), ["NET_ADMIN", "NET_BIND_SERVICE"]);
        assert_eq!(security.privileged, Some(false));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let tun = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tun")
            .unwrap();
        assert_eq!(tun.host_path.unwrap().type_.as_deref(), Some("CharDevice"));
    }

    #[test]
    fn a_config_change_changes_the_pod_template_and_spec_knobs_reach_the_pod() {
        let mut gateway = fixtures::minimal();
        gateway.spec.pod.image = Some("mirror/gw:2".into());
        gateway
            .spec
            .pod
            .node_selector
            .insert("zone".into(), "a".into());
        let first = build(&gateway, "{\"a\":1}");
        let second = build(&gateway, "{\"a\":2}");
        let hash = |d: &Deployment| template_annotation(d, CONFIG_HASH_ANNOTATION);
        assert_ne!(hash(&first), hash(&second));
        let pod = first.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some("mirror/gw:2"));
        assert_eq!(pod.node_selector.unwrap()["zone"], "a");
    }
}
