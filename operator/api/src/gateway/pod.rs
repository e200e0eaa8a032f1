//! The gateway pod's knobs in `SstpGateway.spec.pod`: image and pull policy, resources,
//! scheduling, and how `net.ipv4.ip_forward` gets turned on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pod knobs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPod {
    /// Gateway image (default: the operator's `--gateway-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull policy of the gateway image (the CRD shows [`ImagePullPolicy`]'s text: schemars
    /// describes an optional enum by the enum's doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// How the pods get IPv4 forwarding (`net.ipv4.ip_forward=1`), without which clients reach
    /// nothing beyond the gateway. Whatever the mode, the gateway container needs `NET_ADMIN` and
    /// a hostPath `/dev/net/tun`, which the `baseline` Pod Security Standard already forbids: the
    /// namespace must be `privileged` under Pod Security Admission. `podSysctl` (default): the pod
    /// sysctl `net.ipv4.ip_forward=1`, which the kubelet treats as unsafe: every node needs
    /// `--allowed-unsafe-sysctls=net.ipv4.ip_forward`, else the kubelet rejects the pods
    /// (`SysctlForbidden`). `initContainer`: a privileged init container of the gateway image runs
    /// `sstp-gateway enable-ip-forward`; no kubelet setting, but the cluster must admit a
    /// `privileged: true` init container (the gateway container stays unprivileged).
    /// `inheritFromNode`: nothing is set; a new pod network namespace copies its IPv4 settings
    /// from the node's initial network namespace, so it works where the node has
    /// `net.ipv4.ip_forward=1` (most Kubernetes nodes do) and `net.core.devconf_inherit_init_net`
    /// is 0 or 1. In every mode a gateway that finds forwarding off logs what to set and stays not
    /// ready.
    #[serde(default)]
    pub ip_forwarding: IpForwarding,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints (default: the pods spread over nodes, `maxSkew: 1` on
    /// `kubernetes.io/hostname`, `ScheduleAnyway`, new pods of a rollout counted apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How the gateway pods get IPv4 forwarding (see `spec.pod.ipForwarding`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum IpForwarding {
    /// The pod sysctl `net.ipv4.ip_forward=1` (the kubelet must allow it as an unsafe sysctl).
    #[default]
    PodSysctl,
    /// A privileged init container running `sstp-gateway enable-ip-forward`.
    InitContainer,
    /// Nothing set: the pod network namespace inherits the node's setting.
    InheritFromNode,
}

/// Pull policy of the gateway image, for the init container too (default: the operator's
/// `--gateway-image-pull-policy`, and without that Kubernetes' own: `Always` for a `:latest` or
/// untagged image, `IfNotPresent` otherwise). `Never` runs only images already on the node.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    /// Pull on every start.
    Always,
    /// Pull only when the node lacks the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The value as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// A string that is not one of [`ImagePullPolicy`]'s values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an image pull policy (Always, IfNotPresent, Never)")]
pub struct UnknownPullPolicy(pub String);

impl std::str::FromStr for ImagePullPolicy {
    type Err = UnknownPullPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "Always" => Ok(Self::Always),
            "IfNotPresent" => Ok(Self::IfNotPresent),
            "Never" => Ok(Self::Never),
            other => Err(UnknownPullPolicy(other.to_owned())),
        }
    }
}
