//! The RFC 1661 §4 option-negotiation automaton, shared by LCP, IPCP and IPv6CP.
//!
//! The automaton owns the states, the restart timer and the counters; what the options mean is
//! left to an [`OptionPolicy`]. Actions (scr, sca, str, ...) are named as in the RFC's state
//! table so the code can be checked against it line by line.

use std::time::Instant;

use rand_core::Rng;

use crate::{
    Protocol,
    config::Timers,
    packet::{Code, Outbox, Packet, parse_options},
};

mod policy;

pub(crate) use policy::{NotConverging, OptionPolicy, Verdict};

/// Automaton states (RFC 1661 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Initial,
    Starting,
    Closed,
    Stopped,
    Closing,
    Stopping,
    ReqSent,
    AckRcvd,
    AckSent,
    Opened,
}

/// The This-Layer-* actions, reported to the owner of the automaton (RFC 1661 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerEvent {
    /// tlu: the layer is Opened.
    Up,
    /// tld: the layer left Opened.
    Down,
    /// tls: the layer wants the lower layer up.
    Started,
    /// tlf: the layer is done; see [`Fsm::failure`] for why.
    Finished,
}

/// Why the automaton stopped, recorded when it gives up rather than being told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Max-Configure Configure-Requests went unanswered.
    NoResponse,
    /// Max-Failure was exceeded or the policy found the peer's demands unacceptable.
    NotConverging,
    /// The peer sent a Terminate-Request.
    PeerTerminated,
    /// The peer Code-Rejected or Protocol-Rejected something essential (RXJ-).
    Rejected,
}

impl Failure {
    /// The link-level reason this failure of `protocol` stands for.
    pub(crate) fn down_reason(self, protocol: Protocol) -> crate::DownReason {
        match self {
            Self::NoResponse => crate::DownReason::NoResponse { protocol },
            Self::NotConverging => crate::DownReason::NotConverging { protocol },
            Self::PeerTerminated => crate::DownReason::PeerTerminated,
            Self::Rejected => crate::DownReason::PeerRejected { protocol },
        }
    }
}

/// What the automaton needs from its owner for one step.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) out: &'a mut Outbox,
    pub(crate) rng: &'a mut dyn Rng,
}

/// One RFC 1661 automaton.
#[derive(Debug)]
pub(crate) struct Fsm<P> {
    protocol: Protocol,
    state: State,
    timers: Timers,
    restart_count: u32,
    deadline: Option<Instant>,
    next_id: u8,
    /// Identifier and options of our outstanding Configure-Request.
    req_id: u8,
    req_options: Vec<u8>,
    /// Naks/Rejects we sent since we last sent an Ack (Max-Failure, RFC 1661 §4.6).
    naks_sent: u32,
    /// Naks/Rejects we received since the peer last Acked us. RFC 1661 bounds only the
    /// other direction; without this a peer that Naks forever would keep us negotiating forever.
    naks_received: u32,
    failure: Option<Failure>,
    /// The data of our Terminate-Requests (RFC 1661 §5.5: uninterpreted, usually a reason).
    terminate_text: &'static [u8],
    pub(crate) policy: P,
}

impl<P: OptionPolicy> Fsm<P> {
    pub(crate) fn new(protocol: Protocol, timers: Timers, policy: P) -> Self {
        Self {
            protocol,
            state: State::Initial,
            timers,
            restart_count: 0,
            deadline: None,
            next_id: 1,
            req_id: 0,
            req_options: Vec::new(),
            naks_sent: 0,
            naks_received: 0,
            failure: None,
            terminate_text: &[],
            policy,
        }
    }

    /// What our Terminate-Requests carry from now on.
    pub(crate) fn set_terminate_text(&mut self, text: &'static [u8]) {
        self.terminate_text = text;
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn is_opened(&self) -> bool {
        self.state == State::Opened
    }

    /// Why the automaton stopped on its own, if it did.
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The lower layer is ready (Up event).
    pub(crate) fn up(&mut self, cx: &mut Ctx<'_>) -> Option<LayerEvent> {
        match self.state {
            State::Initial => self.state = State::Closed,
            State::Starting => {
                self.begin_negotiation(cx);
                self.state = State::ReqSent;
            }
            _ => {}
        }
        None
    }

    /// The lower layer is gone (Down event).
    pub(crate) fn down(&mut self) -> Option<LayerEvent> {
        self.deadline = None;
        let (next, event) = match self.state {
            State::Closed | State::Closing => (State::Initial, None),
            State::Stopped => (State::Starting, Some(LayerEvent::Started)),
            State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                (State::Starting, None)
            }
            State::Opened => (State::Starting, Some(LayerEvent::Down)),
            state @ (State::Initial | State::Starting) => (state, None),
        };
        self.state = next;
        event
    }

    /// The administrator wants the link (Open event).
    pub(crate) fn open(&mut self, cx: &mut Ctx<'_>) -> Option<LayerEvent> {
        match self.state {
            State::Initial => {
                self.state = State::Starting;
                Some(LayerEvent::Started)
            }
            State::Closed => {
                self.begin_negotiation(cx);
                self.state = State::ReqSent;
                None
            }
            State::Closing => {
                self.state = State::Stopping;
                None
            }
            _ => None,
        }
    }

    /// The administrator wants the link closed (Close event).
    pub(crate) fn close(&mut self, cx: &mut Ctx<'_>) -> Option<LayerEvent> {
        match self.state {
            State::Starting => {
                self.state = State::Initial;
                Some(LayerEvent::Finished)
            }
            State::Stopped => {
                self.state = State::Closed;
                None
            }
            State::Stopping => {
                self.state = State::Closing;
                None
            }
            State::ReqSent | State::AckRcvd | State::AckSent => {
                self.irc(self.timers.max_terminate);
                self.str(cx);
                self.state = State::Closing;
                None
            }
            State::Opened => {
                self.irc(self.timers.max_terminate);
                self.str(cx);
                self.state = State::Closing;
                Some(LayerEvent::Down)
            }
            State::Initial | State::Closed | State::Closing => None,
        }
    }

    /// Fires the restart timer if it is due (TO+ / TO- events).
    pub(crate) fn handle_timeout(&mut self, cx: &mut Ctx<'_>) -> Option<LayerEvent> {
        match self.deadline {
            Some(deadline) if deadline <= cx.now => {}
            _ => return None,
        }
        self.deadline = None;
        if self.restart_count > 0 {
            match self.state {
                State::Closing | State::Stopping => self.str(cx),
                State::ReqSent | State::AckRcvd => {
                    self.scr(cx);
                    self.state = State::ReqSent;
                }
                State::AckSent => self.scr(cx),
                _ => {}
            }
            return None;
        }
        let (next, failure) = match self.state {
            State::Closing => (State::Closed, None),
            State::Stopping => (State::Stopped, None),
            State::ReqSent | State::AckRcvd | State::AckSent => {
                (State::Stopped, Some(Failure::NoResponse))
            }
            _ => return None,
        };
        tracing::debug!(protocol = %self.protocol, state = ?self.state, "restart counter exhausted");
        self.failure = self.failure.or(failure);
        self.state = next;
        Some(LayerEvent::Finished)
    }

    /// Parses and handles the information field of a frame of this protocol; malformed
    /// packets are silently discarded (RFC 1661 §5).
    pub(crate) fn handle_packet_raw(
        &mut self,
        cx: &mut Ctx<'_>,
        information: &[u8],
    ) -> Option<LayerEvent> {
        let packet = Packet::parse(information).ok()?;
        self.handle_packet(cx, &packet, information)
    }

    /// Handles a received control packet of this protocol with codes 1-7; anything else is an
    /// unknown code (RUC) and is Code-Rejected. LCP filters its extra codes out first.
    pub(crate) fn handle_packet(
        &mut self,
        cx: &mut Ctx<'_>,
        packet: &Packet<'_>,
        raw: &[u8],
    ) -> Option<LayerEvent> {
        if matches!(self.state, State::Initial | State::Starting) {
            // The lower layer is not up: nothing can legally arrive (RFC 1661 §4.1, Up event).
            return None;
        }
        match packet.code {
            Code::CONFIGURE_REQUEST => self.rcr(cx, packet),
            Code::CONFIGURE_ACK => self.rca(cx, packet),
            Code::CONFIGURE_NAK | Code::CONFIGURE_REJECT => self.rcn(cx, packet),
            Code::TERMINATE_REQUEST => self.rtr(cx, packet.id),
            Code::TERMINATE_ACK => self.rta(cx),
            Code::CODE_REJECT => {
                // Rejection of a code we need to negotiate is catastrophic (RXJ-).
                let rejected = packet.data.first().copied().unwrap_or(0);
                self.rxj(cx, !(1..=7).contains(&rejected))
            }
            _ => {
                self.scj(cx, raw);
                None
            }
        }
    }

    /// Receive-Code-Reject / Receive-Protocol-Reject (RXJ+ when `permitted`, else RXJ-).
    pub(crate) fn rxj(&mut self, cx: &mut Ctx<'_>, permitted: bool) -> Option<LayerEvent> {
        if permitted {
            if self.state == State::AckRcvd {
                self.state = State::ReqSent;
            }
            return None;
        }
        tracing::debug!(protocol = %self.protocol, "peer rejected an essential code or protocol");
        self.failure = self.failure.or(Some(Failure::Rejected));
        match self.state {
            State::Closed | State::Stopped => Some(LayerEvent::Finished),
            State::Closing => {
                self.deadline = None;
                self.state = State::Closed;
                Some(LayerEvent::Finished)
            }
            State::Stopping | State::ReqSent | State::AckRcvd | State::AckSent => {
                self.deadline = None;
                self.state = State::Stopped;
                Some(LayerEvent::Finished)
            }
            State::Opened => {
                self.irc(self.timers.max_terminate);
                self.str(cx);
                self.state = State::Stopping;
                Some(LayerEvent::Down)
            }
            State::Initial | State::Starting => None,
        }
    }

    /// Sends a Code-Reject carrying `raw` (the rejected packet) truncated to a safe size.
    pub(crate) fn scj(&mut self, cx: &mut Ctx<'_>, raw: &[u8]) {
        let id = self.take_id();
        let rejected = raw.get(..MAX_REJECT_DATA).unwrap_or(raw);
        cx.out.push(self.protocol, Code::CODE_REJECT, id, rejected);
    }

    fn rcr(&mut self, cx: &mut Ctx<'_>, packet: &Packet<'_>) -> Option<LayerEvent> {
        match self.state {
            State::Closed => {
                self.sta(cx, packet.id);
                return None;
            }
            State::Closing | State::Stopping => return None,
            _ => {}
        }
        let Ok(options) = parse_options(packet.data) else {
            tracing::debug!(protocol = %self.protocol, "malformed Configure-Request discarded");
            return None;
        };
        let reject_if_disagree = self.naks_sent >= self.timers.max_failure;
        let verdict = self
            .policy
            .check_request(&options, reject_if_disagree, cx.rng);
        let good = verdict == Verdict::Ack;
        let mut event = None;
        match self.state {
            State::Stopped => {
                self.begin_negotiation(cx);
            }
            State::Opened => {
                event = Some(LayerEvent::Down);
                self.scr(cx);
            }
            _ => {}
        }
        match verdict {
            Verdict::Ack => {
                self.naks_sent = 0;
                cx.out
                    .push(self.protocol, Code::CONFIGURE_ACK, packet.id, packet.data);
            }
            Verdict::Nak(list) => self.scn(cx, Code::CONFIGURE_NAK, packet.id, &list),
            Verdict::Reject(list) => self.scn(cx, Code::CONFIGURE_REJECT, packet.id, &list),
        }
        self.state = match (self.state, good) {
            (State::AckRcvd, true) => {
                self.deadline = None;
                event = Some(LayerEvent::Up);
                State::Opened
            }
            (State::AckRcvd, false) => State::AckRcvd,
            (_, true) => State::AckSent,
            (_, false) => State::ReqSent,
        };
        if self.naks_sent > self.timers.max_failure.saturating_mul(2) {
            // Our Rejects are being ignored as well: the peer will never converge.
            return self.give_up(cx).or(event);
        }
        event
    }

    fn rca(&mut self, cx: &mut Ctx<'_>, packet: &Packet<'_>) -> Option<LayerEvent> {
        if packet.id != self.req_id || packet.data != self.req_options.as_slice() {
            tracing::debug!(protocol = %self.protocol, "Configure-Ack does not match our request");
            return None;
        }
        match self.state {
            State::Closed | State::Stopped => {
                self.sta(cx, packet.id);
                None
            }
            State::ReqSent => {
                self.acked();
                self.irc(self.timers.max_configure);
                self.deadline = Some(cx.now + self.timers.restart);
                self.state = State::AckRcvd;
                None
            }
            State::AckRcvd => {
                // A second Ack: crossed packets, start over (RFC 1661 "x" transition).
                self.scr(cx);
                self.state = State::ReqSent;
                None
            }
            State::AckSent => {
                self.acked();
                self.deadline = None;
                self.state = State::Opened;
                Some(LayerEvent::Up)
            }
            State::Opened => {
                self.scr(cx);
                self.state = State::ReqSent;
                Some(LayerEvent::Down)
            }
            _ => None,
        }
    }

    fn rcn(&mut self, cx: &mut Ctx<'_>, packet: &Packet<'_>) -> Option<LayerEvent> {
        if packet.id != self.req_id {
            return None;
        }
        match self.state {
            State::Closed | State::Stopped => {
                self.sta(cx, packet.id);
                return None;
            }
            State::ReqSent | State::AckRcvd | State::AckSent | State::Opened => {}
            _ => return None,
        }
        let Ok(options) = parse_options(packet.data) else {
            return None;
        };
        let verdict = if packet.code == Code::CONFIGURE_NAK {
            self.policy.nakked(&options, cx.rng)
        } else {
            self.policy.rejected(&options)
        };
        self.naks_received += 1;
        if verdict.is_err() || self.naks_received > self.timers.max_failure {
            return self.give_up(cx);
        }
        let was_opened = self.state == State::Opened;
        if self.state != State::AckRcvd {
            self.irc(self.timers.max_configure);
        }
        self.scr(cx);
        if self.state != State::AckSent {
            self.state = State::ReqSent;
        }
        was_opened.then_some(LayerEvent::Down)
    }

    fn rtr(&mut self, cx: &mut Ctx<'_>, id: u8) -> Option<LayerEvent> {
        self.sta(cx, id);
        match self.state {
            State::ReqSent | State::AckRcvd | State::AckSent => {
                self.state = State::ReqSent;
                None
            }
            State::Opened => {
                self.failure = self.failure.or(Some(Failure::PeerTerminated));
                self.restart_count = 0;
                // zrc: wait one restart period so the Terminate-Ack can get out (RFC 1661 §4.4).
                self.deadline = Some(cx.now + self.timers.restart);
                self.state = State::Stopping;
                Some(LayerEvent::Down)
            }
            _ => None,
        }
    }

    fn rta(&mut self, cx: &mut Ctx<'_>) -> Option<LayerEvent> {
        match self.state {
            State::Closing => {
                self.deadline = None;
                self.state = State::Closed;
                Some(LayerEvent::Finished)
            }
            State::Stopping => {
                self.deadline = None;
                self.state = State::Stopped;
                Some(LayerEvent::Finished)
            }
            State::AckRcvd => {
                self.state = State::ReqSent;
                None
            }
            State::Opened => {
                self.scr(cx);
                self.state = State::ReqSent;
                Some(LayerEvent::Down)
            }
            _ => None,
        }
    }

    /// The negotiation cannot converge: close the link with a Terminate-Request.
    fn give_up(&mut self, cx: &mut Ctx<'_>) -> Option<LayerEvent> {
        tracing::debug!(protocol = %self.protocol, "option negotiation is not converging");
        self.failure = self.failure.or(Some(Failure::NotConverging));
        self.close(cx)
    }

    fn begin_negotiation(&mut self, cx: &mut Ctx<'_>) {
        self.naks_sent = 0;
        self.naks_received = 0;
        self.policy.reset(cx.rng);
        self.irc(self.timers.max_configure);
        self.scr(cx);
    }

    fn acked(&mut self) {
        self.naks_received = 0;
        self.policy.acked();
    }

    fn irc(&mut self, count: u32) {
        self.restart_count = count;
    }

    fn take_id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn scr(&mut self, cx: &mut Ctx<'_>) {
        self.req_options.clear();
        self.policy.request(&mut self.req_options);
        self.req_id = self.take_id();
        cx.out.push(
            self.protocol,
            Code::CONFIGURE_REQUEST,
            self.req_id,
            &self.req_options,
        );
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(cx.now + self.timers.restart);
    }

    fn scn(&mut self, cx: &mut Ctx<'_>, code: Code, id: u8, list: &[u8]) {
        self.naks_sent += 1;
        cx.out.push(self.protocol, code, id, list);
    }

    fn str(&mut self, cx: &mut Ctx<'_>) {
        let id = self.take_id();
        cx.out.push(
            self.protocol,
            Code::TERMINATE_REQUEST,
            id,
            self.terminate_text,
        );
        self.restart_count = self.restart_count.saturating_sub(1);
        self.deadline = Some(cx.now + self.timers.restart);
    }

    fn sta(&mut self, cx: &mut Ctx<'_>, id: u8) {
        cx.out.push(self.protocol, Code::TERMINATE_ACK, id, &[]);
    }
}

/// Rejected packets are echoed back truncated to the smallest MRU any peer must accept
/// beyond our own headers (RFC 1661 §5.6, §5.7 truncate to the peer's MRU).
pub(crate) const MAX_REJECT_DATA: usize = 1500 - 8;

#[cfg(test)]
mod tests;
