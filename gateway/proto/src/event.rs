//! What the connections report to their owner, and why they end.

use std::net::Ipv4Addr;

use sstp_ppp::{AuthFailure, AuthMethod, DownReason};

use crate::{
    attribute::{HashProtocol, StatusInfo},
    crypto_binding::BindingError,
    http::{Rejection, ResponseError},
    packet::{DecodeError, FramingError, MessageType},
};

/// Events of a [`crate::ServerConnection`], in the order they happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// The HTTP preamble was accepted. Values come from the peer: log them at debug only.
    HttpAccepted {
        /// The `Host` header.
        host: Option<String>,
        /// The `SSTPCORRELATIONID` header.
        correlation_id: Option<String>,
    },
    /// PPP authentication succeeded. The user name is personal data: debug level only.
    Authenticated {
        /// The user name.
        username: String,
        /// The method.
        method: AuthMethod,
    },
    /// PPP authentication failed; the link is being closed.
    AuthFailed {
        /// The name the peer claimed, if any.
        username: Option<String>,
        /// Why.
        reason: AuthFailure,
    },
    /// CALL_CONNECTED passed crypto binding: the call is up.
    Connected {
        /// The algorithm the client chose.
        hash_protocol: HashProtocol,
    },
    /// IPCP is up: IPv4 packets for `peer` may flow (once [`ServerEvent::Connected`] is in).
    Ipv4Up {
        /// The peer's address.
        peer: Ipv4Addr,
    },
    /// IPv6CP is up.
    Ipv6Up {
        /// The peer's link-local interface identifier.
        peer_interface_id: [u8; 8],
    },
    /// The connection is over. Reported exactly once, last. Drain `poll_transmit` once more,
    /// then close the transport.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Events of a [`crate::ClientConnection`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server answered 200 to the HTTP request.
    HttpAccepted,
    /// PPP authentication succeeded.
    Authenticated,
    /// The server refused our credentials.
    AuthFailed {
        /// The server's message.
        message: String,
    },
    /// CALL_CONNECTED was sent: the call is up from our side.
    Connected {
        /// The algorithm chosen for crypto binding.
        hash_protocol: HashProtocol,
    },
    /// IPCP is up.
    Ipv4Up {
        /// Our address.
        local: Ipv4Addr,
        /// DNS servers handed out by the server.
        dns: [Option<Ipv4Addr>; 2],
    },
    /// IPv6CP is up.
    Ipv6Up {
        /// Our link-local interface identifier.
        local_interface_id: [u8; 8],
    },
    /// The connection is over. Reported exactly once, last.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a connection ended: the first cause wins (a later abort handshake does not overwrite
/// it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Server: the HTTP request was refused with an HTTP error.
    HttpRejected(Rejection),
    /// Client: the server's HTTP response did not open an SSTP stream.
    HttpResponse(ResponseError),
    /// The byte stream could not be cut into SSTP packets; dropped without a word (§3.1.5.1).
    Framing(FramingError),
    /// A control message could not be decoded; we aborted.
    InvalidMessage(DecodeError),
    /// A valid message arrived in a state that does not accept it; we aborted.
    UnexpectedMessage(MessageType),
    /// Server: CALL_CONNECT_REQUEST stayed unacceptable after the NAK budget; client: the
    /// server kept NAKing.
    RetryCountExceeded,
    /// A negotiation step did not complete in time.
    NegotiationTimeout,
    /// Server: CALL_CONNECTED failed the crypto binding checks.
    CryptoBinding(BindingError),
    /// Client: the server offered no hash algorithm we support.
    NoCommonHashProtocol,
    /// PPP ended the link (authentication failure, LCP terminate, negotiation failure...).
    Ppp(DownReason),
    /// The peer sent CALL_ABORT.
    PeerAborted(Option<StatusInfo>),
    /// The peer sent CALL_DISCONNECT.
    PeerDisconnected,
    /// `disconnect` was called.
    LocalDisconnect,
    /// Nothing arrived for two hello intervals; dropped without CALL_ABORT (§3.1.2.3).
    HelloTimeout,
    /// The transport (TLS/TCP) went away.
    TransportClosed,
}

impl CloseReason {
    /// A stable lowercase label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::HttpRejected(_) => "http_rejected",
            Self::HttpResponse(_) => "http_response",
            Self::Framing(_) => "framing",
            Self::InvalidMessage(_) => "invalid_message",
            Self::UnexpectedMessage(_) => "unexpected_message",
            Self::RetryCountExceeded => "retry_count_exceeded",
            Self::NegotiationTimeout => "negotiation_timeout",
            Self::CryptoBinding(_) => "crypto_binding",
            Self::NoCommonHashProtocol => "no_common_hash_protocol",
            Self::Ppp(DownReason::AuthFailed(_) | DownReason::AuthRejected) => "auth_failed",
            Self::Ppp(_) => "ppp",
            Self::PeerAborted(_) => "peer_aborted",
            Self::PeerDisconnected => "peer_disconnected",
            Self::LocalDisconnect => "local_disconnect",
            Self::HelloTimeout => "hello_timeout",
            Self::TransportClosed => "transport_closed",
        }
    }
}

/// Why an IP packet could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The call is not connected, or the packet's IP version is not up (yet).
    #[error("not connected")]
    NotConnected,
    /// The connection is closed or closing.
    #[error("connection closed")]
    Closed,
    /// The packet does not fit one SSTP data packet.
    #[error("packet of {0} bytes is too large")]
    TooLarge(usize),
    /// Neither IPv4 nor IPv6.
    #[error("not an IP packet")]
    NotIp,
}
