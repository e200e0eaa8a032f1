//! The client side of one SSTP connection (§3.2): HTTP request, CALL_CONNECT_REQUEST, the PPP
//! client, and CALL_CONNECTED with crypto binding. The project's own client: it drives tests
//! and the load tool, with knobs to behave like the real clients in the field.

use std::{collections::VecDeque, time::Instant};

use rand_core::Rng;
use sstp_ppp::{
    NtHash, Protocol,
    auth::mschapv2::{self, KeySide},
    decode_frame,
};

use crate::{
    attribute::{AttributeId, EncapsulatedProtocol, HashProtocol, NONCE_LEN, Status, StatusInfo},
    common::CommonState,
    config::{CallConnectedTiming, ClientConfig},
    control::ControlMessage,
    crypto_binding::{self, CertHashes},
    deframer::Frame,
    event::{ClientEvent, CloseReason, SendError},
    http::{ResponseParser, write_request},
    profile::{Recorded, RecordedPacket},
};

/// Call establishment states (§3.2.1), named by what they expect next.
#[derive(Debug)]
enum State {
    /// The server's HTTP response.
    ExpectHttpResponse(ResponseParser),
    /// Client_Connect_Request_Sent.
    ExpectConnectAck {
        /// NAKs received so far.
        naks: u8,
    },
    /// Client_Connect_Ack_Received: PPP runs until authentication completes.
    ExpectAuthentication {
        nonce: [u8; NONCE_LEN],
        hash_protocol: HashProtocol,
    },
    /// Client_Call_Connected: CALL_CONNECTED sent.
    Connected,
}

/// One client-side SSTP connection over an established TLS stream. Same I/O contract as
/// [`crate::ServerConnection`].
pub struct ClientConnection {
    config: ClientConfig,
    cert_hashes: CertHashes,
    nt_hash: NtHash,
    common: CommonState,
    ppp: sstp_ppp::Client,
    state: State,
    negotiation: Option<Instant>,
    ppp_started: bool,
    ppp_down: bool,
    ipv4_up: bool,
    ipv6_up: bool,
    events: VecDeque<ClientEvent>,
}

impl ClientConnection {
    /// A client whose TLS handshake completed at `now` with a server presenting the
    /// certificate whose hashes are `server_cert`. The HTTP request is queued at once.
    #[must_use]
    pub fn new(
        config: ClientConfig,
        server_cert: CertHashes,
        mut rng: Box<dyn Rng + Send>,
        now: Instant,
    ) -> Self {
        let mut config = config;
        if config.correlation_id.is_none()
            && let Some(style) = config.new_correlation_id
        {
            config.correlation_id = Some(style.generate(&mut *rng));
        }
        let mut common = CommonState::new(config.timers);
        if config.record {
            common.recorded = Some(Vec::new());
        }
        write_request(
            &mut common.tx,
            &config.host,
            config.correlation_id.as_deref(),
        );
        let request = String::from_utf8_lossy(&common.tx).into_owned();
        common.record(false, || RecordedPacket::Http(request));
        Self {
            nt_hash: NtHash::from_password(&config.ppp.password),
            ppp: sstp_ppp::Client::new(config.ppp.clone(), rng),
            // §4.1: the client waits 60 s for the HTTP response.
            negotiation: Some(now + config.timers.negotiation),
            config,
            cert_hashes: server_cert,
            common,
            state: State::ExpectHttpResponse(ResponseParser::new()),
            ppp_started: false,
            ppp_down: false,
            ipv4_up: false,
            ipv6_up: false,
            events: VecDeque::new(),
        }
    }

    /// Feeds bytes decrypted from the TLS stream.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.common.is_closed() {
            return;
        }
        if let State::ExpectHttpResponse(parser) = &mut self.state {
            match parser.feed(bytes) {
                Ok(None) => {}
                Ok(Some(rest)) => {
                    let head = String::from_utf8_lossy(parser.head()).into_owned();
                    self.common.record(true, || RecordedPacket::Http(head));
                    self.events.push_back(ClientEvent::HttpAccepted);
                    self.send_connect_request(now);
                    self.state = State::ExpectConnectAck { naks: 0 };
                    self.feed_sstp(now, &rest);
                }
                Err(err) => self.common.close_now(CloseReason::HttpResponse(err)),
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
            if matches!(self.state, State::ExpectHttpResponse(_)) {
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

    /// When [`ClientConnection::handle_timeout`] must next be called.
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
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The next IP packet received from the server, if any.
    #[must_use]
    pub fn poll_ip(&mut self) -> Option<&[u8]> {
        self.common.ip_rx.pop()
    }

    /// Queues one IP packet for the server.
    ///
    /// # Errors
    /// [`SendError`] when the call or that IP version is not up, or the packet is too large.
    pub fn send_ip(&mut self, packet: &[u8]) -> Result<(), SendError> {
        let ip_up = self.ip_up();
        let compression = self.compression();
        self.common.send_ip(packet, ip_up, compression)
    }

    /// The transcript kept since the last call, when [`ClientConfig::record`] is on.
    pub fn take_recorded(&mut self) -> Vec<Recorded> {
        self.common
            .recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The correlation GUID sent in the HTTP request, if any.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.config.correlation_id.as_deref()
    }

    /// The PPP header compression our frames use: what the server acknowledged, when
    /// [`ClientConfig::compress_frames`] is on.
    fn compression(&self) -> sstp_ppp::FrameCompression {
        if self.config.compress_frames {
            self.ppp.frame_compression()
        } else {
            sstp_ppp::FrameCompression::default()
        }
    }

    /// Ends the call gracefully: LCP Terminate first if PPP is up, then CALL_DISCONNECT.
    pub fn disconnect(&mut self, now: Instant) {
        if !self.common.is_active() {
            return;
        }
        self.common.note(CloseReason::LocalDisconnect);
        match self.state {
            State::ExpectHttpResponse(_) => self.common.close_now(CloseReason::LocalDisconnect),
            _ if self.ppp_running() && !self.ppp_down => {
                self.ppp.close(now, "user disconnect");
                self.drain_ppp(now);
            }
            _ => self.common.disconnect(now, CloseReason::LocalDisconnect),
        }
        self.after_input();
    }

    /// The TLS stream is gone: clean up at once.
    pub fn transport_closed(&mut self) {
        self.common.close_now(CloseReason::TransportClosed);
        self.after_input();
    }

    /// Whether the connection is over.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.common.is_closed()
    }

    fn ppp_running(&self) -> bool {
        self.ppp_started && self.common.is_active()
    }

    fn send_connect_request(&mut self, now: Instant) {
        self.common.send(&ControlMessage::CallConnectRequest(
            EncapsulatedProtocol::PPP,
        ));
        self.negotiation = Some(now + self.config.timers.negotiation);
    }

    fn feed_sstp(&mut self, now: Instant, bytes: &[u8]) {
        let mut deframer = std::mem::take(&mut self.common.deframer);
        let result = deframer.feed(bytes, |frame| self.handle_packet(now, frame));
        self.common.deframer = deframer;
        if let Err(err) = result {
            self.common.close_now(CloseReason::Framing(err));
        }
    }

    fn handle_packet(&mut self, now: Instant, frame: Frame<'_>) {
        if self.common.is_closed() {
            return;
        }
        self.common.packet_received(now);
        if frame.header.control {
            self.handle_control(now, frame.body());
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
            State::ExpectAuthentication { .. } | State::Connected
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

    fn handle_control(&mut self, now: Instant, body: &[u8]) {
        let message = match ControlMessage::decode(body) {
            Ok(message) => message,
            // Everything is ignored during a teardown, even garbage (§3.1.2.1).
            Err(_) if !self.common.is_active() => return,
            Err(err) => {
                let status = StatusInfo::new(AttributeId::NO_ERROR, Status::INVALID_FRAME_RECEIVED);
                return self
                    .common
                    .abort(now, status, CloseReason::InvalidMessage(err));
            }
        };
        self.common
            .record(true, || RecordedPacket::Control(message.clone()));
        let connected = matches!(self.state, State::Connected);
        if self.common.handle_common(now, &message, connected) {
            return;
        }
        match (&mut self.state, message) {
            (State::ExpectConnectAck { .. }, ControlMessage::CallConnectAck(request)) => {
                let offered = request.hash_protocols;
                let Some(hash_protocol) = offered.strongest_common(self.config.hash_protocols)
                else {
                    let status = StatusInfo::new(
                        AttributeId::CRYPTO_BINDING_REQ,
                        Status::VALUE_NOT_SUPPORTED,
                    );
                    return self
                        .common
                        .abort(now, status, CloseReason::NoCommonHashProtocol);
                };
                self.state = State::ExpectAuthentication {
                    nonce: request.nonce,
                    hash_protocol,
                };
                self.negotiation = Some(now + self.config.timers.negotiation);
                self.ppp_started = true;
                self.ppp.lower_up(now);
                self.drain_ppp(now);
            }
            (State::ExpectConnectAck { naks }, ControlMessage::CallConnectNak(_)) => {
                if *naks >= self.config.max_connect_naks {
                    let status =
                        StatusInfo::new(AttributeId::STATUS_INFO, Status::RETRY_COUNT_EXCEEDED);
                    self.common
                        .abort(now, status, CloseReason::RetryCountExceeded);
                } else {
                    *naks += 1;
                    self.send_connect_request(now);
                }
            }
            (_, message) => self.common.abort_unexpected(now, &message),
        }
    }

    /// Sends PPP's frames (slipping CALL_CONNECTED next to our MS-CHAPv2 Response when
    /// configured to) and acts on PPP's events.
    fn drain_ppp(&mut self, now: Instant) {
        loop {
            while let Some(frame) = self.ppp.poll_transmit() {
                if !self.ppp_running() {
                    continue;
                }
                let early = self.early_hlak(&frame);
                let before = self.config.call_connected == CallConnectedTiming::BeforeChapResponse;
                if let (Some(hlak), true) = (early, before) {
                    self.send_call_connected(now, &hlak);
                }
                let compression = self.compression();
                match decode_frame(&frame) {
                    Ok(f) if compression != sstp_ppp::FrameCompression::default() => {
                        let mut compressed = Vec::with_capacity(frame.len());
                        sstp_ppp::encode_frame_compressed(
                            f.protocol,
                            f.information,
                            compression,
                            &mut compressed,
                        );
                        self.common.send_ppp(&compressed);
                    }
                    _ => self.common.send_ppp(&frame),
                }
                if let (Some(hlak), false) = (early, before) {
                    self.send_call_connected(now, &hlak);
                }
            }
            let Some(event) = self.ppp.poll_event() else {
                return;
            };
            self.on_ppp_event(now, event);
        }
    }

    /// The HLAK when `frame` is our MS-CHAPv2 Response and CALL_CONNECTED is due with it.
    /// Our own keys are known once we have computed the NT-Response (RFC 3079 §3.4).
    fn early_hlak(&self, frame: &[u8]) -> Option<[u8; 32]> {
        let early = matches!(
            self.config.call_connected,
            CallConnectedTiming::AfterChapResponse | CallConnectedTiming::BeforeChapResponse
        );
        if !early || !matches!(self.state, State::ExpectAuthentication { .. }) {
            return None;
        }
        let frame = decode_frame(frame)
            .ok()
            .filter(|f| f.protocol == Protocol::CHAP)?;
        // RFC 2759 §4: Code 2 (Response), Identifier, Length, Value-Size 49, then
        // Peer-Challenge(16), Reserved(8), NT-Response(24), Flags(1), Name.
        let info = frame.information;
        if info.first() != Some(&CHAP_RESPONSE) || info.get(4) != Some(&MSCHAPV2_VALUE_SIZE) {
            return None;
        }
        let nt_response: [u8; 24] = info.get(29..53)?.try_into().ok()?;
        Some(mschapv2::hlak(&self.nt_hash, &nt_response, KeySide::Client).0)
    }

    fn send_call_connected(&mut self, now: Instant, hlak: &[u8; 32]) {
        let State::ExpectAuthentication {
            nonce,
            hash_protocol,
        } = self.state
        else {
            return;
        };
        let Some(bytes) =
            crypto_binding::build_call_connected(hash_protocol, &nonce, &self.cert_hashes, hlak)
        else {
            return;
        };
        if let Some(Ok(message)) = bytes.get(4..).map(ControlMessage::decode) {
            self.common
                .record(false, || RecordedPacket::Control(message));
        }
        self.common.tx.extend_from_slice(&bytes);
        self.state = State::Connected;
        self.negotiation = None;
        self.common.start_hello(now);
        self.events
            .push_back(ClientEvent::Connected { hash_protocol });
    }

    fn on_ppp_event(&mut self, now: Instant, event: sstp_ppp::ClientEvent) {
        use sstp_ppp::ClientEvent as Ppp;
        if !self.common.is_active() {
            return;
        }
        match event {
            Ppp::Authenticated { hlak } => {
                self.events.push_back(ClientEvent::Authenticated);
                if self.config.call_connected != CallConnectedTiming::Never {
                    // No-op when CALL_CONNECTED already went out with the CHAP Response.
                    self.send_call_connected(now, &hlak.0);
                }
            }
            Ppp::AuthFailed { message } => {
                self.events.push_back(ClientEvent::AuthFailed { message })
            }
            Ppp::Ipv4Up { local, dns } => {
                self.ipv4_up = true;
                self.events.push_back(ClientEvent::Ipv4Up { local, dns });
            }
            Ppp::Ipv6Up {
                local_interface_id, ..
            } => {
                self.ipv6_up = true;
                self.events
                    .push_back(ClientEvent::Ipv6Up { local_interface_id });
            }
            Ppp::Down { reason } => {
                self.ppp_down = true;
                self.common.disconnect(now, CloseReason::Ppp(reason));
            }
        }
    }

    fn after_input(&mut self) {
        if !self.common.is_active() && self.ppp_started {
            self.ppp_started = false;
            self.ppp.lower_down();
            while self.ppp.poll_event().is_some() {}
        }
        if let Some(reason) = self.common.take_closed() {
            self.events.push_back(ClientEvent::Closed { reason });
        }
    }
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("state", &self.state)
            .field("teardown", &self.common.teardown)
            .field("closed", &self.common.is_closed())
            .finish_non_exhaustive()
    }
}

/// CHAP Code 2, Response (RFC 1994 §4).
const CHAP_RESPONSE: u8 = 2;
/// MS-CHAPv2 Response Value-Size (RFC 2759 §4).
const MSCHAPV2_VALUE_SIZE: u8 = 49;
