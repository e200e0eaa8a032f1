//! What the PPP server and client share: the outbox and randomness every automaton writes
//! with, LCP, the events, and the RFC 1661 §3.2 phases as an enum whose variants own what
//! exists in them, so leaving a phase drops its automata with it.

use std::{collections::VecDeque, time::Instant};

use rand_core::Rng;

use crate::{
    DownReason, Protocol,
    fsm::{Ctx, LayerEvent},
    lcp::{Lcp, LcpOutcome},
    packet::Outbox,
};

/// Where a received frame goes once LCP had its say.
pub(crate) enum Received {
    /// It was LCP's: act on the outcome.
    Lcp(LcpOutcome),
    /// Nothing is listening: the link is not live, or LCP is not Opened (RFC 1661 §3.2).
    Dropped,
    /// For the side's authentication or network protocols.
    Upper,
}

/// The link phases of RFC 1661 §3.2. `A` is the side's authentication exchange, `N` its
/// network-layer protocols.
#[derive(Debug)]
pub(crate) enum Phase<A, N> {
    /// Before the lower layer came up.
    Dead,
    /// LCP negotiates.
    Establish,
    /// LCP is Opened; the authentication exchange runs.
    Authenticate(A),
    /// Authenticated: the NCPs run. The finished exchange stays to answer retransmissions.
    Network { auth: Option<A>, ncp: N },
    /// We or the peer are closing LCP (or it went down): nothing above LCP exists.
    Terminate,
    /// Down was reported: nothing more happens.
    Finished,
}

impl<A, N> Phase<A, N> {
    /// The authentication exchange, while one exists.
    pub(crate) fn auth_mut(&mut self) -> Option<&mut A> {
        match self {
            Self::Authenticate(auth)
            | Self::Network {
                auth: Some(auth), ..
            } => Some(auth),
            _ => None,
        }
    }

    /// The authentication exchange, while one exists.
    pub(crate) fn auth(&self) -> Option<&A> {
        match self {
            Self::Authenticate(auth)
            | Self::Network {
                auth: Some(auth), ..
            } => Some(auth),
            _ => None,
        }
    }

    /// The network-layer protocols, in the Network phase.
    pub(crate) fn ncp(&self) -> Option<&N> {
        match self {
            Self::Network { ncp, .. } => Some(ncp),
            _ => None,
        }
    }

    /// The network-layer protocols, in the Network phase.
    pub(crate) fn ncp_mut(&mut self) -> Option<&mut N> {
        match self {
            Self::Network { ncp, .. } => Some(ncp),
            _ => None,
        }
    }

    /// Whether frames and timers still mean anything: after lower-up and before Down.
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self, Self::Dead | Self::Finished)
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Dead => "dead",
            Self::Establish => "establish",
            Self::Authenticate(_) => "authenticate",
            Self::Network { .. } => "network",
            Self::Terminate => "terminate",
            Self::Finished => "finished",
        }
    }
}

/// Every timer of a link, one entry each; `poll_timeout` is the minimum of their deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// LCP's restart timer (RFC 1661 §4.6).
    Lcp,
    /// The authentication exchange's retransmission or deadline.
    Auth,
    /// IPCP's restart timer.
    Ipcp,
    /// IPv6CP's restart timer.
    Ipv6cp,
    /// CCP's restart timer (the Windows client's MPPE proposal).
    Ccp,
}

impl Timer {
    /// How logs name this timer.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Lcp => "lcp",
            Self::Auth => "auth",
            Self::Ipcp => "ipcp",
            Self::Ipv6cp => "ipv6cp",
            Self::Ccp => "ccp",
        }
    }

    /// The entry due first of `table`.
    pub(crate) fn next(
        table: impl IntoIterator<Item = (Self, Option<Instant>)>,
    ) -> Option<(Self, Instant)> {
        table
            .into_iter()
            .filter_map(|(timer, at)| Some((timer, at?)))
            .min_by_key(|&(_, at)| at)
    }
}

/// Where the automata write: the frames for the peer and the randomness they draw.
pub(crate) struct Wire {
    out: Outbox,
    rng: Box<dyn Rng + Send>,
}

impl Wire {
    /// The context of one automaton step at `now`.
    pub(crate) fn cx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            now,
            out: &mut self.out,
            rng: &mut *self.rng,
        }
    }
}

/// The state both sides of a PPP link keep. `E` is the side's event type.
pub(crate) struct Link<E, A, N> {
    pub(crate) wire: Wire,
    pub(crate) events: VecDeque<E>,
    pub(crate) lcp: Lcp,
    pub(crate) phase: Phase<A, N>,
    /// Why we are closing the link, reported when LCP finishes.
    pub(crate) closing: Option<DownReason>,
}

impl<E, A, N> Link<E, A, N> {
    pub(crate) fn new(lcp: Lcp, rng: Box<dyn Rng + Send>) -> Self {
        Self {
            wire: Wire {
                out: Outbox::default(),
                rng,
            },
            events: VecDeque::new(),
            lcp,
            phase: Phase::Dead,
            closing: None,
        }
    }

    /// The transport is up: LCP starts and sends its Configure-Request.
    pub(crate) fn lower_up(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Dead) {
            return;
        }
        self.phase = Phase::Establish;
        let mut cx = self.wire.cx(now);
        let _started = self.lcp.fsm.open(&mut cx);
        let _ = self.lcp.fsm.up(&mut cx);
    }

    /// Routes one received frame: LCP's own, dropped, or the side's (see [`Received`]).
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        protocol: Protocol,
        information: &[u8],
    ) -> Received {
        if !self.phase.is_live() {
            return Received::Dropped;
        }
        if protocol == Protocol::LCP {
            return Received::Lcp(self.lcp.handle(&mut self.wire.cx(now), information));
        }
        if !self.lcp.fsm.is_opened() {
            // RFC 1661 §3.2: only LCP is allowed before the link is established.
            tracing::trace!(%protocol, "frame before LCP Opened dropped");
            return Received::Dropped;
        }
        Received::Upper
    }

    /// Fires LCP's timer if due, once the side's table says `next` is the timer due first.
    /// `None` when the link is not live and no timer means anything.
    pub(crate) fn lcp_timeout(
        &mut self,
        now: Instant,
        next: Option<(Timer, Instant)>,
    ) -> Option<LcpOutcome> {
        if !self.phase.is_live() {
            return None;
        }
        if let Some((timer, _)) = next.filter(|&(_, at)| at <= now) {
            tracing::trace!(timer = timer.name(), "PPP timer due");
        }
        let event = self.lcp.fsm.handle_timeout(&mut self.wire.cx(now));
        Some(event.map_or(LcpOutcome::Nothing, LcpOutcome::Layer))
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.out.pop()
    }

    pub(crate) fn poll_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }

    /// Closes LCP with a Terminate-Request whose text `text` picks for the first reason, and
    /// remembers that reason. True when LCP finished at once (it was not open).
    pub(crate) fn terminate(
        &mut self,
        now: Instant,
        reason: DownReason,
        text: fn(&DownReason) -> &'static [u8],
    ) -> bool {
        let reason = self.closing.get_or_insert(reason);
        // RFC 1661 §5.5: the Terminate-Request's data is ours to fill; pppd logs it as
        // "LCP terminated by peer (<text>)", so a refused user sees why.
        self.lcp.fsm.set_terminate_text(text(reason));
        self.enter(Phase::Terminate);
        self.lcp.fsm.close(&mut self.wire.cx(now)) == Some(LayerEvent::Finished)
    }

    /// The transport is gone: nothing more is sent. Returns why the link ends.
    pub(crate) fn lower_down(&mut self) -> DownReason {
        self.wire.out.close();
        let _ = self.lcp.fsm.down();
        self.closing.take().unwrap_or(DownReason::LowerDown)
    }

    /// Enters Finished and reports `down` once. False when Down was already reported.
    pub(crate) fn finish(&mut self, reason: &DownReason, down: E) -> bool {
        if matches!(self.phase, Phase::Finished) {
            return false;
        }
        self.enter(Phase::Finished);
        tracing::debug!(%reason, "PPP link down");
        self.events.push_back(down);
        true
    }

    /// Enters the Network phase with `ncp`, keeping the finished authentication exchange (if
    /// there was one) to answer the peer's retransmissions.
    pub(crate) fn enter_network(&mut self, ncp: N) {
        tracing::trace!(from = self.phase.name(), to = "network", "PPP phase");
        let auth = match std::mem::replace(&mut self.phase, Phase::Establish) {
            Phase::Authenticate(auth) => Some(auth),
            _ => None,
        };
        self.phase = Phase::Network { auth, ncp };
    }

    /// Moves to `phase`, dropping what the one left held.
    pub(crate) fn enter(&mut self, phase: Phase<A, N>) {
        tracing::trace!(from = self.phase.name(), to = phase.name(), "PPP phase");
        self.phase = phase;
    }
}
