//! What server and client connections share: the output buffer, the abort and disconnect
//! handshakes (§3.1.1.1), the negotiation and hello timers (§3.3.2.1, §3.1.2.3), PPP's
//! lifetime and the close bookkeeping.

use std::time::Instant;

use sstp_ppp::{Frame, FrameCompression, Protocol, decode_frame, encode_frame_compressed};

use crate::{
    attribute::{AttributeId, Status, StatusInfo},
    config::Timers,
    control::ControlMessage,
    deframer::Deframer,
    event::{CloseReason, SendError},
    ip_queue::IpQueue,
    packet,
    profile::{Recorded, RecordedPacket},
};

/// The common call teardown states of §3.1.1.1, each with its timer's deadline. The
/// "in progress" states of the spec are transient and never observable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::enum_variant_names,
    reason = "the spec's own state names (§3.1.1.1)"
)]
pub(crate) enum Teardown {
    /// We sent CALL_ABORT and wait for the peer's (TIMER_VAL_ABORT_STATE_TIMER_1).
    AbortPending(Instant),
    /// Both sides sent CALL_ABORT; linger (TIMER_VAL_ABORT_STATE_TIMER_2).
    AbortTimeoutPending(Instant),
    /// We sent CALL_DISCONNECT and wait for the ACK (TIMER_VAL_DISCONNECT_STATE_TIMER_1).
    DisconnectAckPending(Instant),
    /// We acknowledged the peer's CALL_DISCONNECT; linger (TIMER_VAL_DISCONNECT_STATE_TIMER_2).
    DisconnectTimeoutPending(Instant),
}

impl Teardown {
    /// The spec's name of this state's timer, for logs.
    fn timer_name(self) -> &'static str {
        match self {
            Self::AbortPending(_) => "abort-1",
            Self::AbortTimeoutPending(_) => "abort-2",
            Self::DisconnectAckPending(_) => "disconnect-1",
            Self::DisconnectTimeoutPending(_) => "disconnect-2",
        }
    }

    fn deadline(self) -> Instant {
        match self {
            Self::AbortPending(t)
            | Self::AbortTimeoutPending(t)
            | Self::DisconnectAckPending(t)
            | Self::DisconnectTimeoutPending(t) => t,
        }
    }
}

/// Every timer of a connection, one entry each; the next due is the minimum of their deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// From accept (or CALL_CONNECT_REQUEST) to CALL_CONNECTED (§3.3.2.1).
    Negotiation,
    /// The running abort or disconnect handshake's (§3.1.1.1).
    Teardown(Teardown),
    /// The keepalive (§3.1.2.3).
    Hello,
    /// The PPP automaton's next (LCP, authentication, NCP retransmissions).
    Ppp,
}

impl Timer {
    /// How logs name this timer.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Negotiation => "negotiation",
            Self::Teardown(teardown) => teardown.timer_name(),
            Self::Hello => "hello",
            Self::Ppp => "ppp",
        }
    }
}

/// Where PPP is in its life: started by CALL_CONNECT_ACK, stopped once the call leaves the
/// active state. Its NCPs say which IP versions may carry data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PppState {
    Idle,
    Running { ipv4: bool, ipv6: bool },
    Stopped,
}

#[derive(Clone, Copy, Debug)]
struct Hello {
    deadline: Instant,
    echo_sent: bool,
}

/// Shared connection machinery. [`crate::Connection`] checks [`CommonState::take_closed`]
/// after every input to report the single `Closed` event.
#[derive(Debug)]
pub struct CommonState {
    pub(crate) timers: Timers,
    pub(crate) deframer: Deframer,
    /// Bytes ready for the transport.
    pub(crate) tx: Vec<u8>,
    /// IP packets from the peer, ready for the owner.
    pub(crate) ip_rx: IpQueue,
    pub(crate) teardown: Option<Teardown>,
    /// What was sent and received, when the owner keeps a transcript (the client in tests).
    pub(crate) recorded: Option<Vec<Recorded>>,
    /// The negotiation timer (§3.3.2.1), running until CALL_CONNECTED.
    negotiation: Option<Instant>,
    hello: Option<Hello>,
    ppp: PppState,
    reason: Option<CloseReason>,
    closed: bool,
    closed_reported: bool,
}

impl CommonState {
    /// A connection opened at `now`: the negotiation timer starts (§3.3.2.1; the client's
    /// 60 s wait for the HTTP response, §4.1, is the same timer).
    pub(crate) fn new(timers: Timers, now: Instant) -> Self {
        Self {
            negotiation: Some(now + timers.negotiation),
            timers,
            deframer: Deframer::new(),
            tx: Vec::new(),
            ip_rx: IpQueue::default(),
            teardown: None,
            recorded: None,
            hello: None,
            ppp: PppState::Idle,
            reason: None,
            closed: false,
            closed_reported: false,
        }
    }

    /// Neither closed nor in an abort/disconnect handshake.
    pub(crate) fn is_active(&self) -> bool {
        !self.closed && self.teardown.is_none()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn send(&mut self, message: &ControlMessage) {
        tracing::trace!(message = ?message.message_type(), "sstp send");
        self.record(false, || RecordedPacket::Control(message.clone()));
        message.encode(&mut self.tx);
    }

    /// Wraps one PPP frame in a data packet.
    pub(crate) fn send_ppp(&mut self, frame: &[u8]) {
        self.record_ppp(false, frame);
        if packet::encode_data(frame, &mut self.tx).is_err() {
            tracing::debug!(len = frame.len(), "PPP frame too large for SSTP dropped");
        }
    }

    /// Adds to the transcript, if one is kept.
    pub(crate) fn record(&mut self, from_peer: bool, packet: impl FnOnce() -> RecordedPacket) {
        if let Some(recorded) = &mut self.recorded {
            recorded.push(Recorded {
                from_server: from_peer,
                packet: packet(),
            });
        }
    }

    /// Adds a PPP control frame to the transcript, if one is kept.
    pub(crate) fn record_ppp(&mut self, from_peer: bool, frame: &[u8]) {
        if self.recorded.is_none() {
            return;
        }
        if let Ok(decoded) = decode_frame(frame)
            && !decoded.protocol.is_network_data()
        {
            let (protocol, information) = (decoded.protocol, decoded.information.to_vec());
            self.record(from_peer, || RecordedPacket::Ppp {
                protocol,
                information,
                frame: frame.to_vec(),
            });
        }
    }

    /// Remembers why the connection ends; the first cause wins.
    pub(crate) fn note(&mut self, reason: CloseReason) {
        self.reason.get_or_insert(reason);
    }

    /// The abort procedure (§3.1.5.1): send CALL_ABORT and wait for the peer's.
    pub(crate) fn abort(&mut self, now: Instant, status: StatusInfo, reason: CloseReason) {
        if !self.is_active() {
            return;
        }
        tracing::debug!(reason = reason.metric_label(), ?status, "aborting call");
        self.note(reason);
        self.send(&ControlMessage::CallAbort(Some(status)));
        self.teardown = Some(Teardown::AbortPending(now + self.timers.abort_1));
        self.hello = None;
    }

    /// Aborts because `message` is not acceptable in the current state.
    pub(crate) fn abort_unexpected(&mut self, now: Instant, message: &ControlMessage) {
        let status = StatusInfo::new(AttributeId::NO_ERROR, Status::UNACCEPTED_FRAME_RECEIVED);
        self.abort(
            now,
            status,
            CloseReason::UnexpectedMessage(message.message_type()),
        );
    }

    /// The disconnect procedure (§3.1.1.1.1): send CALL_DISCONNECT and wait for the ACK.
    pub(crate) fn disconnect(&mut self, now: Instant, reason: CloseReason) {
        if !self.is_active() {
            return;
        }
        tracing::debug!(reason = reason.metric_label(), "disconnecting call");
        self.note(reason);
        self.send(&ControlMessage::CallDisconnect(
            Some(StatusInfo::no_error()),
        ));
        self.teardown = Some(Teardown::DisconnectAckPending(
            now + self.timers.disconnect_1,
        ));
        self.hello = None;
    }

    /// Ends the connection at once, without sending anything more.
    pub(crate) fn close_now(&mut self, reason: CloseReason) {
        self.note(reason);
        self.closed = true;
        self.teardown = None;
        self.hello = None;
        self.ip_rx.clear();
    }

    /// The close reason, exactly once, after the connection closed.
    pub(crate) fn take_closed(&mut self) -> Option<CloseReason> {
        if !self.closed || self.closed_reported {
            return None;
        }
        self.closed_reported = true;
        Some(self.reason.take().unwrap_or(CloseReason::TransportClosed))
    }

    /// A CALL_CONNECT_REQUEST was sent or received: negotiation starts over.
    pub(crate) fn restart_negotiation(&mut self, now: Instant) {
        self.negotiation = Some(now + self.timers.negotiation);
    }

    /// Takes the negotiation timer when it has run out at `now`.
    pub(crate) fn negotiation_expired(&mut self, now: Instant) -> bool {
        self.negotiation.take_if(|at| now >= *at).is_some()
    }

    /// The call is connected: negotiation is over and the hello timer starts.
    pub(crate) fn call_connected(&mut self, now: Instant) {
        self.negotiation = None;
        self.hello = Some(Hello {
            deadline: now + self.timers.hello,
            echo_sent: false,
        });
    }

    /// Any packet from the peer restarts the hello timer (§3.1.2.3).
    pub(crate) fn packet_received(&mut self, now: Instant) {
        if let Some(hello) = &mut self.hello {
            hello.deadline = now + self.timers.hello;
            hello.echo_sent = false;
        }
    }

    /// Handles the messages whose processing is the same for client and server: the abort and
    /// disconnect handshakes, echo, and ignoring everything during a teardown. Returns false
    /// when the message is left to the owner's establishment logic.
    pub(crate) fn handle_common(
        &mut self,
        now: Instant,
        message: &ControlMessage,
        connected: bool,
    ) -> bool {
        match (message, self.teardown) {
            (ControlMessage::CallAbort(_), Some(Teardown::AbortPending(_))) => {
                self.teardown = Some(Teardown::AbortTimeoutPending(now + self.timers.abort_2));
            }
            (ControlMessage::CallAbort(info), None | Some(Teardown::DisconnectAckPending(_))) => {
                self.note(CloseReason::PeerAborted(info.clone()));
                self.send(&ControlMessage::CallAbort(Some(StatusInfo::no_error())));
                self.teardown = Some(Teardown::AbortTimeoutPending(now + self.timers.abort_2));
                self.hello = None;
            }
            (ControlMessage::CallDisconnect(_), None | Some(Teardown::DisconnectAckPending(_))) => {
                self.note(CloseReason::PeerDisconnected);
                self.send(&ControlMessage::CallDisconnectAck);
                let until = now + self.timers.disconnect_2;
                self.teardown = Some(Teardown::DisconnectTimeoutPending(until));
                self.hello = None;
            }
            (ControlMessage::CallDisconnectAck, Some(Teardown::DisconnectAckPending(_))) => {
                self.close_now(CloseReason::LocalDisconnect);
            }
            (ControlMessage::CallDisconnectAck, None) => self.abort_unexpected(now, message),
            (ControlMessage::EchoRequest, None) if connected => {
                self.send(&ControlMessage::EchoResponse);
            }
            (ControlMessage::EchoResponse, None) if connected => {}
            (ControlMessage::EchoRequest | ControlMessage::EchoResponse, None) => {
                self.abort_unexpected(now, message);
            }
            (_, Some(_)) => {
                tracing::trace!(message = ?message.message_type(), "ignored in teardown")
            }
            (_, None) => return false,
        }
        true
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(teardown) = self.teardown {
            if now >= teardown.deadline() {
                // Every teardown path noted its reason when it started.
                self.close_now(CloseReason::TransportClosed);
            }
            return;
        }
        let Some(hello) = &mut self.hello else {
            return;
        };
        if now < hello.deadline {
            return;
        }
        if hello.echo_sent {
            // §3.1.2.3: no answer within another interval: drop without CALL_ABORT.
            self.close_now(CloseReason::HelloTimeout);
        } else {
            hello.echo_sent = true;
            hello.deadline = now + self.timers.hello;
            self.send(&ControlMessage::EchoRequest);
        }
    }

    /// The timer due first, of ours and PPP's (`ppp`, counted only while PPP runs).
    pub(crate) fn next_timer(&self, ppp: Option<Instant>) -> Option<(Timer, Instant)> {
        if self.closed {
            return None;
        }
        let active = self.is_active();
        [
            self.negotiation
                .filter(|_| active)
                .map(|at| (Timer::Negotiation, at)),
            self.teardown.map(|t| (Timer::Teardown(t), t.deadline())),
            self.hello.map(|h| (Timer::Hello, h.deadline)),
            ppp.filter(|_| self.ppp_running())
                .map(|at| (Timer::Ppp, at)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|&(_, at)| at)
    }

    /// PPP starts (CALL_CONNECT_ACK): the caller tells the automaton its lower layer is up.
    pub(crate) fn start_ppp(&mut self) {
        if self.ppp == PppState::Idle {
            self.ppp = PppState::Running {
                ipv4: false,
                ipv6: false,
            };
        }
    }

    /// Whether PPP runs: started, and the call neither closed nor tearing down.
    pub(crate) fn ppp_running(&self) -> bool {
        matches!(self.ppp, PppState::Running { .. }) && self.is_active()
    }

    /// True once, when the call has left the active state with PPP running: the caller then
    /// tells the automaton its lower layer is gone.
    pub(crate) fn ppp_stop(&mut self) -> bool {
        let stop = matches!(self.ppp, PppState::Running { .. }) && !self.is_active();
        if stop {
            self.ppp = PppState::Stopped;
        }
        stop
    }

    /// PPP's NCP for `protocol` (IPv4 or IPv6) is up.
    pub(crate) fn ip_up(&mut self, protocol: Protocol) {
        if let PppState::Running { ipv4, ipv6 } = &mut self.ppp {
            *ipv4 |= protocol == Protocol::IPV4;
            *ipv6 |= protocol == Protocol::IPV6;
        }
    }

    /// Whether `protocol` may carry data: the call is `connected` and its NCP is up.
    fn ip_allowed(&self, connected: bool, protocol: Protocol) -> bool {
        let PppState::Running { ipv4, ipv6 } = self.ppp else {
            return false;
        };
        connected && ((protocol == Protocol::IPV4 && ipv4) || (protocol == Protocol::IPV6 && ipv6))
    }

    /// Appends everything ready for the transport to `out`. When `out` is empty the buffers
    /// are swapped, so the common case copies nothing.
    pub(crate) fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.tx);
        } else {
            out.append(&mut self.tx);
        }
    }
}

impl CommonState {
    /// Sorts the payload of a data packet: IP frames are queued for the owner when the call
    /// is `connected` and their NCP is up, and dropped otherwise (§3.3.5.2.3: no data before
    /// the call is connected); PPP control frames are returned for the PPP layer.
    pub(crate) fn route_data<'a>(
        &mut self,
        payload: &'a [u8],
        connected: bool,
    ) -> Option<Frame<'a>> {
        let Ok(frame) = decode_frame(payload) else {
            tracing::trace!(len = payload.len(), "undecodable PPP frame dropped");
            return None;
        };
        if !frame.protocol.is_network_data() {
            self.record_ppp(true, payload);
            return Some(frame);
        }
        if self.ip_allowed(connected, frame.protocol) {
            self.ip_rx.push(frame.information);
        } else {
            tracing::trace!(protocol = %frame.protocol, "data frame outside a connected call dropped");
        }
        None
    }

    /// Queues one IP packet as PPP-in-SSTP, its PPP header compressed as `compression` says,
    /// when the call is `connected` and the packet's NCP is up.
    pub(crate) fn send_ip(
        &mut self,
        packet: &[u8],
        connected: bool,
        compression: FrameCompression,
    ) -> Result<(), SendError> {
        if !self.is_active() {
            return Err(SendError::Closed);
        }
        let protocol = match packet.first().map(|b| b >> 4) {
            Some(4) => Protocol::IPV4,
            Some(6) => Protocol::IPV6,
            _ => return Err(SendError::NotIp),
        };
        if !self.ip_allowed(connected, protocol) {
            return Err(SendError::NotConnected);
        }
        // IPv4 and IPv6 are below 0x0100: PFC makes their protocol field one octet.
        let header_len = PPP_HEADER_LEN
            - if compression.address_control { 2 } else { 0 }
            - usize::from(compression.protocol_field);
        packet::write_data_header(header_len + packet.len(), &mut self.tx)
            .map_err(|_| SendError::TooLarge(packet.len()))?;
        encode_frame_compressed(protocol, packet, compression, &mut self.tx);
        Ok(())
    }
}

/// The uncompressed PPP header we always send: `FF 03` + 2-byte protocol (RFC 1662 §3.1).
const PPP_HEADER_LEN: usize = 4;
