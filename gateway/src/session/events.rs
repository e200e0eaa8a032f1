//! The session's reactions to `ServerEvent`s: setup phases, user registration and limits,
//! throttle bookkeeping, routing, and the metrics that say how each connection ended.

use std::{net::Ipv4Addr, time::Instant};

use sstp_ppp::AuthFailure;
use sstp_proto::{CloseReason, ServerEvent};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    ROUTE_QUEUE, Session, audit,
    outcome::{SetupOutcome, Stage, setup_outcome},
    phase::{Ending, Established, Negotiating, Phase, Route},
};
use crate::{
    clock::now,
    metrics::{AuthFailureReason, SessionResult},
};

/// The `sessions_closed_total` reason of a client dropped for reading nothing.
const WRITE_STALLED: &str = "write_stalled";

impl Session {
    pub(super) fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ServerEvent::HttpAccepted {
                    host,
                    correlation_id,
                } => {
                    debug!(?host, ?correlation_id, "HTTP preamble accepted");
                    if matches!(self.phase, Phase::Preamble { .. }) {
                        self.phase = Phase::Negotiating(Negotiating {
                            until: now + self.shared.deadlines.negotiation,
                            connected: false,
                            route: None,
                            failure: None,
                        });
                    }
                }
                ServerEvent::Authenticated { username, method } => {
                    debug!(user = %username, ?method, "authenticated");
                    self.on_authenticated(&username);
                }
                ServerEvent::AuthFailed { username, reason } => {
                    debug!(user = ?username, reason = reason.metric_label(), "authentication failed");
                    self.on_auth_failed(username.as_deref(), reason, now);
                }
                ServerEvent::Connected { hash_protocol } => {
                    debug!(?hash_protocol, "call connected");
                    if let Phase::Negotiating(negotiating) = &mut self.phase {
                        negotiating.connected = true;
                    }
                    self.check_established(now);
                }
                ServerEvent::Ipv4Up { peer } => {
                    self.on_ipv4_up(peer);
                    self.check_established(now);
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

    fn on_auth_failed(&mut self, username: Option<&str>, reason: AuthFailure, now: Instant) {
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
            if let Phase::Negotiating(negotiating) = &mut self.phase {
                negotiating.failure = Some(SessionResult::AuthFailed);
            }
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
            self.shared.throttle.record_failure(user, self.source, now);
        }
    }

    /// IPCP gave the client `peer`: the router learns where its packets go. Only while
    /// negotiating; a call already ending gets no route.
    fn on_ipv4_up(&mut self, peer: Ipv4Addr) {
        let Phase::Negotiating(negotiating) = &mut self.phase else {
            debug!(%peer, "IPv4 up after setup ended; not routed");
            return;
        };
        let (sender, queue) = mpsc::channel(ROUTE_QUEUE);
        match self.shared.router.register(peer, sender) {
            Ok(guard) => negotiating.route = Some(Route { guard, queue }),
            Err(err) => {
                warn!(error = %err, "cannot route the session's address");
                negotiating.failure = Some(SessionResult::NegotiationFailed);
                self.conn.disconnect(now());
            }
        }
    }

    /// Negotiating with the call connected and a route: the tunnel is up.
    fn check_established(&mut self, now: Instant) {
        let ready = matches!(
            &self.phase,
            Phase::Negotiating(Negotiating {
                connected: true,
                route: Some(_),
                ..
            })
        );
        if !ready {
            return;
        }
        let Phase::Negotiating(Negotiating {
            route: Some(route), ..
        }) = std::mem::replace(&mut self.phase, Phase::Ending(Ending::Counted))
        else {
            unreachable!("checked just above");
        };
        let address = route.address();
        self.shared
            .metrics
            .session_established(now.saturating_duration_since(self.accepted));
        info!(%address, "tunnel up");
        let open = audit::OpenSession::start(
            &self.shared.audit,
            &self.shared.sessions,
            self.id,
            self.user.as_deref(),
            self.client,
            address,
        );
        self.phase = Phase::Established(Established {
            route,
            open,
            last_data: now,
            idle_fired: false,
        });
    }

    /// The single Closed event: the close is counted, and the phase becomes Ending.
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
        let outcome = match std::mem::replace(&mut self.phase, Phase::Ending(Ending::Counted)) {
            Phase::Established(established) => {
                self.phase = Phase::Ending(Ending::WasEstablished(established.open));
                return;
            }
            // Closed comes once; should it come again, nothing more is counted.
            Phase::Ending(settled @ (Ending::Counted | Ending::WasEstablished(_))) => {
                self.phase = Phase::Ending(settled);
                return;
            }
            Phase::Ending(Ending::SetupFailed(result)) => SetupOutcome::Failed(result),
            Phase::Preamble { .. } => setup_outcome(Stage::Preamble, reason, None),
            Phase::Negotiating(negotiating) => {
                setup_outcome(Stage::Negotiation, reason, negotiating.failure)
            }
        };
        match outcome {
            SetupOutcome::Rejected(reason) => metrics.connection_rejected(reason),
            SetupOutcome::Failed(result) => metrics.session_failed(result),
        }
    }
}
