//! Where a session stands. Each phase owns what exists only in it, as quinn's connection
//! `State` does: a route only once IPCP gave the client its address, the audit record and the
//! idle clock only once the tunnel is up. "Established without a route" cannot be written.

use std::{net::Ipv4Addr, time::Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::audit::OpenSession;
use crate::{metrics::SessionResult, router::RouteGuard};

/// The phases, in order; a session only moves forward through them.
#[derive(Debug)]
pub(super) enum Phase {
    /// Waiting for the HTTP request, until the deadline.
    Preamble {
        /// The preamble deadline.
        until: Instant,
    },
    /// SSTP and PPP negotiating.
    Negotiating(Negotiating),
    /// The tunnel carries IP.
    Established(Established),
    /// The call is ending or has ended; the route is gone and how the connection counts is
    /// settled.
    Ending(Ending),
}

/// Setup after the HTTP preamble.
#[derive(Debug)]
pub(super) struct Negotiating {
    /// The negotiation deadline.
    pub(super) until: Instant,
    /// CALL_CONNECTED arrived: the crypto binding checked out.
    pub(super) connected: bool,
    /// The session's route, from the moment IPCP gave the client its address.
    pub(super) route: Option<Route>,
    /// How setup failed, when we know better than the close reason will say.
    pub(super) failure: Option<SessionResult>,
}

/// An established tunnel.
#[derive(Debug)]
pub(super) struct Established {
    /// Where the router sends packets for the client's address.
    pub(super) route: Route,
    /// The audit record and `/sessions` entry, from `session_start` on.
    pub(super) open: OpenSession,
    /// When an IP packet last went through, for the idle timeout.
    pub(super) last_data: Instant,
    /// The idle timeout fired (the disconnect is under way).
    pub(super) idle_fired: bool,
}

/// How a closing connection is accounted for.
#[derive(Debug)]
pub(super) enum Ending {
    /// Setup failed this way; counted when the connection closes.
    SetupFailed(SessionResult),
    /// A metric already counts how this connection ended.
    Counted,
    /// The tunnel was up: the active-session gauge and the audit record close when the task
    /// ends.
    WasEstablished(OpenSession),
}

/// The session's entry in the router and the queue it feeds.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) guard: RouteGuard,
    pub(super) queue: mpsc::Receiver<Bytes>,
}

impl Route {
    /// The client's tunnel address.
    pub(super) fn address(&self) -> Ipv4Addr {
        self.guard.address()
    }
}

impl Phase {
    /// The route's queue, while the session has one.
    pub(super) fn route_mut(&mut self) -> Option<&mut Route> {
        match self {
            Self::Negotiating(negotiating) => negotiating.route.as_mut(),
            Self::Established(established) => Some(&mut established.route),
            Self::Preamble { .. } | Self::Ending(_) => None,
        }
    }

    /// Whether the tunnel is up.
    pub(super) fn is_established(&self) -> bool {
        matches!(self, Self::Established(_))
    }

    /// The session's own deadline: setup, or the idle timeout once established.
    pub(super) fn deadline(&self, idle_timeout: Option<std::time::Duration>) -> Option<Instant> {
        match self {
            Self::Preamble { until } => Some(*until),
            Self::Negotiating(negotiating) => Some(negotiating.until),
            Self::Established(established) if !established.idle_fired => {
                idle_timeout.map(|idle| established.last_data + idle)
            }
            Self::Established(_) | Self::Ending(_) => None,
        }
    }
}
