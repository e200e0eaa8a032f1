//! The `SstpGateway` custom resource: one SSTP service (Deployment, Service, certificate, users).
//!
//! Validation lives in the schema, so the apiserver refuses a bad object with a message naming
//! the field: CEL rules (`x-kubernetes-validations`) check CIDRs, addresses, hostnames, ranges
//! and "exactly one TLS mode"; `addressPool` is immutable because clients hold addresses from it.

#![expect(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats type_ = \"string\"; the lint reads them as duplicates"
)]
#![expect(
    unreachable_pub,
    reason = "the KubeSchema derive copies each struct as a pub item inside a private scope"
)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod pod;

pub use pod::{GatewayPod, ImagePullPolicy, IpForwarding, UnknownPullPolicy};

/// Desired state of an SSTP gateway.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sstp.io",
    version = "v1alpha1",
    kind = "SstpGateway",
    namespaced,
    status = "SstpGatewayStatus",
    shortname = "sstpgw",
    category = "sstp",
    derive = "PartialEq",
    doc = "An SSTP VPN gateway: Deployment, Service, certificate and users document",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoints[0]"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(
        name = "Sessions",
        type_ = "integer",
        json_path = ".status.activeSessions"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.proxyProtocol) || !self.proxyProtocol || (has(self.trustedProxies) && size(self.trustedProxies) > 0)").message("proxyProtocol needs trustedProxies: the load balancers' CIDRs (a PROXY header from anyone else would let a client claim any address)"))]
#[x_kube(validation = Rule::new("!has(self.trustedProxies) || size(self.trustedProxies) == 0 || (has(self.proxyProtocol) && self.proxyProtocol)").message("trustedProxies has no effect without proxyProtocol: true"))]
#[x_kube(validation = Rule::new("!has(self.nat) || self.nat || !has(self.replicas) || self.replicas <= 1").message("nat: false needs replicas: 1 (or 0): every pod hands out the whole addressPool, so without NAT two clients on different pods can get the same address and the network can route it to only one of them"))]
pub struct SstpGatewaySpec {
    /// Gateway pods. Rolling updates add one before removing one, so this many stay serving.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must not be negative"))]
    pub replicas: i32,
    /// The names clients dial (DNS names or IPv4 addresses). All go into the server certificate;
    /// the first one is also the CRL distribution point host.
    #[x_kube(validation = Rule::new("self.size() >= 1 && self.size() <= 32").message("hostnames needs 1 to 32 entries"))]
    #[x_kube(validation = Rule::new(HOSTNAMES_RULE).message("every hostname must be a DNS name (RFC 1123, lowercase) or an IPv4 address"))]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 253)))]
    pub hostnames: Vec<String>,
    /// How the gateway is exposed.
    #[serde(default)]
    pub service: GatewayService,
    /// Where the server certificate comes from: exactly one mode (default `selfManaged`).
    #[serde(default)]
    pub tls: GatewayTls,
    /// IPv4 CIDR of tunnel addresses (the first usable one is the gateway's). Immutable: clients
    /// hold addresses from it; make a new gateway to renumber.
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self).prefixLength() <= 30 && cidr(self).masked() == cidr(self)").message("addressPool must be an IPv4 CIDR of /30 or larger without host bits, e.g. 10.8.0.0/24"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("addressPool is immutable"))]
    #[schemars(length(max = 18))]
    pub address_pool: String,
    /// DNS servers offered to clients (IPv4, at most two).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.size() <= 2 && self.all(a, isIP(a) && ip(a).family() == 4)").message("dns takes at most two IPv4 addresses"))]
    #[schemars(length(max = 2), inner(length(max = 15)))]
    pub dns: Vec<String>,
    /// Split-tunnel routes (IPv4 CIDRs); empty lets the client decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, isCIDR(r) && cidr(r).ip().family() == 4 && cidr(r).masked() == cidr(r))").message("routes must be IPv4 CIDRs without host bits"))]
    #[schemars(length(max = 64), inner(length(max = 18)))]
    pub routes: Vec<String>,
    /// Masquerade client traffic leaving the pod (default on). Each pod hands out the whole
    /// `addressPool` on its own: with NAT the tunnel addresses never leave the pod, so the same
    /// address on two pods is harmless; without NAT the network must route each client address
    /// to the pod that holds it, which only one pod can be, so `nat: false` needs `replicas: 1`.
    #[serde(default = "default_true")]
    pub nat: bool,
    /// PPP authentication.
    #[serde(default)]
    pub auth: GatewayAuth,
    /// Which `SstpUser`s this gateway accepts.
    #[serde(default)]
    pub users: GatewayUsers,
    /// Limits that protect the gateway.
    #[serde(default)]
    pub limits: GatewayLimits,
    /// How a gateway pod that is going away (rollout, scale-down, node drain) lets its
    /// sessions go.
    #[serde(default)]
    pub drain: GatewayDrain,
    /// Expect a PROXY protocol v1/v2 header on the SSTP port from `trustedProxies` (behind a
    /// proxying load balancer). Other peers are served as direct clients, and a PROXY header
    /// from one of them is refused.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// CIDRs of the load balancers whose PROXY headers are believed; required with
    /// `proxyProtocol`. The client address such a header names is what per-source limits and
    /// the authentication throttle count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, isCIDR(r))").message("trustedProxies must be CIDRs, e.g. 10.0.0.0/8"))]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    pub trusted_proxies: Vec<String>,
    /// Pod knobs: image, resources, scheduling.
    #[serde(default)]
    pub pod: GatewayPod,
    /// Prometheus integration.
    #[serde(default)]
    pub monitoring: GatewayMonitoring,
    /// The gateway's log: its format and what the session audit records say.
    #[serde(default)]
    pub logging: GatewayLogging,
}

/// The gateway's log. Every session writes an audit record when its tunnel comes up
/// (`session_start`) and when it ends (`session_end`: bytes and packets each way, close reason),
/// and every refused login one (`login_failed`), at info level with the log target
/// `sstp_audit`; none carries a credential.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayLogging {
    /// `text` (default), or `json`: one JSON object per line, every field a top-level key, as
    /// log collectors index them.
    #[serde(default)]
    pub format: LogFormat,
    /// Leave the user name out of the audit records (for deployments that must not log who
    /// connected; the client address and tunnel address stay).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omit_user_names: bool,
}

/// How the gateway writes its log lines (see `spec.logging.format`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    /// `timestamp LEVEL span: message field=value ...`
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The Service in front of the gateway pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayService {
    /// Service type (default `LoadBalancer`).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations for the Service (cloud load balancer settings, external-dns, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels for the Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `spec.loadBalancerClass` of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// Client CIDRs allowed through the load balancer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, isCIDR(r))").message("loadBalancerSourceRanges must be CIDRs"))]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    pub load_balancer_source_ranges: Vec<String>,
    /// `Local` keeps client source addresses (default `Cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// Service ports.
    #[serde(default)]
    pub ports: GatewayPorts,
}

/// Kubernetes Service types the gateway supports.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// Cluster-internal only.
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer (default).
    #[default]
    LoadBalancer,
}

/// `externalTrafficPolicy` of the Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficPolicy {
    /// Spread over all nodes (client address hidden).
    Cluster,
    /// Only nodes with a gateway pod (client address kept).
    Local,
}

/// Service ports (the pods always listen on 443 and 80).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPorts {
    /// SSTP over TLS (default 443).
    #[serde(default = "default_sstp_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("ports.sstp must be 1-65535"))]
    pub sstp: i32,
    /// Plain HTTP for the CRL and CA certificate (default 80). Windows fetches the CRL from
    /// `http://<first hostname>/sstp/ca.crl`, so keep 80 unless something else forwards it.
    #[serde(default = "default_http_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("ports.http must be 1-65535"))]
    pub http: i32,
}

/// Where the server certificate comes from. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.selfManaged) ? 1 : 0) + (has(self.certManager) ? 1 : 0) + (has(self.secretName) ? 1 : 0) == 1").message("tls needs exactly one of selfManaged, certManager, secretName"))]
pub struct GatewayTls {
    /// The operator's built-in CA issues and renews the certificate and publishes a CRL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_managed: Option<SelfManagedTls>,
    /// cert-manager issues the certificate (needs the cert-manager CRDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerTls>,
    /// An existing `kubernetes.io/tls` Secret in the gateway's namespace (bring your own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DNS_SUBDOMAIN_RULE).message("secretName must be a Secret name (RFC 1123 subdomain)"))]
    #[schemars(length(max = 253))]
    pub secret_name: Option<String>,
}

/// Settings of the built-in CA.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SelfManagedTls {
    /// Key algorithm of the server certificate (default `ecdsaP256`).
    #[serde(default)]
    pub algorithm: KeyAlgorithmName,
    /// Server certificate lifetime in seconds (default 90 days); renewed at two thirds of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 30").message("certificateLifetimeSeconds must be at least 30"))]
    pub certificate_lifetime_seconds: Option<i64>,
}

/// Server key algorithms.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum KeyAlgorithmName {
    /// ECDSA P-256 (default).
    #[default]
    EcdsaP256,
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
}

/// cert-manager mode.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerTls {
    /// The issuer that signs the certificate.
    pub issuer_ref: IssuerRef,
}

/// A cert-manager issuer reference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Issuer name.
    #[x_kube(validation = Rule::new("self.size() > 0").message("issuerRef.name must not be empty"))]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    #[x_kube(validation = Rule::new("self == 'Issuer' || self == 'ClusterIssuer'").message("issuerRef.kind must be Issuer or ClusterIssuer"))]
    pub kind: String,
    /// API group (default `cert-manager.io`).
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

/// PPP authentication.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAuth {
    /// Methods offered, in order (default MS-CHAPv2 only; PAP sends the password in the clear
    /// inside TLS and is opt-in).
    #[serde(default = "default_methods")]
    #[x_kube(validation = Rule::new("self.size() >= 1").message("auth.methods needs at least one method"))]
    pub methods: Vec<AuthMethodName>,
}

/// PPP authentication methods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethodName {
    /// MS-CHAPv2.
    Mschapv2,
    /// PAP.
    Pap,
}

/// Which users the gateway accepts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayUsers {
    /// Label selector over `SstpUser`s in the gateway's namespace; absent selects all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Limits. Unset fields take the gateway's defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayLimits {
    /// Concurrent sessions per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.maxSessions must be at least 1"))]
    pub max_sessions: Option<i32>,
    /// Connections that have not logged in yet, per pod (default 256). They never count
    /// against `maxSessions`; when full, the oldest of the source holding the most is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.maxPendingConnections must be at least 1"))]
    pub max_pending_connections: Option<i32>,
    /// Connections not logged in yet from one client address, per pod (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.maxConnectionsPerSource must be at least 1"))]
    pub max_connections_per_source: Option<i32>,
    /// Concurrent sessions per user on each pod (pods do not share counts: across the gateway a
    /// user can hold up to `replicas` times this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.maxSessionsPerUser must be at least 1"))]
    pub max_sessions_per_user: Option<i32>,
    /// End sessions idle this long (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.idleTimeoutSeconds must be at least 1"))]
    pub idle_timeout_seconds: Option<i64>,
    /// Authentication failures allowed per window before blocking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.authFailureLimit must be at least 1"))]
    pub auth_failure_limit: Option<i32>,
    /// Failure counting window (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.authFailureWindowSeconds must be at least 1"))]
    pub auth_failure_window_seconds: Option<i64>,
    /// How long a blocked source or user stays blocked (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("limits.authFailureBlockSeconds must be at least 1"))]
    pub auth_failure_block_seconds: Option<i64>,
    /// Connections the kernel completes on the SSTP port before the gateway accepts them
    /// (default 4096; the pod's `net.core.somaxconn` caps it). A burst of setups beyond it has
    /// its SYNs dropped, which clients retry only after a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("limits.listenBacklog must be within 1..65535"))]
    pub listen_backlog: Option<i32>,
}

/// Draining a pod: readiness fails and new connections are refused at once; after
/// `disconnectDelaySeconds` every session gets CALL_DISCONNECT (its client redials and the
/// Service sends it to another pod); the pod is gone within `gracePeriodSeconds` (its
/// `terminationGracePeriodSeconds`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.gracePeriodSeconds) ? self.gracePeriodSeconds : 30) >= (has(self.disconnectDelaySeconds) ? self.disconnectDelaySeconds : 2) + 5").message("drain.gracePeriodSeconds must be at least drain.disconnectDelaySeconds + 5 (defaults 30 and 2): the sessions need time to end after CALL_DISCONNECT"))]
pub struct GatewayDrain {
    /// From SIGTERM to the pod's end, at most (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 5 && self <= 3600").message("drain.gracePeriodSeconds must be 5 to 3600"))]
    pub grace_period_seconds: Option<i64>,
    /// From SIGTERM to CALL_DISCONNECT, while the Service's endpoints drop the pod (default 2);
    /// sessions carry traffic meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 600").message("drain.disconnectDelaySeconds must be 0 to 600"))]
    pub disconnect_delay_seconds: Option<i64>,
}

impl GatewayDrain {
    /// Default `gracePeriodSeconds`.
    pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;
    /// Default `disconnectDelaySeconds`: kube-proxy drops a terminating pod from a Service
    /// within about a second.
    pub const DEFAULT_DISCONNECT_DELAY_SECONDS: i64 = 2;

    /// The grace period in force.
    pub fn grace_period_seconds(&self) -> i64 {
        self.grace_period_seconds
            .unwrap_or(Self::DEFAULT_GRACE_PERIOD_SECONDS)
    }

    /// The disconnect delay in force.
    pub fn disconnect_delay_seconds(&self) -> i64 {
        self.disconnect_delay_seconds
            .unwrap_or(Self::DEFAULT_DISCONNECT_DELAY_SECONDS)
    }
}

/// Prometheus integration.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayMonitoring {
    /// A `monitoring.coreos.com/v1` ServiceMonitor for the admin port (only when that CRD exists).
    #[serde(default)]
    pub service_monitor: ServiceMonitorSettings,
}

/// ServiceMonitor settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSettings {
    /// Create the ServiceMonitor.
    #[serde(default)]
    pub enabled: bool,
    /// Extra labels (for the Prometheus selector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Observed state of a gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SstpGatewayStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `CertificateReady`, `Available`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pods ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Where clients connect: load balancer addresses/hostnames, else the first hostname.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The served certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// Users in the users document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i32>,
    /// Sessions on all the gateway's pods, counted every few seconds from each pod's admin
    /// port; absent until first counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_sessions: Option<i32>,
}

/// Facts about the served certificate.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256_fingerprint: String,
    /// The Secret holding it.
    pub secret_name: String,
}

impl Default for GatewayTls {
    fn default() -> Self {
        Self {
            self_managed: Some(SelfManagedTls::default()),
            cert_manager: None,
            secret_name: None,
        }
    }
}

impl Default for GatewayPorts {
    fn default() -> Self {
        Self {
            sstp: default_sstp_port(),
            http: default_http_port(),
        }
    }
}

impl Default for GatewayAuth {
    fn default() -> Self {
        Self {
            methods: default_methods(),
        }
    }
}

fn default_replicas() -> i32 {
    2
}

fn default_true() -> bool {
    true
}

fn default_sstp_port() -> i32 {
    443
}

fn default_http_port() -> i32 {
    80
}

fn default_methods() -> Vec<AuthMethodName> {
    vec![AuthMethodName::Mschapv2]
}

fn default_issuer_kind() -> String {
    "Issuer".to_owned()
}

fn default_issuer_group() -> String {
    "cert-manager.io".to_owned()
}

/// Each hostname is an RFC 1123 DNS name (lowercase labels of 1-63, total up to 253) or an IPv4
/// address; uppercase is refused so the names in the certificate match what is listed.
const HOSTNAMES_RULE: &str = "self.all(h, (isIP(h) && ip(h).family() == 4) || (h.size() <= 253 && h.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')))";

/// A Kubernetes object name (RFC 1123 subdomain).
pub(crate) const DNS_SUBDOMAIN_RULE: &str = "self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
