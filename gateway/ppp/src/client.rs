//! The client side of a PPP link, for in-memory tests and the load tool: it authenticates
//! with the configured credentials and asks for an address and DNS.

use std::{collections::VecDeque, fmt, time::Instant};

use rand_core::Rng;

use crate::{
    ClientConfig, ClientEvent, DownReason, FrameCompression, Hlak, LinkProfile, Protocol,
    auth::{ClientAuthOutcome, chap::ChapClient, pap::PapClient},
    ccp::WindowsCcpPolicy,
    config::DEFAULT_MRU,
    fsm::{Ctx, Fsm, LayerEvent},
    ipcp::IpcpClientPolicy,
    ipv6cp::Ipv6cpPolicy,
    lcp::{AuthProtocol, Lcp, LcpOutcome, Role, WindowsLcp},
    packet::Outbox,
};

/// Builds the automaton context from disjoint fields of `self`.
macro_rules! cx {
    ($self:ident, $now:expr) => {
        Ctx {
            now: $now,
            out: &mut $self.out,
            rng: &mut *$self.rng,
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dead,
    Establish,
    Authenticate,
    Network,
    Finished,
}

#[derive(Debug)]
enum Authenticatee {
    Chap(ChapClient),
    Pap(PapClient),
}

/// A sans-IO PPP client. Same call order as [`crate::Server`].
pub struct Client {
    config: ClientConfig,
    rng: Box<dyn Rng + Send>,
    out: Outbox,
    events: VecDeque<ClientEvent>,
    phase: Phase,
    lcp: Lcp,
    auth: Option<Authenticatee>,
    ipcp: Option<Fsm<IpcpClientPolicy>>,
    ipv6cp: Option<Fsm<Ipv6cpPolicy>>,
    /// Windows only: the CCP request it sends after authentication.
    ccp: Option<Fsm<WindowsCcpPolicy>>,
    closing: Option<DownReason>,
}

impl Client {
    /// Creates a client. `rng` supplies the peer challenge, magic numbers and interface
    /// identifiers; any `rand_core` 0.10 [`Rng`] that is `Send` fits.
    pub fn new(config: ClientConfig, rng: Box<dyn Rng + Send>) -> Self {
        let lcp = match config.link {
            LinkProfile::Minimal => Lcp::new(Role::Peer, config.auth, DEFAULT_MRU, config.timers),
            LinkProfile::Windows { multilink } => {
                // MRU 4091 = 4095 less the SSTP header (windows-client.md §1.5, SPEC §3.1.5.2).
                let mut lcp = Lcp::new(Role::Peer, config.auth, WINDOWS_MRU, config.timers);
                lcp.fsm.policy.windows = Some(WindowsLcp::new(multilink));
                lcp
            }
        };
        Self {
            config,
            rng,
            out: Outbox::default(),
            events: VecDeque::new(),
            phase: Phase::Dead,
            lcp,
            auth: None,
            ipcp: None,
            ipv6cp: None,
            ccp: None,
            closing: None,
        }
    }

    /// The header compression the server acknowledged in LCP, for the frames we send. The
    /// frames [`Client::poll_transmit`] yields are always uncompressed; a caller reproducing a
    /// client that compresses applies this to its non-LCP frames.
    #[must_use]
    pub fn frame_compression(&self) -> FrameCompression {
        let acked = match &self.lcp.fsm.policy.windows {
            Some(windows) if self.lcp.fsm.is_opened() => windows.acked,
            _ => (false, false),
        };
        FrameCompression {
            protocol_field: acked.0,
            address_control: acked.1,
        }
    }

    /// The transport is up: LCP starts.
    pub fn lower_up(&mut self, now: Instant) {
        if self.phase != Phase::Dead {
            return;
        }
        self.phase = Phase::Establish;
        let mut cx = cx!(self, now);
        let _started = self.lcp.fsm.open(&mut cx);
        let _ = self.lcp.fsm.up(&mut cx);
    }

    /// Handles one received control frame.
    pub fn handle_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
        if matches!(self.phase, Phase::Dead | Phase::Finished) {
            return;
        }
        if protocol == Protocol::LCP {
            let outcome = self.lcp.handle(&mut cx!(self, now), information);
            self.on_lcp(now, outcome);
            return;
        }
        if !self.lcp.fsm.is_opened() {
            return;
        }
        match protocol {
            Protocol::CHAP | Protocol::PAP => self.on_auth_frame(now, protocol, information),
            Protocol::IPCP if self.phase == Phase::Network => {
                if let Some(ipcp) = &mut self.ipcp {
                    let event = ipcp.handle_packet_raw(&mut cx!(self, now), information);
                    self.on_ipcp(now, event);
                }
            }
            Protocol::IPV6CP if self.config.ipv6 && self.phase == Phase::Network => {
                if let Some(ipv6cp) = &mut self.ipv6cp {
                    let event = ipv6cp.handle_packet_raw(&mut cx!(self, now), information);
                    self.on_ipv6cp(event);
                }
            }
            Protocol::CCP if self.ccp.is_some() && self.phase == Phase::Network => {
                if let Some(ccp) = &mut self.ccp {
                    let _ = ccp.handle_packet_raw(&mut cx!(self, now), information);
                }
            }
            Protocol::IPCP | Protocol::IPV4 => {}
            Protocol::IPV6CP | Protocol::IPV6 if self.config.ipv6 => {}
            _ => self
                .lcp
                .protocol_reject(&mut cx!(self, now), protocol, information),
        }
    }

    /// Fires whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Dead | Phase::Finished) {
            return;
        }
        let event = self.lcp.fsm.handle_timeout(&mut cx!(self, now));
        self.on_lcp(now, event.map_or(LcpOutcome::Nothing, LcpOutcome::Layer));
        if let Some(Authenticatee::Pap(pap)) = &mut self.auth
            && let Some(outcome) = pap.handle_timeout(&mut cx!(self, now))
        {
            self.on_auth_outcome(now, outcome);
        }
        if let Some(ipcp) = &mut self.ipcp {
            let event = ipcp.handle_timeout(&mut cx!(self, now));
            self.on_ipcp(now, event);
        }
        if let Some(ipv6cp) = &mut self.ipv6cp {
            let event = ipv6cp.handle_timeout(&mut cx!(self, now));
            self.on_ipv6cp(event);
        }
        if let Some(ccp) = &mut self.ccp
            && ccp.handle_timeout(&mut cx!(self, now)) == Some(LayerEvent::Finished)
        {
            tracing::debug!("CCP got no answer; the link goes on without it");
        }
    }

    /// The next instant [`Client::handle_timeout`] must be called at, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Finished {
            return None;
        }
        let auth = match &self.auth {
            Some(Authenticatee::Pap(pap)) => pap.poll_timeout(),
            _ => None,
        };
        [
            self.lcp.fsm.poll_timeout(),
            auth,
            self.ipcp.as_ref().and_then(Fsm::poll_timeout),
            self.ipv6cp.as_ref().and_then(Fsm::poll_timeout),
            self.ccp.as_ref().and_then(Fsm::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next whole PPP frame to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Terminates the link; [`ClientEvent::Down`] follows.
    pub fn close(&mut self, now: Instant, reason: &str) {
        let reason = DownReason::LocalClose {
            reason: reason.to_owned(),
        };
        match self.phase {
            Phase::Finished => {}
            Phase::Dead => self.finish(reason),
            _ => self.terminate(now, reason),
        }
    }

    /// The transport is gone: nothing more is sent.
    pub fn lower_down(&mut self) {
        self.out.close();
        let _ = self.lcp.fsm.down();
        let reason = self.closing.take().unwrap_or(DownReason::LowerDown);
        self.finish(reason);
    }

    fn on_lcp(&mut self, now: Instant, outcome: LcpOutcome) {
        match outcome {
            LcpOutcome::Layer(LayerEvent::Up) => self.start_auth(now),
            LcpOutcome::Layer(LayerEvent::Down) => {
                self.auth = None;
                self.ipcp = None;
                self.ipv6cp = None;
                self.ccp = None;
                if self.closing.is_none() && self.lcp.fsm.failure().is_none() {
                    self.terminate(now, DownReason::Renegotiation);
                }
            }
            LcpOutcome::Layer(LayerEvent::Finished) => {
                let reason = self.closing.take().unwrap_or_else(|| {
                    self.lcp
                        .fsm
                        .failure()
                        .map_or(DownReason::PeerTerminated, |f| f.down_reason(Protocol::LCP))
                });
                self.finish(reason);
            }
            LcpOutcome::ProtocolRejected(Protocol::IPV6CP) => {
                if let Some(ipv6cp) = &mut self.ipv6cp {
                    let event = ipv6cp.rxj(&mut cx!(self, now), false);
                    self.on_ipv6cp(event);
                }
            }
            LcpOutcome::ProtocolRejected(Protocol::CCP) => {
                if let Some(ccp) = &mut self.ccp {
                    // RXJ-: CCP stops quietly; the link carries IP without it.
                    let _ = ccp.rxj(&mut cx!(self, now), false);
                }
            }
            LcpOutcome::ProtocolRejected(Protocol::IPCP) => {
                self.terminate(
                    now,
                    DownReason::PeerRejected {
                        protocol: Protocol::IPCP,
                    },
                );
            }
            LcpOutcome::Layer(LayerEvent::Started)
            | LcpOutcome::ProtocolRejected(_)
            | LcpOutcome::Nothing => {}
        }
    }

    fn start_auth(&mut self, now: Instant) {
        self.phase = Phase::Authenticate;
        let config = &self.config;
        self.auth = match self.lcp.fsm.policy.peer_auth {
            Some(AuthProtocol::MsChapV2) => Some(Authenticatee::Chap(ChapClient::new(
                &config.username,
                &config.password,
            ))),
            Some(AuthProtocol::Pap) => Some(Authenticatee::Pap(PapClient::start(
                &mut cx!(self, now),
                &self.config.username,
                &self.config.password,
                self.config.timers,
            ))),
            None => {
                // The server asked for no authentication: there are no keys to bind.
                let outcome = ClientAuthOutcome::Success { hlak: Hlak::ZERO };
                return self.on_auth_outcome(now, outcome);
            }
        };
    }

    fn on_auth_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
        let outcome = match (&mut self.auth, protocol) {
            (Some(Authenticatee::Chap(chap)), Protocol::CHAP) => {
                chap.handle(&mut cx!(self, now), information)
            }
            (Some(Authenticatee::Pap(pap)), Protocol::PAP) => pap.handle(information),
            _ => None,
        };
        if let Some(outcome) = outcome
            && self.phase == Phase::Authenticate
        {
            self.on_auth_outcome(now, outcome);
        }
    }

    fn on_auth_outcome(&mut self, now: Instant, outcome: ClientAuthOutcome) {
        match outcome {
            ClientAuthOutcome::Success { hlak } => {
                self.events.push_back(ClientEvent::Authenticated { hlak });
                self.start_network(now);
            }
            ClientAuthOutcome::Failure { message } => {
                self.events.push_back(ClientEvent::AuthFailed { message });
                self.terminate(now, DownReason::AuthRejected);
            }
        }
    }

    fn start_network(&mut self, now: Instant) {
        self.phase = Phase::Network;
        let config = &self.config;
        let policy = IpcpClientPolicy::new(config.request_dns);
        let mut ipcp = Fsm::new(Protocol::IPCP, config.timers, policy);
        let mut ipv6cp = config
            .ipv6
            .then(|| Fsm::new(Protocol::IPV6CP, config.timers, Ipv6cpPolicy::default()));
        // Windows sends a CCP Configure-Request proposing MPPE once authenticated, even over
        // SSTP (windows-client.md §1.8, OGI `ppp/driver.rs`). Its order relative to IPCP is not
        // in any public trace; it goes first here, as pppd orders its NCPs.
        let mut ccp = matches!(config.link, LinkProfile::Windows { .. })
            .then(|| Fsm::new(Protocol::CCP, config.timers, WindowsCcpPolicy::default()));
        let mut cx = cx!(self, now);
        if let Some(ccp) = &mut ccp {
            let _ = ccp.open(&mut cx);
            let _ = ccp.up(&mut cx);
        }
        let _ = ipcp.open(&mut cx);
        let _ = ipcp.up(&mut cx);
        if let Some(ipv6cp) = &mut ipv6cp {
            let _ = ipv6cp.open(&mut cx);
            let _ = ipv6cp.up(&mut cx);
        }
        self.ipcp = Some(ipcp);
        self.ipv6cp = ipv6cp;
        self.ccp = ccp;
    }

    fn on_ipcp(&mut self, now: Instant, event: Option<LayerEvent>) {
        let Some(ipcp) = &self.ipcp else { return };
        match event {
            Some(LayerEvent::Up) => {
                let policy = &ipcp.policy;
                self.events.push_back(ClientEvent::Ipv4Up {
                    local: policy.local,
                    dns: policy.dns,
                });
            }
            Some(LayerEvent::Finished) => {
                let reason = ipcp.failure().map_or(DownReason::PeerTerminated, |f| {
                    f.down_reason(Protocol::IPCP)
                });
                self.terminate(now, reason);
            }
            _ => {}
        }
    }

    fn on_ipv6cp(&mut self, event: Option<LayerEvent>) {
        let Some(ipv6cp) = &self.ipv6cp else { return };
        if let (Some(LayerEvent::Up), Some(peer_interface_id)) = (event, ipv6cp.policy.peer_id) {
            self.events.push_back(ClientEvent::Ipv6Up {
                local_interface_id: ipv6cp.policy.local_id,
                peer_interface_id,
            });
        }
    }

    fn terminate(&mut self, now: Instant, reason: DownReason) {
        if self.closing.is_none() {
            self.closing = Some(reason);
        }
        self.auth = None;
        self.ipcp = None;
        self.ipv6cp = None;
        self.ccp = None;
        if self.lcp.fsm.close(&mut cx!(self, now)) == Some(LayerEvent::Finished) {
            let reason = self.closing.take().unwrap_or(DownReason::LowerDown);
            self.finish(reason);
        }
    }

    fn finish(&mut self, reason: DownReason) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.auth = None;
        self.ipcp = None;
        self.ipv6cp = None;
        self.ccp = None;
        self.events.push_back(ClientEvent::Down { reason });
    }
}

/// The MRU the Windows client asks for over SSTP (windows-client.md §1.5).
const WINDOWS_MRU: u16 = 4091;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("phase", &self.phase)
            .field("lcp", &self.lcp.fsm.state())
            .finish_non_exhaustive()
    }
}
