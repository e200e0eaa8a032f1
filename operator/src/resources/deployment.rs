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
mod tests;
