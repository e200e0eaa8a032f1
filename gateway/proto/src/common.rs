//! What server and client connections share: the output buffer, the abort and disconnect
//! handshakes (§3.1.1.1), the hello timer (§3.1.2.3) and the close bookkeeping.

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
    fn deadline(self) -> Instant {
        match self {
            Self::AbortPending(t)
            | Self::AbortTimeoutPending(t)
            | Self::DisconnectAckPending(t)
            | Self::DisconnectTimeoutPending(t) => t,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Hello {
    deadline: Instant,
    echo_sent: bool,
}

/// Shared connection machinery. The owner (server or client) checks [`CommonState::take_closed`]
/// after every input to report the single `Closed` event.
#[derive(Debug)]
pub(crate) struct CommonState {
    pub(crate) timers: Timers,
    pub(crate) deframer: Deframer,
    /// Bytes ready for the transport.
    pub(crate) tx: Vec<u8>,
    /// IP packets from the peer, ready for the owner.
    pub(crate) ip_rx: IpQueue,
    pub(crate) teardown: Option<Teardown>,
    /// What was sent and received, when the owner keeps a transcript (the client in tests).
    pub(crate) recorded: Option<Vec<Recorded>>,
    hello: Option<Hello>,
    reason: Option<CloseReason>,
    closed: bool,
    closed_reported: bool,
}

impl CommonState {
    pub(crate) fn new(timers: Timers) -> Self {
        Self {
            timers,
            deframer: Deframer::new(),
            tx: Vec::new(),
            ip_rx: IpQueue::default(),
            teardown: None,
            recorded: None,
            hello: None,
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

    /// The call is connected: start the hello timer.
    pub(crate) fn start_hello(&mut self, now: Instant) {
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

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.teardown
            .map(Teardown::deadline)
            .or(self.hello.map(|h| h.deadline))
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
    /// Sorts the payload of a data packet: IP frames are queued for the owner when `ip_up`
    /// allows their protocol and dropped otherwise (§3.3.5.2.3: no data before the call is
    /// connected); PPP control frames are returned for the PPP layer.
    pub(crate) fn route_data<'a>(
        &mut self,
        payload: &'a [u8],
        ip_up: impl Fn(Protocol) -> bool,
    ) -> Option<Frame<'a>> {
        let Ok(frame) = decode_frame(payload) else {
            tracing::trace!(len = payload.len(), "undecodable PPP frame dropped");
            return None;
        };
        if !frame.protocol.is_network_data() {
            self.record_ppp(true, payload);
            return Some(frame);
        }
        if ip_up(frame.protocol) {
            self.ip_rx.push(frame.information);
        } else {
            tracing::trace!(protocol = %frame.protocol, "data frame outside a connected call dropped");
        }
        None
    }

    /// Queues one IP packet as PPP-in-SSTP, its PPP header compressed as `compression` says.
    /// `up` says whether the packet's PPP protocol may carry data right now.
    pub(crate) fn send_ip(
        &mut self,
        packet: &[u8],
        up: impl Fn(Protocol) -> bool,
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
        if !up(protocol) {
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
