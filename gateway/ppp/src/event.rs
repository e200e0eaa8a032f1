//! What [`crate::Server`] and [`crate::Client`] report to their owner.

use std::{fmt, net::Ipv4Addr};

use crate::{AuthFailure, AuthMethod, Hlak, Protocol};

/// Events of a [`crate::Server`], in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The peer proved its identity. SSTP crypto binding can now be checked with `hlak`.
    Authenticated {
        /// The user name (for MS-CHAPv2 without any "DOMAIN\" prefix). Log it at debug only.
        username: String,
        /// How the peer authenticated.
        method: AuthMethod,
        /// The key for SSTP crypto binding.
        hlak: Hlak,
    },
    /// Authentication failed; the server has answered the peer and is terminating the link.
    AuthFailed {
        /// The name the peer claimed, if its packet got that far.
        username: Option<String>,
        /// Why.
        reason: AuthFailure,
    },
    /// IPCP is Opened: frames for `peer` may flow.
    Ipv4Up {
        /// The address assigned to the peer.
        peer: Ipv4Addr,
    },
    /// IPv6CP is Opened.
    Ipv6Up {
        /// The peer's link-local interface identifier.
        peer_interface_id: [u8; 8],
    },
    /// The link is down for good: drain `poll_transmit`, then end the SSTP session. Sent once.
    Down {
        /// Why.
        reason: DownReason,
    },
}

/// Events of a [`crate::Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted us (and, for MS-CHAPv2, proved it knows the password).
    Authenticated {
        /// The key for SSTP crypto binding (zero for PAP or no authentication).
        hlak: Hlak,
    },
    /// The server refused our credentials, or failed to prove its own.
    AuthFailed {
        /// The server's failure message, or why we rejected its Success.
        message: String,
    },
    /// IPCP is Opened.
    Ipv4Up {
        /// Our address.
        local: Ipv4Addr,
        /// The DNS servers the server handed out.
        dns: [Option<Ipv4Addr>; 2],
    },
    /// IPv6CP is Opened.
    Ipv6Up {
        /// Our link-local interface identifier.
        local_interface_id: [u8; 8],
        /// The server's interface identifier.
        peer_interface_id: [u8; 8],
    },
    /// The link is down for good. Sent once.
    Down {
        /// Why.
        reason: DownReason,
    },
}

/// Why a PPP link went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The peer sent an LCP Terminate-Request.
    PeerTerminated,
    /// `close` was called.
    LocalClose {
        /// The caller's reason.
        reason: String,
    },
    /// The transport went away (`lower_down`).
    LowerDown,
    /// Our Configure-Requests went unanswered Max-Configure times.
    NoResponse {
        /// The control protocol that timed out.
        protocol: Protocol,
    },
    /// The option negotiation did not converge within Max-Failure rounds.
    NotConverging {
        /// The control protocol that failed.
        protocol: Protocol,
    },
    /// The peer Protocol-Rejected or Code-Rejected something essential.
    PeerRejected {
        /// The control protocol concerned.
        protocol: Protocol,
    },
    /// The server refused the peer's authentication.
    AuthFailed(AuthFailure),
    /// The server refused our credentials (client side).
    AuthRejected,
    /// The link appears looped back: our magic number came back to us.
    LoopbackDetected,
    /// The peer restarted LCP negotiation on an open link, which we do not support.
    Renegotiation,
}

impl DownReason {
    /// A stable lowercase label for metrics.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::PeerTerminated => "peer_terminated",
            Self::LocalClose { .. } => "local_close",
            Self::LowerDown => "lower_down",
            Self::NoResponse { .. } => "no_response",
            Self::NotConverging { .. } => "not_converging",
            Self::PeerRejected { .. } => "peer_rejected",
            Self::AuthFailed(_) => "auth_failed",
            Self::AuthRejected => "auth_rejected",
            Self::LoopbackDetected => "loopback_detected",
            Self::Renegotiation => "renegotiation",
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalClose { reason } => write!(f, "local close: {reason}"),
            Self::NoResponse { protocol } => write!(f, "{protocol}: no response"),
            Self::NotConverging { protocol } => write!(f, "{protocol}: not converging"),
            Self::PeerRejected { protocol } => write!(f, "{protocol}: rejected by peer"),
            Self::AuthFailed(reason) => write!(f, "authentication failed: {reason}"),
            other => f.write_str(other.metric_label()),
        }
    }
}
