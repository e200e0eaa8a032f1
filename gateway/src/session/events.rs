//! The session's reactions to `ServerEvent`s: setup phases, user registration and limits,
//! throttle bookkeeping, routing, and the metrics that say how each connection ended.

use std::time::Instant;

use sstp_ppp::AuthFailure;
use sstp_proto::{CloseReason, ServerEvent, http::Rejection};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Phase, ROUTE_QUEUE, Session, audit};
use crate::metrics::{AuthFailureReason, RejectReason, SessionResult};

/// The `sessions_closed_total` reason of a client dropped for reading nothing.
const WRITE_STALLED: &str = "write_stalled";

impl Session {
    pub(super) fn drain_events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ServerEvent::HttpAccepted {
                    host,
                    correlation_id,
                } => {
                    debug!(?host, ?correlation_id, "HTTP preamble accepted");
                    self.phase =
                        Phase::Negotiating(Instant::now() + self.shared.deadlines.negotiation);
                }
                ServerEvent::Authenticated { username, method } => {
                    debug!(user = %username, ?method, "authenticated");
                    self.on_authenticated(&username);
                }
                ServerEvent::AuthFailed { username, reason } => {
                    debug!(user = ?username, reason = reason.metric_label(), "authentication failed");
                    self.on_auth_failed(username.as_deref(), reason);
                }
                ServerEvent::Connected { hash_protocol } => {
                    debug!(?hash_protocol, "call connected");
                    self.connected = true;
                    self.check_established();
                }
                ServerEvent::Ipv4Up { peer } => {
                    self.peer = Some(peer);
                    let (sender, receiver) = mpsc::channel(ROUTE_QUEUE);
                    match self.shared.router.register(peer, sender) {
                        Ok(guard) => self.route = Some((guard, receiver)),
                        Err(err) => {
                            warn!(error = %err, "cannot route the session's address");
                            self.setup_result = Some(SessionResult::NegotiationFailed);
                            self.conn.disconnect(Instant::now());
                        }
                    }
                    self.check_established();
                }
                ServerEvent::Ipv6Up { .. } => debug!("IPv6CP up (IPv6 is not routed yet)"),
                ServerEvent::Closed { reason } => self.on_closed(&reason),
            }
        }
    }

    fn on_authenticated(&mut self, username: &str) {
        // Limits were applied by the admission before Success went out.
        self.shared.throttle.record_success(username, self.source);
        self.user = Some(username.to_owned());
    }

    fn on_auth_failed(&mut self, username: Option<&str>, reason: AuthFailure) {
        let label = match reason {
            AuthFailure::BadPassword | AuthFailure::Malformed => {
                Some(AuthFailureReason::BadCredentials)
            }
            AuthFailure::UnknownUser => Some(AuthFailureReason::UnknownUser),
            AuthFailure::Disabled => Some(AuthFailureReason::Disabled),
            AuthFailure::Expired => Some(AuthFailureReason::Expired),
            AuthFailure::Throttled => Some(AuthFailureReason::Throttled),
            AuthFailure::MethodNotAllowed => Some(AuthFailureReason::MethodRefused),
            AuthFailure::SessionLimit => Some(AuthFailureReason::SessionLimit),
            AuthFailure::AddressExhausted => Some(AuthFailureReason::AddressExhausted),
            AuthFailure::GatewayFull => Some(AuthFailureReason::GatewayFull),
            // Counted as a setup timeout when the connection closes. No wildcard: a new reason
            // must be mapped here (or left out on purpose) before this compiles.
            AuthFailure::Timeout => None,
        };
        if let Some(label) = label {
            self.shared.metrics.auth_failure(label);
            self.setup_result = Some(SessionResult::AuthFailed);
            audit::login_failed(
                &self.shared.audit,
                self.id,
                username,
                self.client,
                label.metric_label(),
            );
        }
        // Only guesses count toward the throttle; a refusal because of the throttle does not
        // extend it.
        if matches!(reason, AuthFailure::BadPassword | AuthFailure::UnknownUser)
            && let Some(user) = username
        {
            self.shared
                .throttle
                .record_failure(user, self.source, Instant::now());
        }
    }

    fn check_established(&mut self) {
        if self.connected && self.route.is_some() && matches!(self.phase, Phase::Negotiating(_)) {
            self.phase = Phase::Established;
            self.last_data = Instant::now();
            self.shared
                .metrics
                .session_established(self.accepted.elapsed());
            info!(address = ?self.peer, "tunnel up");
            if let Some(address) = self.peer {
                self.open = Some(audit::OpenSession::start(
                    &self.shared.audit,
                    &self.shared.sessions,
                    self.id,
                    self.user.as_deref(),
                    self.client,
                    address,
                ));
            }
        }
    }

    fn on_closed(&mut self, reason: &CloseReason) {
        let label = if self.stalled {
            WRITE_STALLED
        } else {
            reason.metric_label()
        };
        debug!(reason = label, "connection closed");
        self.close_label = Some(label);
        let metrics = &self.shared.metrics;
        metrics.session_ended(label);
        if self.phase == Phase::Established || self.counted {
            return;
        }
        match (self.phase, reason) {
            (Phase::Preamble(_), CloseReason::HttpRejected(Rejection::Busy)) => {
                metrics.connection_rejected(RejectReason::MaxSessions);
            }
            (Phase::Preamble(_), CloseReason::HttpRejected(_)) => {
                metrics.connection_rejected(RejectReason::InvalidPreamble);
            }
            (Phase::Preamble(_), _) => metrics.session_failed(SessionResult::ClientAborted),
            (_, reason) => {
                let result = self.setup_result.unwrap_or(match reason {
                    CloseReason::NegotiationTimeout | CloseReason::HelloTimeout => {
                        SessionResult::Timeout
                    }
                    CloseReason::TransportClosed
                    | CloseReason::PeerAborted(_)
                    | CloseReason::PeerDisconnected
                    | CloseReason::LocalDisconnect => SessionResult::ClientAborted,
                    _ => SessionResult::NegotiationFailed,
                });
                metrics.session_failed(result);
            }
        }
        self.counted = true;
    }
}
