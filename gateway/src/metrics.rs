//! Every Prometheus metric the gateway exports, all prefixed `sstp_`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sstp_sessions_active` | gauge | | sessions whose tunnel is up |
//! | `sstp_sessions_total` | counter | `result` ([`SessionResult`]) | session attempts by how setup ended |
//! | `sstp_auth_failures_total` | counter | `reason` ([`AuthFailureReason`]) | failed PPP authentications |
//! | `sstp_bytes_total` | counter | `direction` ([`Direction`]) | IP bytes through tunnels |
//! | `sstp_packets_total` | counter | `direction` | IP packets through tunnels |
//! | `sstp_handshake_duration_seconds` | histogram | | TCP accept to tunnel up |
//! | `sstp_address_pool_addresses` | gauge | `state`: free, allocated, reserved | pool usage |
//! | `sstp_users_loaded` | gauge | | users in the document in force |
//! | `sstp_users_reload_total` | counter | `result` ([`ReloadResult`]) | users document loads |
//! | `sstp_certificate_expiry_timestamp_seconds` | gauge | | notAfter of the served certificate |
//! | `sstp_connections_rejected_total` | counter | `reason` ([`RejectReason`]) | connections refused before SSTP |
//! | `sstp_connections_pending` | gauge | | connections accepted whose user is not admitted yet |
//! | `sstp_certificate_reload_total` | counter | `result` ([`ReloadResult`]) | certificate file loads after start-up |
//! | `sstp_tun_packets_dropped_total` | counter | `reason` ([`DropReason`]) | TUN packets no session took |
//! | `sstp_tun_queue_packets_total` | counter | `queue` (0 to queues - 1), `direction` | packets each TUN queue read (`to_client`) or was given to write (`from_client`), after offload's split and before its coalescing |
//! | `sstp_tun_queues` | gauge | | TUN queues open (each with a reader and a writer) |
//! | `sstp_tun_offload` | gauge | | 1 when the TUN device runs with offload (TSO split, GRO coalescing), else 0 |
//! | `sstp_client_packets_dropped_total` | counter | `reason` ([`ClientDropReason`]) | client packets that never reached TUN |
//! | `sstp_tun_write_wait_seconds_total` | counter | | time sessions spent not reading their clients because the TUN writer's queue was full (summed over sessions) |
//! | `sstp_sessions_closed_total` | counter | `reason` ([`CLOSE_REASONS`]) | SSTP connections by why they ended |
//! | `sstp_ipv4_forwarding` | gauge | | 1 when `net.ipv4.ip_forward` is on in the gateway's network namespace, else 0 (not ready) |
//!
//! Label values come from the enums below, never from peer input or user names, so the number of
//! series is fixed and known up front (every series is created at zero on start, which lets
//! dashboards and alerts see a rate of 0 instead of "no data").

use std::time::Duration;

use prometheus::{
    Counter, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};

use crate::{ip_pool::PoolCounts, router::DropReason};

/// The gateway's registry and handles to each metric.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `sstp_sessions_active`: sessions whose tunnel is up right now.
    sessions_active: IntGauge,
    /// `sstp_sessions_total{result}`: session attempts by how their setup ended.
    sessions_total: IntCounterVec,
    /// `sstp_auth_failures_total{reason}`: failed PPP authentications.
    auth_failures_total: IntCounterVec,
    /// `sstp_bytes_total{direction}`: IP payload bytes through tunnels.
    bytes_total: IntCounterVec,
    /// `sstp_packets_total{direction}`: IP packets through tunnels.
    packets_total: IntCounterVec,
    /// `sstp_handshake_duration_seconds`: TCP accept to tunnel up, for established sessions.
    handshake_duration_seconds: Histogram,
    /// `sstp_address_pool_addresses{state}`: client addresses by state (free/allocated/reserved).
    address_pool_addresses: IntGaugeVec,
    /// `sstp_users_loaded`: users in the users document in force.
    users_loaded: IntGauge,
    /// `sstp_users_reload_total{result}`: users document loads (success or error).
    users_reload_total: IntCounterVec,
    /// `sstp_certificate_expiry_timestamp_seconds`: notAfter of the served certificate (Unix s).
    certificate_expiry_timestamp_seconds: IntGauge,
    /// `sstp_connections_rejected_total{reason}`: connections closed before an SSTP session
    /// existed (limits, TLS or preamble failures, PROXY header errors, shutdown).
    connections_rejected_total: IntCounterVec,
    /// `sstp_connections_pending`: connections whose user is not admitted yet.
    connections_pending: IntGauge,
    /// `sstp_certificate_reload_total{result}`: certificate reloads after start-up.
    certificate_reload_total: IntCounterVec,
    /// `sstp_tun_packets_dropped_total{reason}`: packets read from the TUN device that no session
    /// took (see [`DropReason`]).
    tun_packets_dropped_total: IntCounterVec,
    /// `sstp_tun_queue_packets_total{queue,direction}`: packets through each TUN queue.
    tun_queue_packets_total: IntCounterVec,
    /// `sstp_tun_queues`: TUN queues open.
    tun_queues: IntGauge,
    /// `sstp_tun_offload`: 1 when the device runs with offload.
    tun_offload: IntGauge,
    /// `sstp_client_packets_dropped_total{reason}`: IP packets from clients that never reached
    /// the TUN device (see [`ClientDropReason`]).
    client_packets_dropped_total: IntCounterVec,
    /// `sstp_tun_write_wait_seconds_total`: seconds sessions spent waiting for room in the TUN
    /// writer's queue, not reading their clients (backpressure), summed over sessions: its rate
    /// is how many sessions are held back on average.
    tun_write_wait_seconds_total: Counter,
    /// `sstp_sessions_closed_total{reason}`: SSTP connections by why they ended (the
    /// `sstp_proto::CloseReason` label), so protocol errors after setup are counted too.
    sessions_closed_total: IntCounterVec,
    /// `sstp_ipv4_forwarding`: 1 when IPv4 forwarding is on, 0 when off (the gateway is then
    /// not ready: clients could log in but reach nothing beyond it).
    ipv4_forwarding: IntGauge,
}

/// How a session attempt ended its setup (`sessions_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionResult {
    /// The tunnel came up (IPCP opened).
    Established,
    /// Authentication failed.
    AuthFailed,
    /// SSTP or PPP negotiation failed (rejects, crypto binding mismatch, protocol errors).
    NegotiationFailed,
    /// A setup deadline passed.
    Timeout,
    /// The client went away during setup.
    ClientAborted,
}

/// Why authentication failed (`auth_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailureReason {
    /// No such user in the users document.
    UnknownUser,
    /// The response did not match the NT hash.
    BadCredentials,
    /// The user is disabled.
    Disabled,
    /// The user's `expiresAt` has passed.
    Expired,
    /// The user already has their maximum number of sessions.
    SessionLimit,
    /// Right credentials, but no client address was free.
    AddressExhausted,
    /// Right credentials, but the gateway had `maxSessions` sessions.
    GatewayFull,
    /// The source or user name is blocked by the failure throttle.
    Throttled,
    /// The client insisted on a method that is not enabled (e.g. PAP).
    MethodRefused,
}

/// Which way traffic flows (`bytes_total{direction}`, `packets_total{direction}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client into the gateway (tunnel to TUN).
    FromClient,
    /// From the gateway to the client (TUN to tunnel).
    ToClient,
}

/// Why a connection was refused before it became a session (`connections_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `limits.maxSessions` reached: the HTTP request was answered 503.
    MaxSessions,
    /// `limits.maxConnectionsPerSource` pending connections from this source already.
    PerSourceLimit,
    /// Evicted while pending, to make room for a newer connection (`limits.maxPendingConnections`).
    PendingEvicted,
    /// A PROXY protocol header from a peer outside `trustedProxies`.
    UntrustedProxyHeader,
    /// The TLS handshake failed.
    TlsHandshakeFailed,
    /// The TLS handshake was refused for a `server_name` that is not a DNS name (`HOST:PORT`
    /// from `sstpc --tls-ext`, a URL...): rustls answers those with `illegal_parameter`.
    InvalidSni,
    /// The TLS handshake missed its deadline.
    TlsHandshakeTimeout,
    /// The HTTP preamble was not a valid `SSTP_DUPLEX_POST`.
    InvalidPreamble,
    /// The HTTP preamble missed its deadline.
    PreambleTimeout,
    /// A required PROXY protocol header was missing or malformed.
    InvalidProxyHeader,
    /// The gateway is shutting down.
    ShuttingDown,
}

/// Why an IP packet from a client did not reach the TUN device
/// (`client_packets_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientDropReason {
    /// Its source address is not the session's own: a spoofing attempt or a misconfigured client.
    /// (A full TUN writer queue drops nothing: the session stops reading its client until there
    /// is room, `sstp_tun_write_wait_seconds_total`.)
    ForeignSource,
}

/// Whether a users document load succeeded (`users_reload_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new document is in force.
    Success,
    /// The new document was refused; the last good one stays.
    Error,
}

impl Metrics {
    /// Creates and registers every metric, each labelled series at zero.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some(PREFIX.to_owned()), None)
            .expect("the prefix is a valid metric name");
        let reg = Registrar(&registry);
        Self {
            sessions_active: reg.gauge("sessions_active", "SSTP sessions whose tunnel is up"),
            sessions_total: reg.counters(
                "sessions_total",
                "SSTP session attempts by how their setup ended",
                "result",
                &SessionResult::ALL.map(SessionResult::metric_label),
            ),
            auth_failures_total: reg.counters(
                "auth_failures_total",
                "Failed PPP authentications by reason",
                "reason",
                &AuthFailureReason::ALL.map(AuthFailureReason::metric_label),
            ),
            bytes_total: reg.counters(
                "bytes_total",
                "IP bytes carried through tunnels",
                "direction",
                &Direction::ALL.map(Direction::metric_label),
            ),
            packets_total: reg.counters(
                "packets_total",
                "IP packets carried through tunnels",
                "direction",
                &Direction::ALL.map(Direction::metric_label),
            ),
            handshake_duration_seconds: reg.histogram(
                "handshake_duration_seconds",
                "Time from TCP accept to tunnel up for established sessions",
            ),
            address_pool_addresses: reg.gauges(
                "address_pool_addresses",
                "Client addresses of the pool by state",
                "state",
                &POOL_STATES,
            ),
            users_loaded: reg.gauge("users_loaded", "Users in the users document in force"),
            users_reload_total: reg.counters(
                "users_reload_total",
                "Users document loads by result",
                "result",
                &ReloadResult::ALL.map(ReloadResult::metric_label),
            ),
            certificate_expiry_timestamp_seconds: reg.gauge(
                "certificate_expiry_timestamp_seconds",
                "notAfter of the served TLS certificate as a Unix timestamp",
            ),
            connections_rejected_total: reg.counters(
                "connections_rejected_total",
                "Connections refused before they became SSTP sessions, by reason",
                "reason",
                &RejectReason::ALL.map(RejectReason::metric_label),
            ),
            connections_pending: reg.gauge(
                "connections_pending",
                "Connections accepted whose user is not admitted yet",
            ),
            certificate_reload_total: reg.counters(
                "certificate_reload_total",
                "Certificate file loads after start-up by result",
                "result",
                &ReloadResult::ALL.map(ReloadResult::metric_label),
            ),
            tun_packets_dropped_total: reg.counters(
                "tun_packets_dropped_total",
                "Packets from the TUN device that no session took, by reason",
                "reason",
                &DropReason::ALL.map(DropReason::metric_label),
            ),
            tun_queue_packets_total: reg.counter_table(
                "tun_queue_packets_total",
                "Packets each TUN queue read (to_client) or was given to write (from_client)",
                &["queue", "direction"],
            ),
            tun_queues: reg.gauge("tun_queues", "TUN queues open, each with a reader and a writer"),
            tun_offload: reg.gauge(
                "tun_offload",
                "1 when the TUN device runs with offload (TSO split, GRO coalescing), else 0",
            ),
            client_packets_dropped_total: reg.counters(
                "client_packets_dropped_total",
                "IP packets from clients that never reached the TUN device, by reason",
                "reason",
                &ClientDropReason::ALL.map(ClientDropReason::metric_label),
            ),
            tun_write_wait_seconds_total: reg.counter(
                "tun_write_wait_seconds_total",
                "Seconds sessions spent not reading their clients because the TUN writer's queue was full, summed over sessions",
            ),
            sessions_closed_total: reg.counters(
                "sessions_closed_total",
                "SSTP connections by why they ended",
                "reason",
                &CLOSE_REASONS,
            ),
            ipv4_forwarding: reg.gauge(
                "ipv4_forwarding",
                "1 when net.ipv4.ip_forward is on in the gateway's network namespace, else 0",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding of gathered metrics cannot fail")
    }

    /// A tunnel came up after `setup` (accept to IPCP open).
    pub fn session_established(&self, setup: Duration) {
        self.sessions_active.inc();
        self.sessions_total
            .with_label_values(&[SessionResult::Established.metric_label()])
            .inc();
        self.handshake_duration_seconds.observe(setup.as_secs_f64());
    }

    /// An established session ended.
    pub fn session_closed(&self) {
        self.sessions_active.dec();
    }

    /// A session attempt failed during setup.
    pub fn session_failed(&self, result: SessionResult) {
        self.sessions_total
            .with_label_values(&[result.metric_label()])
            .inc();
    }

    /// An authentication failed.
    pub fn auth_failure(&self, reason: AuthFailureReason) {
        self.auth_failures_total
            .with_label_values(&[reason.metric_label()])
            .inc();
    }

    /// `packets` packets totalling `bytes` bytes went `direction`.
    pub fn traffic(&self, direction: Direction, packets: u64, bytes: u64) {
        self.packets_total
            .with_label_values(&[direction.metric_label()])
            .inc_by(packets);
        self.bytes_total
            .with_label_values(&[direction.metric_label()])
            .inc_by(bytes);
    }

    /// A connection was refused before it became a session.
    pub fn connection_rejected(&self, reason: RejectReason) {
        self.connections_rejected_total
            .with_label_values(&[reason.metric_label()])
            .inc();
    }

    /// An SSTP connection ended for `reason`, one of [`CLOSE_REASONS`]
    /// (`sstp_proto::CloseReason::as_str`).
    pub fn session_ended(&self, reason: &'static str) {
        self.sessions_closed_total
            .with_label_values(&[reason])
            .inc();
    }

    /// A packet from the TUN device was dropped.
    pub fn tun_packet_dropped(&self, reason: DropReason) {
        self.tun_packets_dropped_total
            .with_label_values(&[reason.metric_label()])
            .inc();
    }

    /// The TUN device is up with `queues` queues, offload on or off; creates every queue's
    /// series at zero.
    pub fn set_tun_device(&self, queues: usize, offload: bool) {
        self.tun_queues
            .set(i64::try_from(queues).unwrap_or(i64::MAX));
        self.tun_offload.set(i64::from(offload));
        for queue in 0..queues {
            for direction in Direction::ALL {
                self.tun_queue_packets(queue, direction);
            }
        }
    }

    /// The counter of packets through TUN queue `queue` in `direction`, to keep and bump
    /// without a label lookup per packet.
    pub fn tun_queue_packets(&self, queue: usize, direction: Direction) -> IntCounter {
        self.tun_queue_packets_total
            .with_label_values(&[queue.to_string().as_str(), direction.metric_label()])
    }

    /// Packets from a client were dropped before the TUN device.
    pub fn client_packets_dropped(&self, reason: ClientDropReason, packets: u64) {
        self.client_packets_dropped_total
            .with_label_values(&[reason.metric_label()])
            .inc_by(packets);
    }

    /// A session waited `waited` for room in the TUN writer's queue.
    pub fn tun_write_waited(&self, waited: Duration) {
        self.tun_write_wait_seconds_total
            .inc_by(waited.as_secs_f64());
    }

    /// Publishes the pool's counts.
    pub fn set_pool(&self, counts: PoolCounts) {
        let PoolCounts {
            free,
            allocated,
            reserved,
        } = counts;
        for (state, value) in POOL_STATES.iter().zip([free, allocated, reserved]) {
            self.address_pool_addresses
                .with_label_values(&[*state])
                .set(i64::from(value));
        }
    }

    /// A users document load finished; on success `users` is the number of users now in force.
    pub fn users_reloaded(&self, result: ReloadResult, users: Option<usize>) {
        self.users_reload_total
            .with_label_values(&[result.metric_label()])
            .inc();
        if let Some(users) = users {
            self.users_loaded
                .set(i64::try_from(users).unwrap_or(i64::MAX));
        }
    }

    /// Connections pending right now.
    pub fn set_pending(&self, pending: usize) {
        self.connections_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A certificate reload finished.
    pub fn certificate_reloaded(&self, result: ReloadResult) {
        self.certificate_reload_total
            .with_label_values(&[result.metric_label()])
            .inc();
    }

    /// The served certificate expires at this Unix timestamp.
    pub fn set_certificate_expiry(&self, unix_seconds: i64) {
        self.certificate_expiry_timestamp_seconds.set(unix_seconds);
    }

    /// Whether IPv4 forwarding is on.
    pub fn set_ipv4_forwarding(&self, on: bool) {
        self.ipv4_forwarding.set(i64::from(on));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

mod labels;
use labels::Registrar;

/// Every metric name starts with `sstp_`.
const PREFIX: &str = "sstp";
/// `sessions_closed_total{reason}` values: every `sstp_proto::CloseReason::as_str`.
pub const CLOSE_REASONS: [&str; 17] = [
    "http_rejected",
    "http_response",
    "framing",
    "invalid_message",
    "unexpected_message",
    "retry_count_exceeded",
    "negotiation_timeout",
    "crypto_binding",
    "no_common_hash_protocol",
    "auth_failed",
    "ppp",
    "peer_aborted",
    "peer_disconnected",
    "local_disconnect",
    "hello_timeout",
    "transport_closed",
    // Not a `CloseReason`: the session loop drops a client that reads nothing (backpressure).
    "write_stalled",
];
/// `address_pool_addresses{state}` values, in [`PoolCounts`] field order.
const POOL_STATES: [&str; 3] = ["free", "allocated", "reserved"];

#[cfg(test)]
mod tests;
