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
    connection::{Connection, Preamble, Side, start_ppp},
    control::ControlMessage,
    crypto_binding::{self, CertHashes},
    event::{ClientEvent, CloseReason},
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
pub type ClientConnection = Connection<ClientSide>;

/// What only the client decides: the HTTP request, CALL_CONNECT_REQUEST and its NAKs, when
/// CALL_CONNECTED goes out, and the PPP client.
pub struct ClientSide {
    config: ClientConfig,
    cert_hashes: CertHashes,
    nt_hash: NtHash,
    ppp: sstp_ppp::Client,
    state: State,
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
        // §4.1: the client waits 60 s for the HTTP response (the negotiation timer).
        let mut common = CommonState::new(config.timers, now);
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
        let side = ClientSide {
            nt_hash: NtHash::from_password(&config.ppp.password),
            ppp: sstp_ppp::Client::new(config.ppp.clone(), rng),
            config,
            cert_hashes: server_cert,
            state: State::ExpectHttpResponse(ResponseParser::new()),
            events: VecDeque::new(),
        };
        Self::from_parts(common, side)
    }

    /// The next IP packet received from the server, if any.
    #[must_use]
    pub fn poll_ip(&mut self) -> Option<&[u8]> {
        self.common.ip_rx.pop()
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
        self.side.config.correlation_id.as_deref()
    }
}

impl Side for ClientSide {
    type Event = ClientEvent;
    type Ppp = sstp_ppp::Client;
    const DISCONNECT_TEXT: &'static str = "user disconnect";

    fn ppp(&mut self) -> &mut sstp_ppp::Client {
        &mut self.ppp
    }

    fn ppp_timeout(&self) -> Option<Instant> {
        self.ppp.poll_timeout()
    }

    fn events(&mut self) -> &mut VecDeque<ClientEvent> {
        &mut self.events
    }

    fn closed(reason: CloseReason) -> ClientEvent {
        ClientEvent::Closed { reason }
    }

    fn in_preamble(&self) -> bool {
        matches!(self.state, State::ExpectHttpResponse(_))
    }

    fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    fn preamble(&mut self, common: &mut CommonState, now: Instant, bytes: &[u8]) -> Preamble {
        let State::ExpectHttpResponse(parser) = &mut self.state else {
            return Preamble::Waiting;
        };
        match parser.feed(bytes) {
            Ok(None) => Preamble::Waiting,
            Ok(Some(rest)) => {
                let head = String::from_utf8_lossy(parser.head()).into_owned();
                common.record(true, || RecordedPacket::Http(head));
                self.events.push_back(ClientEvent::HttpAccepted);
                send_connect_request(common, now);
                self.state = State::ExpectConnectAck { naks: 0 };
                Preamble::Done(rest)
            }
            Err(err) => {
                common.close_now(CloseReason::HttpResponse(err));
                Preamble::Waiting
            }
        }
    }

    fn on_control(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        _packet: &[u8],
        message: ControlMessage,
    ) {
        match (&mut self.state, message) {
            (State::ExpectConnectAck { .. }, ControlMessage::CallConnectAck(request)) => {
                let offered = request.hash_protocols;
                let Some(hash_protocol) = offered.strongest_common(self.config.hash_protocols)
                else {
                    let status = StatusInfo::new(
                        AttributeId::CRYPTO_BINDING_REQ,
                        Status::VALUE_NOT_SUPPORTED,
                    );
                    return common.abort(now, status, CloseReason::NoCommonHashProtocol);
                };
                self.state = State::ExpectAuthentication {
                    nonce: request.nonce,
                    hash_protocol,
                };
                common.restart_negotiation(now);
                start_ppp(self, common, now);
            }
            (State::ExpectConnectAck { naks }, ControlMessage::CallConnectNak(_)) => {
                if *naks >= self.config.max_connect_naks {
                    let status =
                        StatusInfo::new(AttributeId::STATUS_INFO, Status::RETRY_COUNT_EXCEEDED);
                    common.abort(now, status, CloseReason::RetryCountExceeded);
                } else {
                    *naks += 1;
                    send_connect_request(common, now);
                }
            }
            (_, message) => common.abort_unexpected(now, &message),
        }
    }

    /// Sends one PPP frame, compressed as the server acknowledged when configured to, and
    /// slips CALL_CONNECTED next to our MS-CHAPv2 Response when configured to.
    fn transmit_ppp(&mut self, common: &mut CommonState, now: Instant, frame: &[u8]) {
        let early = self.early_hlak(frame);
        let before = self.config.call_connected == CallConnectedTiming::BeforeChapResponse;
        if let (Some(hlak), true) = (early, before) {
            self.send_call_connected(common, now, &hlak);
        }
        let compression = self.compression();
        match decode_frame(frame) {
            Ok(f) if compression != sstp_ppp::FrameCompression::default() => {
                let mut compressed = Vec::with_capacity(frame.len());
                sstp_ppp::encode_frame_compressed(
                    f.protocol,
                    f.information,
                    compression,
                    &mut compressed,
                );
                common.send_ppp(&compressed);
            }
            _ => common.send_ppp(frame),
        }
        if let (Some(hlak), false) = (early, before) {
            self.send_call_connected(common, now, &hlak);
        }
    }

    fn on_ppp_event(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        event: sstp_ppp::ClientEvent,
    ) {
        use sstp_ppp::ClientEvent as Ppp;
        match event {
            Ppp::Authenticated { hlak } => {
                self.events.push_back(ClientEvent::Authenticated);
                if self.config.call_connected != CallConnectedTiming::Never {
                    // No-op when CALL_CONNECTED already went out with the CHAP Response.
                    self.send_call_connected(common, now, &hlak.0);
                }
            }
            Ppp::AuthFailed { message } => {
                self.events.push_back(ClientEvent::AuthFailed { message })
            }
            Ppp::Ipv4Up { local, dns } => {
                common.ip_up(Protocol::IPV4);
                self.events.push_back(ClientEvent::Ipv4Up { local, dns });
            }
            Ppp::Ipv6Up {
                local_interface_id, ..
            } => {
                common.ip_up(Protocol::IPV6);
                self.events
                    .push_back(ClientEvent::Ipv6Up { local_interface_id });
            }
            Ppp::Down { reason } => common.disconnect(now, CloseReason::Ppp(reason)),
        }
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
}

impl ClientSide {
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

    fn send_call_connected(&mut self, common: &mut CommonState, now: Instant, hlak: &[u8; 32]) {
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
            common.record(false, || RecordedPacket::Control(message));
        }
        common.tx.extend_from_slice(&bytes);
        self.state = State::Connected;
        common.call_connected(now);
        self.events
            .push_back(ClientEvent::Connected { hash_protocol });
    }
}

fn send_connect_request(common: &mut CommonState, now: Instant) {
    common.send(&ControlMessage::CallConnectRequest(
        EncapsulatedProtocol::PPP,
    ));
    common.restart_negotiation(now);
}

impl std::fmt::Debug for ClientSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSide")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// CHAP Code 2, Response (RFC 1994 §4).
const CHAP_RESPONSE: u8 = 2;
/// MS-CHAPv2 Response Value-Size (RFC 2759 §4).
const MSCHAPV2_VALUE_SIZE: u8 = 49;
