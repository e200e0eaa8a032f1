//! The gateway configuration file (`config.json`), rendered by the operator into ConfigMap
//! `<gw>-config` and read by `sstp-gateway run --config FILE`.
//!
//! JSON rather than YAML: the operator writes it with the same serde_json the users document
//! uses; serde_json reports line and column for every error; there is no maintained serde YAML
//! crate with the same guarantees (serde_yaml is archived); and every JSON file is valid YAML for
//! the people who prefer to read it that way. Every field but `hostnames` and `addressPool` has a
//! default, so a standalone file can be four lines long.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Position;

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The names clients dial; the first one is also the CRL distribution point host.
    pub hostnames: Vec<String>,
    /// Where the TLS certificate comes from.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Tunnel addresses: the first usable address is the gateway's, the rest go to clients.
    pub address_pool: Ipv4Net,
    /// DNS servers offered to clients in IPCP (at most two: primary and secondary, RFC 1877).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Split-tunnel routes for clients; empty means the client decides (usually full tunnel).
    #[serde(default)]
    pub routes: Vec<Ipv4Net>,
    /// Masquerade client traffic leaving the pod through a non-tunnel interface.
    #[serde(default = "default_true")]
    pub nat: bool,
    /// Which PPP authentication methods are offered.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Limits and deadlines that protect the gateway from clients.
    #[serde(default)]
    pub limits: Limits,
    /// Expect a PROXY protocol (v1 or v2) header on connections to the SSTP port from
    /// `trustedProxies` (required when this is on). Other peers are served as direct clients;
    /// a PROXY header from one of them is refused.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The load balancers (CIDRs) whose PROXY headers are believed. The client address in such
    /// a header is what per-source limits and the authentication throttle count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where the users document comes from.
    #[serde(default)]
    pub users: UsersSource,
    /// The TUN device that carries client packets.
    #[serde(default)]
    pub tun: TunConfig,
    /// What a shutdown (SIGTERM) does, and within how long.
    #[serde(default)]
    pub drain: DrainConfig,
}

/// Shutdown: readiness fails and new connections are refused at once; after
/// `disconnectDelaySeconds` (time for Services to stop sending clients here) every session gets
/// CALL_DISCONNECT, so clients redial and land elsewhere; the process exits within
/// `gracePeriodSeconds` of the signal, however the sessions answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DrainConfig {
    /// From the signal to the exit, at most (a pod's `terminationGracePeriodSeconds`).
    pub grace_period_seconds: u64,
    /// From the signal to CALL_DISCONNECT; sessions carry traffic meanwhile.
    pub disconnect_delay_seconds: u64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            grace_period_seconds: Self::DEFAULT_GRACE_PERIOD_SECONDS,
            disconnect_delay_seconds: 0,
        }
    }
}

impl DrainConfig {
    /// Default grace period: Kubernetes' default `terminationGracePeriodSeconds`.
    pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 30;
    /// What the exit itself needs after the sessions (TUN device and nftables table removed).
    pub const EXIT_MARGIN_SECONDS: u64 = 2;

    /// How long after the signal the sessions are told to disconnect (never past the grace
    /// period less the exit margin).
    pub fn disconnect_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.disconnect_delay_seconds
                .min(self.session_budget_seconds()),
        )
    }

    /// How long the sessions get to end after being told, so the exit stays within the grace
    /// period (at least a second).
    pub fn disconnect_wait(&self) -> std::time::Duration {
        let left = self
            .session_budget_seconds()
            .saturating_sub(self.disconnect_delay_seconds);
        std::time::Duration::from_secs(left.max(1))
    }

    fn session_budget_seconds(&self) -> u64 {
        self.grace_period_seconds
            .saturating_sub(Self::EXIT_MARGIN_SECONDS)
    }
}

/// Listen addresses of the three servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenConfig {
    /// SSTP over TLS (default `0.0.0.0:443`).
    #[serde(default = "default_sstp_listen")]
    pub sstp: SocketAddr,
    /// Plain HTTP for `/sstp/ca.crt` and `/sstp/ca.crl` (default `0.0.0.0:80`).
    #[serde(default = "default_http_listen")]
    pub http: SocketAddr,
    /// Admin: `/metrics`, `/healthz`, `/readyz` (default `0.0.0.0:9090`).
    #[serde(default = "default_admin_listen")]
    pub admin: SocketAddr,
}

/// The source of the server certificate: exactly one variant, by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TlsConfig {
    /// The gateway keeps its own CA in `dataDir` and issues its server certificate (standalone).
    SelfManaged {
        /// Directory holding `ca.crt`, `ca.key`, `server.crt`, `server.key`, `ca.crl`.
        #[serde(rename = "dataDir")]
        data_dir: PathBuf,
    },
    /// Certificate files provided by someone else (the operator's Secret mounts, cert-manager).
    Files(TlsFiles),
}

/// Paths of an externally provided certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf.
    pub key_file: PathBuf,
    /// PEM CA certificate served at `/sstp/ca.crt`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// DER CRL served at `/sstp/ca.crl`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_file: Option<PathBuf>,
}

/// PPP authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Methods offered, in order of preference (default: MS-CHAPv2 only).
    #[serde(default = "default_auth_methods")]
    pub methods: Vec<AuthMethod>,
}

/// A PPP authentication protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// MS-CHAPv2 (RFC 2759); the only method that yields MPPE keys for crypto binding.
    Mschapv2,
    /// PAP (RFC 1334): the password crosses the TLS tunnel in the clear. Opt-in only.
    Pap,
}

/// Limits and deadlines. Durations are whole seconds, named `…Seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent authenticated sessions per gateway pod. When all are taken, new clients get
    /// HTTP 503 (or an MS-CHAPv2 Failure, E=649, if the last one went while they logged in).
    pub max_sessions: u32,
    /// Connections that have not logged in yet, kept apart from `maxSessions` so that they can
    /// never keep a user out: when full, the oldest pending connection of the source holding
    /// the most is dropped to make room.
    pub max_pending_connections: u32,
    /// Concurrent sessions per user, unless the user's entry says otherwise.
    pub max_sessions_per_user: u32,
    /// End a session after this long without data packets (echo keepalives do not count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
    /// Deadline for the TLS handshake.
    pub handshake_timeout_seconds: u64,
    /// Deadline for the HTTP `SSTP_DUPLEX_POST` preamble after TLS.
    pub preamble_timeout_seconds: u64,
    /// Deadline from the preamble until the tunnel carries IP (SSTP + PPP negotiation).
    pub negotiation_timeout_seconds: u64,
    /// Connections from one source address (an IPv6 /64) that have not logged in yet. Behind a
    /// load balancer that hides client addresses, raise this or turn on `proxyProtocol`.
    pub max_connections_per_source: u32,
    /// Drop a client that has read none of our output for this long (it sends but never
    /// reads; backpressure has already stopped reading from it).
    pub write_stall_timeout_seconds: u64,
    /// Slow down guessing: failures per client address and per user name.
    pub auth_failures: AuthFailureThrottle,
    /// Connections the kernel completes for the SSTP listener before it accepts them (the
    /// `listen(2)` backlog, capped by the namespace's `net.core.somaxconn`). A burst of setups
    /// beyond it has its SYNs dropped, and clients retry them only after a second.
    pub listen_backlog: u32,
}

/// After `maxFailures` failed authentications within `windowSeconds`, refuse for `blockSeconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthFailureThrottle {
    /// Failures allowed inside the window.
    pub max_failures: u32,
    /// Length of the counting window.
    pub window_seconds: u64,
    /// How long a source or user stays blocked.
    pub block_seconds: u64,
}

/// Where the users document comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum UsersSource {
    /// A file, reloaded when it changes (standalone, or a mounted Secret).
    File {
        /// Path of `users.json`.
        path: PathBuf,
    },
    /// A Kubernetes Secret watched through the API (changes apply within seconds).
    KubernetesSecret {
        /// Secret name.
        name: String,
        /// Secret namespace; absent means the pod's own namespace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// Key in the Secret's data (default `users.json`).
        #[serde(default = "default_users_key")]
        key: String,
    },
}

/// The TUN device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Interface MTU; also the MSS clamp basis. 1400 is the Windows default (MS-SSTP §3.1.5.2).
    pub mtu: u16,
    /// Offload (`IFF_VNET_HDR`): the kernel hands over TCP super-segments, split here into
    /// packets of at most the MTU, and a client's consecutive segments are coalesced before
    /// they are written. Falls back to none, with a warning, where the kernel refuses it.
    pub offload: bool,
    /// TUN queues, each with its own reader and writer; 0 means one per CPU the gateway may
    /// use (at most [`MAX_TUN_QUEUES`]).
    pub queues: u16,
}

/// Why a configuration file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not JSON or does not match the configuration's shape.
    #[error("invalid gateway config at {position}: {message}")]
    Syntax {
        /// Where serde_json stopped.
        position: Position,
        /// serde_json's message, without its position suffix.
        message: String,
    },
    /// A value is well-formed but not usable.
    #[error("invalid gateway config: {field}: {problem}")]
    Invalid {
        /// The JSON path of the field, e.g. `hostnames[1]` or `limits.maxSessions`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl GatewayConfig {
    /// Parses and validates a configuration from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|err| ConfigError::Syntax {
            position: Position::of(&err),
            message: crate::strip_position(&err),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Renders the configuration as pretty JSON (what the operator writes into the ConfigMap).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a GatewayConfig always serializes")
    }

    /// The JSON Schema of the file.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(Self)
    }

    /// The gateway's own tunnel address: the first usable address of the pool.
    pub fn gateway_address(&self) -> Ipv4Addr {
        // validate() guarantees a prefix of at most /30, so network + 1 is inside the pool.
        Ipv4Addr::from(u32::from(self.address_pool.network()).wrapping_add(1))
    }
}

impl Limits {
    /// TLS handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_seconds)
    }

    /// HTTP preamble deadline.
    pub fn preamble_timeout(&self) -> Duration {
        Duration::from_secs(self.preamble_timeout_seconds)
    }

    /// How long output may wait for a client that reads nothing.
    pub fn write_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.write_stall_timeout_seconds)
    }

    /// SSTP + PPP negotiation deadline.
    pub fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.negotiation_timeout_seconds)
    }

    /// Idle timeout, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout_seconds.map(Duration::from_secs)
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            sstp: default_sstp_listen(),
            http: default_http_listen(),
            admin: default_admin_listen(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self::SelfManaged {
            data_dir: PathBuf::from(DEFAULT_PKI_DIR),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            methods: default_auth_methods(),
        }
    }
}

/// The SSTP listener's default backlog: Linux's default `net.core.somaxconn` since 5.4.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// The largest backlog: the kernel's own ceiling for `net.core.somaxconn`.
pub const MAX_LISTEN_BACKLOG: u32 = 65_535;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 1024,
            max_pending_connections: 256,
            max_sessions_per_user: 4,
            idle_timeout_seconds: None,
            handshake_timeout_seconds: 10,
            preamble_timeout_seconds: 10,
            negotiation_timeout_seconds: 30,
            max_connections_per_source: 32,
            write_stall_timeout_seconds: 30,
            auth_failures: AuthFailureThrottle::default(),
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
        }
    }
}

impl Default for AuthFailureThrottle {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_seconds: 60,
            block_seconds: 300,
        }
    }
}

impl Default for UsersSource {
    fn default() -> Self {
        Self::File {
            path: PathBuf::from(DEFAULT_USERS_FILE),
        }
    }
}

impl Default for TunConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_TUN_NAME.to_owned(),
            mtu: DEFAULT_MTU,
            offload: true,
            queues: 0,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_sstp_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 443))
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 80))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

fn default_auth_methods() -> Vec<AuthMethod> {
    vec![AuthMethod::Mschapv2]
}

fn default_users_key() -> String {
    "users.json".to_owned()
}

/// Default directory of the standalone PKI.
pub const DEFAULT_PKI_DIR: &str = "/var/lib/sstp-gateway/pki";
/// Default path of the users document.
pub const DEFAULT_USERS_FILE: &str = "/etc/sstp-gateway/users.json";
/// Default TUN interface name.
pub const DEFAULT_TUN_NAME: &str = "sstp0";
/// Default tunnel MTU: the Windows default (MS-SSTP §3.1.5.2).
pub const DEFAULT_MTU: u16 = 1400;
/// Most TUN queues (`tun.queues`): more than the cores of any node this runs on buys nothing.
pub const MAX_TUN_QUEUES: u16 = 64;

mod validate;

#[cfg(test)]
mod tests;
