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
    connection::{Connection, Preamble, Side, abort_invalid, start_ppp},
    control::ControlMessage,
    crypto_binding::{self, CALL_CONNECTED_LEN, CertHashes},
    event::{CloseReason, ServerEvent},
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
pub type ServerConnection = Connection<ServerSide>;

/// What only the server decides: the HTTP request, call establishment with crypto binding,
/// and the PPP server with its users and addresses.
pub struct ServerSide {
    config: Arc<ServerConfig>,
    cert_hashes: CertHashes,
    ppp: sstp_ppp::Server,
    state: State,
    nonce: [u8; NONCE_LEN],
    /// The server HLAK, once PPP authentication succeeded.
    hlak: Option<[u8; 32]>,
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
        let common = CommonState::new(config.timers, now);
        let side = ServerSide {
            config,
            cert_hashes,
            ppp,
            state: State::ExpectHttpRequest(RequestParser::new()),
            nonce,
            hlak: None,
            busy: false,
            events: VecDeque::new(),
            ip_policy: IpPolicyCounts::default(),
        };
        Self::from_parts(common, side)
    }

    /// Whether the caller has room for another session. While it has none, a complete HTTP
    /// request is answered `503 Service Unavailable` with `Retry-After` and the connection
    /// closes (`CloseReason::HttpRejected(Rejection::Busy)`): the cheapest clear refusal, before
    /// any PPP state exists. Has no effect once the request was accepted.
    pub fn set_busy(&mut self, busy: bool) {
        self.side.busy = busy;
    }

    /// The next IP packet from the peer that may leave the tunnel, if any (IPv4 or IPv6,
    /// without PPP header). The [`crate::ip_policy`] has been applied: IPv4 from any source
    /// but the peer's own address is dropped, and a DHCPINFORM to this server is answered into
    /// the tunnel when [`ServerConfig::dhcp_inform`] says so; both are counted in
    /// [`ServerConnection::take_ip_policy`].
    #[must_use]
    pub fn poll_ip(&mut self) -> Option<&[u8]> {
        let peer = self.side.ppp.peer_ipv4();
        loop {
            let packet = self.common.ip_rx.front()?;
            match ip_policy::judge(packet, peer, self.side.config.dhcp_inform.as_deref()) {
                Verdict::Pass => break,
                Verdict::ForeignSource => {
                    tracing::trace!(
                        len = packet.len(),
                        "packet with a foreign source address dropped"
                    );
                    self.side.ip_policy.foreign_source += 1;
                    let _ = self.common.ip_rx.pop();
                }
                Verdict::Answer(reply) => {
                    let _ = self.common.ip_rx.pop();
                    self.side.ip_policy.dhcp_informs_answered += 1;
                    // Only fails once the call is ending, when nobody needs the answer.
                    let _ = self.send_ip(&reply);
                }
            }
        }
        self.common.ip_rx.pop()
    }

    /// What the IP policy kept in the tunnel since the last call, and starts counting again.
    pub fn take_ip_policy(&mut self) -> IpPolicyCounts {
        std::mem::take(&mut self.side.ip_policy)
    }

    /// The address PPP assigned to the peer, if any.
    #[must_use]
    pub fn peer_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.side.ppp.peer_ipv4()
    }
}

impl Side for ServerSide {
    type Event = ServerEvent;
    type Ppp = sstp_ppp::Server;
    const DISCONNECT_TEXT: &'static str = "administrative disconnect";

    fn ppp(&mut self) -> &mut sstp_ppp::Server {
        &mut self.ppp
    }

    fn ppp_timeout(&self) -> Option<Instant> {
        self.ppp.poll_timeout()
    }

    fn events(&mut self) -> &mut VecDeque<ServerEvent> {
        &mut self.events
    }

    fn closed(reason: CloseReason) -> ServerEvent {
        ServerEvent::Closed { reason }
    }

    fn in_preamble(&self) -> bool {
        matches!(self.state, State::ExpectHttpRequest(_))
    }

    fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    fn preamble(&mut self, common: &mut CommonState, _now: Instant, bytes: &[u8]) -> Preamble {
        let State::ExpectHttpRequest(parser) = &mut self.state else {
            return Preamble::Waiting;
        };
        match parser.feed(bytes) {
            Ok(None) => Preamble::Waiting,
            Ok(Some(_)) if self.busy => {
                refuse(common, crate::http::Rejection::Busy);
                Preamble::Waiting
            }
            Ok(Some(request)) => {
                write_ok_response(&mut common.tx);
                self.events.push_back(ServerEvent::HttpAccepted {
                    host: request.host,
                    correlation_id: request.correlation_id,
                });
                self.state = State::ExpectConnectRequest { naks: 0 };
                Preamble::Done(request.rest)
            }
            Err(rejection) => {
                refuse(common, rejection);
                Preamble::Waiting
            }
        }
    }

    fn on_control(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        packet: &[u8],
        message: ControlMessage,
    ) {
        match (&mut self.state, message) {
            (State::ExpectConnectRequest { .. }, ControlMessage::CallConnectRequest(protocol)) => {
                self.on_connect_request(common, now, protocol);
            }
            (State::ExpectCallConnected { early }, message @ ControlMessage::CallConnected(_)) => {
                let Ok(raw) = <[u8; CALL_CONNECTED_LEN]>::try_from(packet) else {
                    // A CALL_CONNECTED carrying an extra (no-error) STATUS_INFO.
                    return abort_call_connected_format(common, now, DecodeError::TrailingBytes);
                };
                match (self.hlak, early.is_some()) {
                    (Some(hlak), _) => self.verify_call_connected(common, now, &raw, &hlak),
                    (None, false) => {
                        tracing::debug!("CALL_CONNECTED before PPP authentication; buffered");
                        *early = Some(Box::new(raw));
                    }
                    // A second CALL_CONNECTED while the first still waits for the HLAK.
                    (None, true) => common.abort_unexpected(now, &message),
                }
            }
            (_, message) => common.abort_unexpected(now, &message),
        }
    }

    fn on_invalid(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        body: &[u8],
        err: DecodeError,
    ) {
        let message = body
            .first_chunk::<2>()
            .map(|t| MessageType(u16::from_be_bytes(*t)));
        match (&mut self.state, message) {
            (State::ExpectConnectRequest { .. }, Some(MessageType::CALL_CONNECT_REQUEST))
                if nak_status(&err).is_some() =>
            {
                self.nak(common, now, nak_status(&err).into_iter().collect());
            }
            (State::ExpectCallConnected { .. }, Some(MessageType::CALL_CONNECTED)) => {
                abort_call_connected_format(common, now, err);
            }
            _ => abort_invalid(common, now, err),
        }
    }

    fn on_ppp_event(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        event: sstp_ppp::ServerEvent,
    ) {
        use sstp_ppp::ServerEvent as Ppp;
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
                    self.verify_call_connected(common, now, &raw, &hlak.0);
                }
            }
            Ppp::AuthFailed { username, reason } => {
                self.events
                    .push_back(ServerEvent::AuthFailed { username, reason });
            }
            Ppp::Ipv4Up { peer } => {
                common.ip_up(Protocol::IPV4);
                self.events.push_back(ServerEvent::Ipv4Up { peer });
            }
            Ppp::Ipv6Up { peer_interface_id } => {
                common.ip_up(Protocol::IPV6);
                self.events
                    .push_back(ServerEvent::Ipv6Up { peer_interface_id });
            }
            Ppp::Down { reason } => common.disconnect(now, CloseReason::Ppp(reason)),
        }
    }
}

impl ServerSide {
    fn on_connect_request(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        protocol: EncapsulatedProtocol,
    ) {
        if protocol != EncapsulatedProtocol::PPP {
            let info = StatusInfo {
                attribute: AttributeId::ENCAPSULATED_PROTOCOL_ID,
                status: Status::VALUE_NOT_SUPPORTED,
                value: protocol.0.to_be_bytes().to_vec(),
            };
            return self.nak(common, now, vec![info]);
        }
        common.send(&ControlMessage::CallConnectAck(CryptoBindingRequest {
            hash_protocols: self.config.hash_protocols,
            nonce: self.nonce,
        }));
        common.restart_negotiation(now);
        self.state = State::ExpectCallConnected { early: None };
        start_ppp(self, common, now);
    }

    /// Answers an unacceptable CALL_CONNECT_REQUEST, or aborts once the NAK budget is spent.
    fn nak(&mut self, common: &mut CommonState, now: Instant, infos: Vec<StatusInfo>) {
        let State::ExpectConnectRequest { naks } = &mut self.state else {
            return;
        };
        if *naks >= self.config.max_connect_naks {
            let status = StatusInfo::new(AttributeId::STATUS_INFO, Status::RETRY_COUNT_EXCEEDED);
            common.abort(now, status, CloseReason::RetryCountExceeded);
        } else {
            *naks += 1;
            common.send(&ControlMessage::CallConnectNak(infos));
        }
    }

    fn verify_call_connected(
        &mut self,
        common: &mut CommonState,
        now: Instant,
        raw: &[u8; CALL_CONNECTED_LEN],
        hlak: &[u8; 32],
    ) {
        let body = raw.get(HEADER_LEN..).unwrap_or_default();
        let Ok(ControlMessage::CallConnected(binding)) = ControlMessage::decode(body) else {
            return abort_call_connected_format(common, now, DecodeError::TrailingBytes);
        };
        let offered = self.config.hash_protocols;
        match crypto_binding::verify(raw, &binding, &self.nonce, offered, &self.cert_hashes, hlak) {
            Ok(()) => {
                tracing::debug!(hash = ?binding.hash_protocol, "crypto binding verified; call connected");
                self.state = State::Connected;
                common.call_connected(now);
                self.events.push_back(ServerEvent::Connected {
                    hash_protocol: binding.hash_protocol,
                });
            }
            Err(err) => {
                let status =
                    StatusInfo::new(AttributeId::CRYPTO_BINDING, Status::VALUE_NOT_SUPPORTED);
                common.abort(now, status, CloseReason::CryptoBinding(err));
            }
        }
    }
}

/// Answers a refused HTTP request and closes: no SSTP was spoken, so there is nothing to abort.
fn refuse(common: &mut CommonState, rejection: crate::http::Rejection) {
    tracing::debug!(%rejection, "HTTP request refused");
    rejection.write_response(&mut common.tx);
    common.close_now(CloseReason::HttpRejected(rejection));
}

fn abort_call_connected_format(common: &mut CommonState, now: Instant, err: DecodeError) {
    let status = StatusInfo::new(
        AttributeId::STATUS_INFO,
        Status::ATTRIB_NOT_SUPPORTED_IN_MSG,
    );
    common.abort(now, status, CloseReason::InvalidMessage(err));
}

impl std::fmt::Debug for ServerSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSide")
            .field("state", &self.state)
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
