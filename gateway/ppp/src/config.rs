//! Configuration and the injected collaborators (user lookup, address allocator).

use std::{fmt, net::Ipv4Addr, time::Duration};

use crate::auth::NtHash;

/// The result of looking a user up for authentication.
pub enum Lookup {
    /// The user exists, may log in, and this is the NT hash of its password.
    Found(NtHash),
    /// No such user.
    Unknown,
    /// The user exists but is disabled.
    Disabled,
    /// The user's account has expired.
    Expired,
    /// Too many recent failures: refuse without checking the password.
    Throttled,
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Found(_) => "Found(..)",
            Self::Unknown => "Unknown",
            Self::Disabled => "Disabled",
            Self::Expired => "Expired",
            Self::Throttled => "Throttled",
        })
    }
}

/// Where the server finds the credentials of a user. Called synchronously while a PPP frame is
/// handled, so it must be cheap (an in-memory map).
pub trait UserLookup: Send + Sync {
    /// Looks up `username` (for MS-CHAPv2 with any "DOMAIN\" prefix already removed).
    fn lookup(&self, username: &str) -> Lookup;
}

/// Admits authenticated peers and hands out their IPv4 addresses. Every address returned by
/// `allocate` is given back exactly once through `release`, when the session ends or the
/// [`crate::Server`] is dropped.
pub trait AddressAllocator: Send {
    /// Called once the peer's credentials are verified and before Success is sent: an address
    /// for `username`'s session, or why the session is refused. This is the last moment a
    /// refusal can still reach the peer as an authentication Failure with a reason, so the
    /// caller checks its session limits here too.
    fn allocate(&mut self, username: &str) -> Result<Ipv4Addr, Refusal>;
    /// Returns an address obtained from `allocate`.
    fn release(&mut self, addr: Ipv4Addr);
}

/// Why a peer whose credentials were right is still not admitted. Unlike a credential failure
/// the peer is told which (MS-CHAPv2 E=649 with a message, RFC 2759 §6): it proved who it is,
/// so nothing is revealed to a guesser, and "try later" differs from "wrong password".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user already has as many sessions as allowed.
    SessionLimit,
    /// The address pool has no address left (or the user's static address is taken).
    AddressExhausted,
    /// The gateway serves as many sessions as it may.
    GatewayFull,
}

impl Refusal {
    /// The text sent to the peer (the `M=` of an MS-CHAPv2 Failure, the PAP Nak message).
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::SessionLimit => "Too many sessions for this user",
            Self::AddressExhausted => "No client address is free on this gateway",
            Self::GatewayFull => "The gateway is full; try again later",
        }
    }
}

/// Which authentication protocols may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// MS-CHAPv2 (RFC 2759); preferred when both are allowed.
    pub mschapv2: bool,
    /// PAP (RFC 1334): the password crosses the (TLS-protected) link in clear.
    pub pap: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            mschapv2: true,
            pap: false,
        }
    }
}

/// RFC 1661 §4.6 counters and the restart timer, shared by LCP, the NCPs and authentication
/// retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Restart timer: how long to wait for an answer before retransmitting.
    pub restart: Duration,
    /// Configure-Requests sent without an answer before giving up.
    pub max_configure: u32,
    /// Configure-Naks sent (or received) without an Ack before the negotiation is deemed not
    /// converging.
    pub max_failure: u32,
    /// Terminate-Requests sent without an answer before giving up.
    pub max_terminate: u32,
}

impl Default for Timers {
    fn default() -> Self {
        // RFC 1661 §4.6 suggested values.
        Self {
            restart: Duration::from_secs(3),
            max_configure: 10,
            max_failure: 5,
            max_terminate: 2,
        }
    }
}

/// Server configuration, shared by all sessions.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Allowed authentication protocols.
    pub auth: AuthPolicy,
    /// Name sent in the MS-CHAPv2 Challenge.
    pub server_name: String,
    /// The server's own address, offered in IPCP.
    pub local_ipv4: Ipv4Addr,
    /// Primary and secondary DNS servers (RFC 1877); `None` rejects the client's request.
    pub dns: [Option<Ipv4Addr>; 2],
    /// The MRU we ask for; 1500 (the default) is not sent at all.
    pub mru: u16,
    /// Whether IPv6CP is negotiated; when false it gets an LCP Protocol-Reject.
    pub ipv6: bool,
    /// Timers and counters.
    pub timers: Timers,
}

/// Client configuration.
#[derive(Clone)]
pub struct ClientConfig {
    /// The user name sent to the server.
    pub username: String,
    /// The password; never logged.
    pub password: String,
    /// Authentication protocols the client accepts from the server.
    pub auth: AuthPolicy,
    /// Whether to ask for DNS servers in IPCP (RFC 1877).
    pub request_dns: bool,
    /// Whether to negotiate IPv6CP.
    pub ipv6: bool,
    /// Timers and counters.
    pub timers: Timers,
    /// Which real client's link behaviour to reproduce.
    pub link: LinkProfile,
}

/// How the client's link layer behaves beyond what it needs: the options and protocols a real
/// client offers that the server has to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkProfile {
    /// Only what is needed: LCP asks for a magic number, then authentication and IPCP (the
    /// shape of pppd as run by sstpc with the usual options).
    #[default]
    Minimal,
    /// The Windows 10/11 built-in client, as far as public traces show it
    /// (`windows-client.md` §1.5, §1.8).
    Windows {
        /// The profile's multilink setting: MRRU and Endpoint-Discriminator are offered too.
        multilink: bool,
    },
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("auth", &self.auth)
            .field("request_dns", &self.request_dns)
            .field("ipv6", &self.ipv6)
            .field("timers", &self.timers)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// The MRU every PPP peer must accept (RFC 1661 §6.1).
pub(crate) const DEFAULT_MRU: u16 = 1500;
