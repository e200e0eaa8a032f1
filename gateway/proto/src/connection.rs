//! The one driver of an SSTP connection, for both sides (rustls's `ConnectionCommon<Side>`,
//! quinn's `ConnectionSide`): bytes and timers in, SSTP framing, the messages both sides treat
//! alike, PPP's lifetime, the data path and the single `Closed` event. What differs per side is
//! a [`Side`]: the HTTP exchange, call establishment and what PPP's events mean.

use std::{collections::VecDeque, fmt, time::Instant};

use sstp_ppp::{FrameCompression, Protocol};

use crate::{
    attribute::{AttributeId, Status, StatusInfo},
    common::CommonState,
    control::ControlMessage,
    deframer::Frame,
    event::{CloseReason, SendError},
    packet::{DecodeError, HEADER_LEN},
};

/// One SSTP connection over a TLS stream, of either side: [`crate::ServerConnection`] or
/// [`crate::ClientConnection`]. The crate docs give the I/O contract and call order.
pub struct Connection<S: Side> {
    pub(crate) common: CommonState,
    pub(crate) side: S,
}

/// What one side of the connection decides for itself. Not implementable outside this crate:
/// its methods take the crate's private [`CommonState`].
pub trait Side: Sized {
    /// What [`Connection::poll_event`] yields.
    type Event;
    /// The side's PPP automaton.
    type Ppp: PppPeer;
    /// What our LCP Terminate-Request says when the caller disconnects.
    const DISCONNECT_TEXT: &'static str;

    /// The side's PPP automaton.
    fn ppp(&mut self) -> &mut Self::Ppp;
    /// When the side's PPP automaton next needs `handle_timeout`.
    fn ppp_timeout(&self) -> Option<Instant>;
    /// The events queued for the caller.
    fn events(&mut self) -> &mut VecDeque<Self::Event>;
    /// The final event.
    fn closed(reason: CloseReason) -> Self::Event;
    /// Whether the HTTP exchange is still running.
    fn in_preamble(&self) -> bool;
    /// Whether the call is connected (crypto binding sent or verified).
    fn is_connected(&self) -> bool;
    /// Feeds bytes to the HTTP exchange while [`Side::in_preamble`] says it runs.
    fn preamble(&mut self, common: &mut CommonState, now: Instant, bytes: &[u8]) -> Preamble;
    /// A control message the common handshakes left to call establishment. `packet` is the
    /// whole packet, header included (crypto binding covers it).
    fn on_control(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        packet: &[u8],
        message: ControlMessage,
    );
    /// A control packet that does not decode, while the call is active. Both sides abort with
    /// INVALID_FRAME_RECEIVED unless their state names another answer.
    fn on_invalid(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        body: &[u8],
        err: DecodeError,
    ) {
        let _ = body;
        abort_invalid(common, now, err);
    }
    /// Sends one frame PPP produced while it runs.
    fn transmit_ppp(&mut self, common: &mut CommonState, now: Instant, frame: &[u8]) {
        let _ = now;
        common.send_ppp(frame);
    }
    /// Acts on one PPP event while the call is active.
    fn on_ppp_event(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        event: <Self::Ppp as PppPeer>::Event,
    );
    /// The PPP header compression of the IP frames we send.
    fn compression(&self) -> FrameCompression {
        FrameCompression::default()
    }
}

/// What the HTTP exchange made of the bytes fed to it.
#[derive(Debug)]
pub enum Preamble {
    /// More bytes are needed (or the exchange failed and the connection is closed).
    Waiting,
    /// The exchange is over; these bytes after it are SSTP.
    Done(Vec<u8>),
}

/// The PPP automaton a side runs: `sstp_ppp::Server` or `sstp_ppp::Client`.
pub trait PppPeer {
    /// Its events.
    type Event;
    /// The transport is up.
    fn lower_up(&mut self, now: Instant);
    /// The transport is gone.
    fn lower_down(&mut self);
    /// One received control frame.
    fn handle_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]);
    /// Fires the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The next frame to send.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// Terminates the link.
    fn close(&mut self, now: Instant, reason: &str);
}

/// Both PPP automata have the same call surface; this writes the forwarding once.
macro_rules! ppp_peer {
    ($($ty:ty => $event:ty),*) => {$(
        impl PppPeer for $ty {
            type Event = $event;
            fn lower_up(&mut self, now: Instant) { <$ty>::lower_up(self, now) }
            fn lower_down(&mut self) { <$ty>::lower_down(self) }
            fn handle_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
                <$ty>::handle_frame(self, now, protocol, information)
            }
            fn handle_timeout(&mut self, now: Instant) { <$ty>::handle_timeout(self, now) }
            fn poll_transmit(&mut self) -> Option<Vec<u8>> { <$ty>::poll_transmit(self) }
            fn poll_event(&mut self) -> Option<$event> { <$ty>::poll_event(self) }
            fn close(&mut self, now: Instant, reason: &str) { <$ty>::close(self, now, reason) }
        }
    )*};
}
ppp_peer!(sstp_ppp::Server => sstp_ppp::ServerEvent, sstp_ppp::Client => sstp_ppp::ClientEvent);

impl<S: Side> Connection<S> {
    pub(crate) fn from_parts(common: CommonState, side: S) -> Self {
        Self { common, side }
    }

    /// Feeds bytes decrypted from the TLS stream.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.common.is_closed() {
            return;
        }
        if self.side.in_preamble() {
            if let Preamble::Done(rest) = self.side.preamble(&mut self.common, now, bytes) {
                self.feed_sstp(now, &rest);
            }
        } else {
            self.feed_sstp(now, bytes);
        }
        self.after_input();
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.common.is_closed() {
            return;
        }
        if let Some((timer, _)) = self
            .common
            .next_timer(self.side.ppp_timeout())
            .filter(|&(_, at)| at <= now)
        {
            tracing::trace!(timer = timer.name(), "timer due");
        }
        if self.common.negotiation_expired(now) {
            if self.side.in_preamble() {
                // No SSTP yet, so no CALL_ABORT: just drop the connection.
                self.common.close_now(CloseReason::NegotiationTimeout);
            } else {
                let status = StatusInfo::new(AttributeId::NO_ERROR, Status::NEGOTIATION_TIMEOUT);
                self.common
                    .abort(now, status, CloseReason::NegotiationTimeout);
            }
        }
        self.common.handle_timeout(now);
        if self.common.ppp_running() {
            self.side.ppp().handle_timeout(now);
            drain_ppp(&mut self.side, &mut self.common, now);
        }
        self.after_input();
    }

    /// When [`Connection::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.common
            .next_timer(self.side.ppp_timeout())
            .map(|(_, at)| at)
    }

    /// Appends every byte ready for the TLS stream to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        self.common.poll_transmit(out);
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<S::Event> {
        self.side.events().pop_front()
    }

    /// Queues one IP packet (IPv4 or IPv6) for the peer.
    ///
    /// # Errors
    /// [`SendError`] when the call or that IP version is not up, or the packet is too large.
    pub fn send_ip(&mut self, packet: &[u8]) -> Result<(), SendError> {
        let connected = self.side.is_connected();
        let compression = self.side.compression();
        self.common.send_ip(packet, connected, compression)
    }

    /// Ends the call gracefully (e.g. on SIGTERM): LCP Terminate first if PPP is up, then
    /// CALL_DISCONNECT, then the `Closed` event once acknowledged or timed out.
    pub fn disconnect(&mut self, now: Instant) {
        if !self.common.is_active() {
            return;
        }
        self.common.note(CloseReason::LocalDisconnect);
        if self.side.in_preamble() {
            self.common.close_now(CloseReason::LocalDisconnect);
        } else if self.common.ppp_running() {
            self.side.ppp().close(now, S::DISCONNECT_TEXT);
            drain_ppp(&mut self.side, &mut self.common, now);
        } else {
            self.common.disconnect(now, CloseReason::LocalDisconnect);
        }
        self.after_input();
    }

    /// The TLS stream is gone: clean up at once without sending anything (§3.1.7.2).
    pub fn transport_closed(&mut self) {
        self.common.close_now(CloseReason::TransportClosed);
        self.after_input();
    }

    /// Whether the connection is over. Drain [`Connection::poll_transmit`] once more (an HTTP
    /// error or the last control message may be pending), then close the transport.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.common.is_closed()
    }

    fn feed_sstp(&mut self, now: Instant, bytes: &[u8]) {
        let mut deframer = std::mem::take(&mut self.common.deframer);
        let result = deframer.feed(bytes, |frame| self.handle_packet(now, frame));
        self.common.deframer = deframer;
        if let Err(err) = result {
            tracing::debug!(%err, "SSTP framing failed; dropping the connection");
            self.common.close_now(CloseReason::Framing(err));
        }
    }

    fn handle_packet(&mut self, now: Instant, frame: Frame<'_>) {
        if self.common.is_closed() {
            return;
        }
        self.common.packet_received(now);
        if frame.header.control {
            self.handle_control(now, frame.bytes);
        } else if self.common.is_active() {
            self.handle_data(now, frame.body());
        }
    }

    fn handle_control(&mut self, now: Instant, packet: &[u8]) {
        let body = packet.get(HEADER_LEN..).unwrap_or_default();
        let message = match ControlMessage::decode(body) {
            Ok(message) => message,
            // Everything is ignored during a teardown, even garbage (§3.1.2.1).
            Err(_) if !self.common.is_active() => return,
            Err(err) => {
                tracing::debug!(%err, "invalid control message");
                return self.side.on_invalid(&mut self.common, now, body, err);
            }
        };
        tracing::trace!(message = ?message.message_type(), "sstp receive");
        self.common
            .record(true, || crate::RecordedPacket::Control(message.clone()));
        if self
            .common
            .handle_common(now, &message, self.side.is_connected())
        {
            return;
        }
        self.side.on_control(&mut self.common, now, packet, message);
    }

    fn handle_data(&mut self, now: Instant, payload: &[u8]) {
        let connected = self.side.is_connected();
        let Some(frame) = self.common.route_data(payload, connected) else {
            return;
        };
        // PPP runs from CALL_CONNECT_ACK on; control frames before it are dropped.
        if self.common.ppp_running() {
            self.side
                .ppp()
                .handle_frame(now, frame.protocol, frame.information);
            drain_ppp(&mut self.side, &mut self.common, now);
        }
    }

    /// Once the call left the active state, PPP is told the link is gone (the server gives the
    /// address back), and the single Closed event is queued when the connection is over.
    fn after_input(&mut self) {
        if self.common.ppp_stop() {
            let ppp = self.side.ppp();
            ppp.lower_down();
            while ppp.poll_event().is_some() {}
        }
        if let Some(reason) = self.common.take_closed() {
            tracing::debug!(reason = reason.metric_label(), "connection closed");
            self.side.events().push_back(S::closed(reason));
        }
    }
}

/// Aborts for a control message that does not decode, with INVALID_FRAME_RECEIVED.
pub(crate) fn abort_invalid(common: &mut CommonState, now: Instant, err: DecodeError) {
    let status = StatusInfo::new(AttributeId::NO_ERROR, Status::INVALID_FRAME_RECEIVED);
    common.abort(now, status, CloseReason::InvalidMessage(err));
}

/// PPP starts (CALL_CONNECT_ACK): its LCP sends the first Configure-Request.
pub(crate) fn start_ppp<S: Side>(side: &mut S, common: &mut CommonState, now: Instant) {
    common.start_ppp();
    side.ppp().lower_up(now);
    drain_ppp(side, common, now);
}

/// Sends PPP's frames and acts on its events, until both queues are empty.
pub(crate) fn drain_ppp<S: Side>(side: &mut S, common: &mut CommonState, now: Instant) {
    loop {
        while let Some(frame) = side.ppp().poll_transmit() {
            if common.ppp_running() {
                side.transmit_ppp(common, now, &frame);
            }
        }
        let Some(event) = side.ppp().poll_event() else {
            return;
        };
        if common.is_active() {
            side.on_ppp_event(common, now, event);
        }
    }
}

impl<S: Side + fmt::Debug> fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("side", &self.side)
            .field("teardown", &self.common.teardown)
            .field("closed", &self.common.is_closed())
            .finish_non_exhaustive()
    }
}
