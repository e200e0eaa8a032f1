//! The session audit trail: who was connected when, from where, with which tunnel address, and
//! how much went through. One record when a tunnel comes up (`session_start`), one when it ends
//! (`session_end`), and one per refused login (`login_failed`), at info level under the log
//! target [`TARGET`], so a log collector reading the pod's log can keep them apart from the
//! rest (with `--log-format json` every field is a top-level JSON key).
//!
//! No record carries a credential: the fields are the login name (left out entirely with
//! `--audit-omit-user-names`), addresses, times, counters and a reason label. The password,
//! its NT hash and the MS-CHAPv2 challenges and responses never reach this module.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Instant,
};

use tracing::info;

/// The log target of every audit record.
pub(super) const TARGET: &str = "sstp_audit";

/// What every record says about where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Put the login name in the records (off for deployments that must not log who).
    pub user_names: bool,
    /// The gateway instance: the pod name under Kubernetes, else the host name.
    pub gateway: String,
}

impl AuditConfig {
    /// The instance name from `POD_NAME` (the operator's pods set it from the downward API),
    /// else the host name.
    pub fn instance_name() -> String {
        std::env::var("POD_NAME")
            .ok()
            .filter(|name| !name.is_empty())
            .or_else(|| {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|name| name.into_string().ok())
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }

    fn user<'a>(&self, user: Option<&'a str>) -> Option<&'a str> {
        if self.user_names { user } else { None }
    }
}

/// IP traffic of one session, counted as it passes (the same packets the global
/// `sstp_bytes_total` and `sstp_packets_total` count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Traffic {
    /// IP bytes the client sent through the tunnel.
    pub(super) bytes_from_client: u64,
    /// IP packets the client sent.
    pub(super) packets_from_client: u64,
    /// IP bytes sent to the client.
    pub(super) bytes_to_client: u64,
    /// IP packets sent to the client.
    pub(super) packets_to_client: u64,
}

/// An established session, from its `session_start` record to its `session_end`.
#[derive(Debug)]
pub(super) struct OpenSession {
    /// Its entry in the session table, which goes with it.
    pub(super) listed: super::table::Listed,
    user: Option<String>,
    client: SocketAddr,
    address: Ipv4Addr,
    start: jiff::Timestamp,
    started: Instant,
}

impl OpenSession {
    /// Writes `session_start` and returns what `session_end` needs.
    pub(super) fn start(
        config: &AuditConfig,
        table: &std::sync::Arc<super::SessionTable>,
        id: u64,
        user: Option<&str>,
        client: SocketAddr,
        address: Ipv4Addr,
    ) -> Self {
        let user = config.user(user).map(str::to_owned);
        let start = jiff::Timestamp::now();
        let session = Self {
            listed: table.insert(id, user.clone(), client, address, start),
            user,
            client,
            address,
            start,
            started: Instant::now(),
        };
        info!(
            target: TARGET,
            event = "session_start",
            session = id,
            user = session.user.as_deref(),
            client = %session.client,
            tunnel_address = %session.address,
            gateway = config.gateway.as_str(),
            start = %session.start,
            "session started"
        );
        session
    }

    /// Writes `session_end`.
    pub(super) fn end(self, config: &AuditConfig, id: u64, traffic: Traffic, reason: &str) {
        info!(
            target: TARGET,
            event = "session_end",
            session = id,
            user = self.user.as_deref(),
            client = %self.client,
            tunnel_address = %self.address,
            gateway = config.gateway.as_str(),
            start = %self.start,
            end = %jiff::Timestamp::now(),
            duration_seconds = self.started.elapsed().as_secs_f64(),
            bytes_from_client = traffic.bytes_from_client,
            packets_from_client = traffic.packets_from_client,
            bytes_to_client = traffic.bytes_to_client,
            packets_to_client = traffic.packets_to_client,
            reason,
            "session ended"
        );
    }
}

/// Writes `login_failed`: a PPP authentication that was refused (`reason` is the
/// `sstp_auth_failures_total` label). `user` is the name the client sent, if any.
pub(super) fn login_failed(
    config: &AuditConfig,
    id: u64,
    user: Option<&str>,
    client: SocketAddr,
    reason: &str,
) {
    info!(
        target: TARGET,
        event = "login_failed",
        session = id,
        user = config.user(user),
        client = %client,
        gateway = config.gateway.as_str(),
        reason,
        "login refused"
    );
}

#[cfg(test)]
mod tests;
