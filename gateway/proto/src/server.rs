//! The server side of one SSTP connection: HTTP preamble, SSTP call establishment with crypto
//! binding (§3.3), and the PPP server, combined.

use std::{collections::VecDeque, sync::Arc, time::Instant};

use rand_core::Rng;
use sstp_ppp::{AddressAllocator, Protocol, UserLookup};

use crate::{
    attribute::{
        AttributeId, CryptoBindingRequest, EncapsulatedProtocol, NONCE_LEN, Status, StatusInfo,
    },
    common::CommonState,
    config::ServerConfig,
    control::ControlMessage,
    crypto_binding::{self, CALL_CONNECTED_LEN, CertHashes},
    deframer::Frame,
    event::{CloseReason, SendError, ServerEvent},
    http::{RequestParser, write_ok_response},
    ip_policy::{self, IpPolicyCounts, Verdict},
    packet::{DecodeError, HEADER_LEN, MessageType},
};

/// Call establishment states, named by what they expect next (§3.3.1.1.1).
#[derive(Debug)]
enum State {
    /// Server_Call_Disconnected with the HTTPS connection accepted: the HTTP request.
    ExpectHttpRequest(RequestParser),
    /// Server_Connect_Request_Pending.
    ExpectConnectRequest {
        /// NAKs sent so far.
        naks: u8,
    },
    /// Server_Call_Connected_Pending. A CALL_CONNECTED that arrives before PPP authentication
    /// finished (the Linux sstp-client sends it right after its CHAP Response) waits here.
    ExpectCallConnected {
        early: Option<Box<[u8; CALL_CONNECTED_LEN]>>,
    },
    /// Server_Call_Connected.
    Connected,
}

/// One server-side SSTP connection over an accepted TLS stream. See the crate docs for the
/// I/O contract and call order.
pub struct ServerConnection {
    config: Arc<ServerConfig>,
    cert_hashes: CertHashes,
    common: CommonState,
    ppp: sstp_ppp::Server,
    state: State,
    nonce: [u8; NONCE_LEN],
    /// The negotiation timer (§3.3.2.1), running from accept to CALL_CONNECTED.
    negotiation: Option<Instant>,
    /// The server HLAK, once PPP authentication succeeded.
    hlak: Option<[u8; 32]>,
    ppp_started: bool,
    ppp_down: bool,
    ipv4_up: bool,
    ipv6_up: bool,
    /// Answer a complete HTTP request with 503 instead of 200 (the caller has no room).
    busy: bool,
    events: VecDeque<ServerEvent>,
    /// What the IP policy kept in the tunnel since the caller last asked.
    ip_policy: IpPolicyCounts,
}

impl ServerConnection {
    /// A connection accepted at `now`, serving the certificate whose hashes are `cert_hashes`.
    /// `rng` must be cryptographically secure: it makes the crypto binding nonce and PPP's
    /// challenges.
    #[must_use]
    pub fn new(
        config: Arc<ServerConfig>,
        cert_hashes: CertHashes,
        users: Arc<dyn UserLookup>,
        allocator: Box<dyn AddressAllocator>,
        mut rng: Box<dyn Rng + Send>,
        now: Instant,
    ) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ppp = sstp_ppp::Server::new(config.ppp.clone(), users, allocator, rng);
        Self {
            common: CommonState::new(config.timers),
            negotiation: Some(now + config.timers.negotiation),
            config,
            cert_hashes,
            ppp,
            state: State::ExpectHttpRequest(RequestParser::new()),
            nonce,
            hlak: None,
            ppp_started: false,
            ppp_down: false,
            ipv4_up: false,
            ipv6_up: false,
            busy: false,
            events: VecDeque::new(),
            ip_policy: IpPolicyCounts::default(),
        }
    }

    /// Whether the caller has room for another session. While it has none, a complete HTTP
    /// request is answered `503 Service Unavailable` with `Retry-After` and the connection
    /// closes (`CloseReason::HttpRejected(Rejection::Busy)`): the cheapest clear refusal, before
    /// any PPP state exists. Has no effect once the request was accepted.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// Feeds bytes decrypted from the TLS stream.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.common.is_closed() {
            return;
        }
        if let State::ExpectHttpRequest(parser) = &mut self.state {
            match parser.feed(bytes) {
                Ok(None) => {}
                Ok(Some(_)) if self.busy => {
                    let rejection = crate::http::Rejection::Busy;
                    tracing::debug!(%rejection, "HTTP request refused");
                    rejection.write_response(&mut self.common.tx);
                    self.common.close_now(CloseReason::HttpRejected(rejection));
                }
                Ok(Some(request)) => {
                    write_ok_response(&mut self.common.tx);
                    self.events.push_back(ServerEvent::HttpAccepted {
                        host: request.host,
                        correlation_id: request.correlation_id,
                    });
                    self.state = State::ExpectConnectRequest { naks: 0 };
                    self.feed_sstp(now, &request.rest);
                }
                Err(rejection) => {
                    tracing::debug!(%rejection, "HTTP request refused");
                    rejection.write_response(&mut self.common.tx);
                    self.common.close_now(CloseReason::HttpRejected(rejection));
                }
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
        if self.negotiation.is_some_and(|t| now >= t) {
            self.negotiation = None;
            if matches!(self.state, State::ExpectHttpRequest(_)) {
                // No SSTP yet, so no CALL_ABORT: just drop the connection.
                self.common.close_now(CloseReason::NegotiationTimeout);
            } else {
                let status = StatusInfo::new(AttributeId::NO_ERROR, Status::NEGOTIATION_TIMEOUT);
                self.common
                    .abort(now, status, CloseReason::NegotiationTimeout);
            }
        }
        self.common.handle_timeout(now);
        if self.ppp_running() {
            self.ppp.handle_timeout(now);
            self.drain_ppp(now);
        }
        self.after_input();
    }

    /// When [`ServerConnection::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.common.is_closed() {
            return None;
        }
        let negotiation = self.negotiation.filter(|_| self.common.is_active());
        let ppp = self.ppp.poll_timeout().filter(|_| self.ppp_running());
        [negotiation, self.common.poll_timeout(), ppp]
            .into_iter()
            .flatten()
            .min()
    }

    /// Appends every byte ready for the TLS stream to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        self.common.poll_transmit(out);
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next IP packet from the peer that may leave the tunnel, if any (IPv4 or IPv6,
    /// without PPP header). The [`crate::ip_policy`] has been applied: IPv4 from any source
    /// but the peer's own address is dropped, and a DHCPINFORM to this server is answered into
    /// the tunnel when [`ServerConfig::dhcp_inform`] says so; both are counted in
    /// [`ServerConnection::take_ip_policy`].
    #[must_use]
    pub fn poll_ip(&mut self) -> Option<&[u8]> {
        let peer = self.ppp.peer_ipv4();
        loop {
            let packet = self.common.ip_rx.front()?;
            match ip_policy::judge(packet, peer, self.config.dhcp_inform.as_deref()) {
                Verdict::Pass => break,
                Verdict::ForeignSource => {
                    tracing::trace!(
                        len = packet.len(),
                        "packet with a foreign source address dropped"
                    );
                    self.ip_policy.foreign_source += 1;
                    let _ = self.common.ip_rx.pop();
                }
                Verdict::Answer(reply) => {
                    let _ = self.common.ip_rx.pop();
                    self.ip_policy.dhcp_informs_answered += 1;
                    // Only fails once the call is ending, when nobody needs the answer.
                    let _ = self.send_ip(&reply);
                }
            }
        }
        self.common.ip_rx.pop()
    }

    /// What the IP policy kept in the tunnel since the last call, and starts counting again.
    pub fn take_ip_policy(&mut self) -> IpPolicyCounts {
        std::mem::take(&mut self.ip_policy)
    }

    /// Queues one IP packet (IPv4 or IPv6) for the peer.
    ///
    /// # Errors
    /// [`SendError`] when the call or that IP version is not up, or the packet is too large.
    pub fn send_ip(&mut self, packet: &[u8]) -> Result<(), SendError> {
        let ip_up = self.ip_up();
        self.common
            .send_ip(packet, ip_up, sstp_ppp::FrameCompression::default())
    }

    /// Ends the call gracefully (e.g. on SIGTERM): LCP Terminate first if PPP is up, then
    /// CALL_DISCONNECT, then [`ServerEvent::Closed`] once acknowledged or timed out.
    pub fn disconnect(&mut self, now: Instant) {
        if !self.common.is_active() {
            return;
        }
        self.common.note(CloseReason::LocalDisconnect);
        match self.state {
            State::ExpectHttpRequest(_) => self.common.close_now(CloseReason::LocalDisconnect),
            _ if self.ppp_running() && !self.ppp_down => {
                self.ppp.close(now, "administrative disconnect");
                self.drain_ppp(now);
            }
            _ => self.common.disconnect(now, CloseReason::LocalDisconnect),
        }
        self.after_input();
    }

    /// The TLS stream is gone: clean up at once without sending anything (§3.1.7.2).
    pub fn transport_closed(&mut self) {
        self.common.close_now(CloseReason::TransportClosed);
        self.after_input();
    }

    /// Whether the connection is over. Drain [`ServerConnection::poll_transmit`] once more
    /// (an HTTP error or the last control message may be pending), then close the transport.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.common.is_closed()
    }

    /// The address PPP assigned to the peer, if any.
    #[must_use]
    pub fn peer_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.ppp.peer_ipv4()
    }

    fn ppp_running(&self) -> bool {
        self.ppp_started && self.common.is_active()
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

    fn handle_data(&mut self, now: Instant, payload: &[u8]) {
        let ip_up = self.ip_up();
        let Some(frame) = self.common.route_data(payload, ip_up) else {
            return;
        };
        if matches!(
            self.state,
            State::ExpectCallConnected { .. } | State::Connected
        ) {
            self.ppp
                .handle_frame(now, frame.protocol, frame.information);
            self.drain_ppp(now);
        }
    }

    /// Which IP protocols may carry data now: the call is connected and its NCP is up.
    fn ip_up(&self) -> impl Fn(Protocol) -> bool + use<> {
        let connected = matches!(self.state, State::Connected);
        let (v4, v6) = (self.ipv4_up, self.ipv6_up);
        move |p| connected && ((p == Protocol::IPV4 && v4) || (p == Protocol::IPV6 && v6))
    }

    fn handle_control(&mut self, now: Instant, packet: &[u8]) {
        let body = packet.get(HEADER_LEN..).unwrap_or_default();
        let message = match ControlMessage::decode(body) {
            Ok(message) => message,
            Err(err) => return self.handle_invalid(now, body, err),
        };
        tracing::trace!(message = ?message.message_type(), "sstp receive");
        let connected = matches!(self.state, State::Connected);
        if self.common.handle_common(now, &message, connected) {
            return;
        }
        match (&mut self.state, message) {
            (State::ExpectConnectRequest { .. }, ControlMessage::CallConnectRequest(protocol)) => {
                self.on_connect_request(now, protocol);
            }
            (State::ExpectCallConnected { early }, message @ ControlMessage::CallConnected(_)) => {
                let Ok(raw) = <[u8; CALL_CONNECTED_LEN]>::try_from(packet) else {
                    // A CALL_CONNECTED carrying an extra (no-error) STATUS_INFO.
                    return self.abort_call_connected_format(now, DecodeError::TrailingBytes);
                };
                match (self.hlak, early.is_some()) {
                    (Some(hlak), _) => self.verify_call_connected(now, &raw, &hlak),
                    (None, false) => {
                        tracing::debug!("CALL_CONNECTED before PPP authentication; buffered");
                        *early = Some(Box::new(raw));
                    }
                    // A second CALL_CONNECTED while the first still waits for the HLAK.
                    (None, true) => self.common.abort_unexpected(now, &message),
                }
            }
            (_, message) => self.common.abort_unexpected(now, &message),
        }
    }

    fn handle_invalid(&mut self, now: Instant, body: &[u8], err: DecodeError) {
        if !self.common.is_active() {
            return;
        }
        tracing::debug!(%err, "invalid control message");
        let message = body
            .first_chunk::<2>()
            .map(|t| MessageType(u16::from_be_bytes(*t)));
        match (&mut self.state, message) {
            (State::ExpectConnectRequest { .. }, Some(MessageType::CALL_CONNECT_REQUEST))
                if nak_status(&err).is_some() =>
            {
                self.nak(now, nak_status(&err).into_iter().collect());
            }
            (State::ExpectCallConnected { .. }, Some(MessageType::CALL_CONNECTED)) => {
                self.abort_call_connected_format(now, err);
            }
            _ => {
                let status = StatusInfo::new(AttributeId::NO_ERROR, Status::INVALID_FRAME_RECEIVED);
                self.common
                    .abort(now, status, CloseReason::InvalidMessage(err));
            }
        }
    }

    fn on_connect_request(&mut self, now: Instant, protocol: EncapsulatedProtocol) {
        if protocol != EncapsulatedProtocol::PPP {
            let info = StatusInfo {
                attribute: AttributeId::ENCAPSULATED_PROTOCOL_ID,
                status: Status::VALUE_NOT_SUPPORTED,
                value: protocol.0.to_be_bytes().to_vec(),
            };
            return self.nak(now, vec![info]);
        }
        self.common
            .send(&ControlMessage::CallConnectAck(CryptoBindingRequest {
                hash_protocols: self.config.hash_protocols,
                nonce: self.nonce,
            }));
        self.negotiation = Some(now + self.config.timers.negotiation);
        self.state = State::ExpectCallConnected { early: None };
        self.ppp_started = true;
        self.ppp.lower_up(now);
        self.drain_ppp(now);
    }

    /// Answers an unacceptable CALL_CONNECT_REQUEST, or aborts once the NAK budget is spent.
    fn nak(&mut self, now: Instant, infos: Vec<StatusInfo>) {
        let State::ExpectConnectRequest { naks } = &mut self.state else {
            return;
        };
        if *naks >= self.config.max_connect_naks {
            let status = StatusInfo::new(AttributeId::STATUS_INFO, Status::RETRY_COUNT_EXCEEDED);
            self.common
                .abort(now, status, CloseReason::RetryCountExceeded);
        } else {
            *naks += 1;
            self.common.send(&ControlMessage::CallConnectNak(infos));
        }
    }

    fn abort_call_connected_format(&mut self, now: Instant, err: DecodeError) {
        let status = StatusInfo::new(
            AttributeId::STATUS_INFO,
            Status::ATTRIB_NOT_SUPPORTED_IN_MSG,
        );
        self.common
            .abort(now, status, CloseReason::InvalidMessage(err));
    }

    fn verify_call_connected(
        &mut self,
        now: Instant,
        raw: &[u8; CALL_CONNECTED_LEN],
        hlak: &[u8; 32],
    ) {
        let body = raw.get(HEADER_LEN..).unwrap_or_default();
        let Ok(ControlMessage::CallConnected(binding)) = ControlMessage::decode(body) else {
            return self.abort_call_connected_format(now, DecodeError::TrailingBytes);
        };
        let offered = self.config.hash_protocols;
        match crypto_binding::verify(raw, &binding, &self.nonce, offered, &self.cert_hashes, hlak) {
            Ok(()) => {
                tracing::debug!(hash = ?binding.hash_protocol, "crypto binding verified; call connected");
                self.state = State::Connected;
                self.negotiation = None;
                self.common.start_hello(now);
                self.events.push_back(ServerEvent::Connected {
                    hash_protocol: binding.hash_protocol,
                });
            }
            Err(err) => {
                let status =
                    StatusInfo::new(AttributeId::CRYPTO_BINDING, Status::VALUE_NOT_SUPPORTED);
                self.common
                    .abort(now, status, CloseReason::CryptoBinding(err));
            }
        }
    }

    /// Sends PPP's frames and acts on its events, until both queues are empty.
    fn drain_ppp(&mut self, now: Instant) {
        loop {
            while let Some(frame) = self.ppp.poll_transmit() {
                if self.ppp_running() {
                    self.common.send_ppp(&frame);
                }
            }
            let Some(event) = self.ppp.poll_event() else {
                return;
            };
            self.on_ppp_event(now, event);
        }
    }

    fn on_ppp_event(&mut self, now: Instant, event: sstp_ppp::ServerEvent) {
        use sstp_ppp::ServerEvent as Ppp;
        if !self.common.is_active() {
            return;
        }
        match event {
            Ppp::Authenticated {
                username,
                method,
                hlak,
            } => {
                self.hlak = Some(hlak.0);
                self.events
                    .push_back(ServerEvent::Authenticated { username, method });
                if let State::ExpectCallConnected { early } = &mut self.state
                    && let Some(raw) = early.take()
                {
                    self.verify_call_connected(now, &raw, &hlak.0);
                }
            }
            Ppp::AuthFailed { username, reason } => {
                self.events
                    .push_back(ServerEvent::AuthFailed { username, reason });
            }
            Ppp::Ipv4Up { peer } => {
                self.ipv4_up = true;
                self.events.push_back(ServerEvent::Ipv4Up { peer });
            }
            Ppp::Ipv6Up { peer_interface_id } => {
                self.ipv6_up = true;
                self.events
                    .push_back(ServerEvent::Ipv6Up { peer_interface_id });
            }
            Ppp::Down { reason } => {
                self.ppp_down = true;
                self.common.disconnect(now, CloseReason::Ppp(reason));
            }
        }
    }

    /// Once the call left the active state, PPP is told the link is gone (it gives the
    /// address back), and the single Closed event is queued when the connection is over.
    fn after_input(&mut self) {
        if !self.common.is_active() && self.ppp_started {
            self.ppp_started = false;
            self.ppp.lower_down();
            while self.ppp.poll_event().is_some() {}
        }
        if let Some(reason) = self.common.take_closed() {
            tracing::debug!(reason = reason.metric_label(), "connection closed");
            self.events.push_back(ServerEvent::Closed { reason });
        }
    }
}

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("state", &self.state)
            .field("teardown", &self.common.teardown)
            .field("closed", &self.common.is_closed())
            .finish_non_exhaustive()
    }
}

/// The STATUS_INFO a server puts in a CALL_CONNECT_NAK for a bad CALL_CONNECT_REQUEST, or
/// `None` when the spec asks for an abort instead (§3.3.5.2.2).
///
/// A missing ENCAPSULATED_PROTOCOL_ID is reported with that attribute's id, as §2.2.8 says;
/// §3.3.5.2.2 names STATUS_INFO instead, but naming the missing attribute is more useful.
#[must_use]
pub(crate) fn nak_status(error: &DecodeError) -> Option<StatusInfo> {
    let (attribute, status) = match *error {
        DecodeError::UnrecognizedAttribute(id) => (id, Status::UNRECOGNIZED_ATTRIBUTE),
        DecodeError::InvalidAttributeLength(id) => (id, Status::INVALID_ATTRIB_VALUE_LENGTH),
        DecodeError::DuplicateAttribute(id) => (id, Status::DUPLICATE_ATTRIBUTE),
        DecodeError::MissingAttribute(id) => (id, Status::REQUIRED_ATTRIBUTE_MISSING),
        DecodeError::AttributeNotAllowed { attribute, .. } => {
            (attribute, Status::UNRECOGNIZED_ATTRIBUTE)
        }
        DecodeError::StatusInfoNotAllowed(_) => (
            AttributeId::STATUS_INFO,
            Status::STATUS_INFO_NOT_SUPPORTED_IN_MSG,
        ),
        _ => return None,
    };
    Some(StatusInfo::new(attribute, status))
}
