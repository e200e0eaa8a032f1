//! Configuration of the SSTP state machines.

use std::{sync::Arc, time::Duration};

use crate::{
    attribute::HashProtocolSet,
    profile::{ClientProfile, GuidStyle},
};

/// SSTP timers. The defaults are the values the spec recommends (Appendix A and §3.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Negotiation timer: from accept (server) or CONNECT_REQUEST (client) to CONNECT_ACK, and
    /// again from CONNECT_ACK to CALL_CONNECTED (§3.3.2.1, §3.2.2.1).
    pub negotiation: Duration,
    /// Hello timer: an ECHO_REQUEST goes out after this much silence, and the connection is
    /// dropped after as much again without any packet (§3.1.2.3).
    pub hello: Duration,
    /// TIMER_VAL_ABORT_STATE_TIMER_1: wait for the peer's CALL_ABORT after ours (§3.1.2.1).
    pub abort_1: Duration,
    /// TIMER_VAL_ABORT_STATE_TIMER_2: linger after answering a CALL_ABORT (§3.1.2.1).
    pub abort_2: Duration,
    /// TIMER_VAL_DISCONNECT_STATE_TIMER_1: wait for CALL_DISCONNECT_ACK (§3.1.2.2).
    pub disconnect_1: Duration,
    /// TIMER_VAL_DISCONNECT_STATE_TIMER_2: linger after CALL_DISCONNECT_ACK (§3.1.2.2).
    pub disconnect_2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            negotiation: Duration::from_secs(60),
            hello: Duration::from_secs(60),
            abort_1: Duration::from_secs(3),
            abort_2: Duration::from_secs(1),
            disconnect_1: Duration::from_secs(5),
            disconnect_2: Duration::from_secs(1),
        }
    }
}

/// Server configuration, shared by every connection.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The PPP server configuration (auth policy, addresses, DNS, PPP timers).
    pub ppp: Arc<sstp_ppp::ServerConfig>,
    /// Hash algorithms offered for crypto binding; both by default, since some clients leave
    /// when SHA1 is not offered even though they then choose SHA256.
    pub hash_protocols: HashProtocolSet,
    /// SSTP timers.
    pub timers: Timers,
    /// CALL_CONNECT_NAKs sent before the server gives up with RETRY_COUNT_EXCEEDED. Windows
    /// servers allow 3 (§3.3.5.2.2, Appendix A <16>).
    pub max_connect_naks: u8,
    /// What a DHCPINFORM from the peer is answered with (see [`crate::ip_policy`]); `None`:
    /// it is not answered and reaches the caller like any packet.
    pub dhcp_inform: Option<Arc<sstp_ppp::dhcp_inform::InformConfig>>,
}

impl ServerConfig {
    /// The spec's defaults around a PPP configuration.
    #[must_use]
    pub fn new(ppp: Arc<sstp_ppp::ServerConfig>) -> Self {
        Self {
            ppp,
            hash_protocols: HashProtocolSet::BOTH,
            timers: Timers::default(),
            max_connect_naks: 3,
            dhcp_inform: None,
        }
    }
}

/// When the client sends CALL_CONNECTED. Real clients differ; the knob lets tests reproduce
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CallConnectedTiming {
    /// When PPP reports authentication complete, as the spec describes (§3.2.7.1) and Windows
    /// does.
    #[default]
    AfterAuthentication,
    /// Right after our own MS-CHAPv2 Response, before the server's Success, as the Linux
    /// sstp-client does. The HLAK is computable from our own response.
    AfterChapResponse,
    /// Even ahead of our MS-CHAPv2 Response on the wire, so the server is certain to get it
    /// before it knows the HLAK and must buffer it.
    BeforeChapResponse,
    /// Never (old sstp-client with PAP): the server's negotiation timer must end the call.
    Never,
}

/// Client configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The PPP client configuration (user name, password, auth policy, PPP timers).
    pub ppp: sstp_ppp::ClientConfig,
    /// The `Host` header.
    pub host: String,
    /// The `SSTPCORRELATIONID` header (a braced GUID, new per attempt), if any.
    pub correlation_id: Option<String>,
    /// Hash algorithms the client accepts; it picks the strongest one offered (§2.2.10).
    pub hash_protocols: HashProtocolSet,
    /// SSTP timers.
    pub timers: Timers,
    /// When CALL_CONNECTED goes out.
    pub call_connected: CallConnectedTiming,
    /// CALL_CONNECT_NAKs tolerated before giving up; Windows retries 3 times (Appendix A <10>).
    pub max_connect_naks: u8,
    /// When `correlation_id` is `None`: generate a new GUID for each connection, in this
    /// style, from the connection's random source.
    pub new_correlation_id: Option<GuidStyle>,
    /// Send PPP frames (but LCP) with the header compression the server acknowledged
    /// (PFC/ACFC); only a PPP client that asks for it ever gets it.
    pub compress_frames: bool,
    /// Keep a transcript of the HTTP exchange, every control message and PPP control frame,
    /// both ways ([`crate::ClientConnection::take_recorded`]).
    pub record: bool,
}

impl ClientConfig {
    /// The spec's defaults around a PPP configuration.
    #[must_use]
    pub fn new(ppp: sstp_ppp::ClientConfig, host: impl Into<String>) -> Self {
        Self {
            ppp,
            host: host.into(),
            correlation_id: None,
            hash_protocols: HashProtocolSet::BOTH,
            timers: Timers::default(),
            call_connected: CallConnectedTiming::default(),
            max_connect_naks: 3,
            new_correlation_id: None,
            compress_frames: false,
            record: false,
        }
    }

    /// The same configuration with the knobs `profile` decides set its way.
    #[must_use]
    pub fn with_profile(mut self, profile: ClientProfile) -> Self {
        profile.apply(&mut self);
        self
    }
}
