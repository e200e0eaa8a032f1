//! The client side of a PPP link, for in-memory tests and the load tool: it authenticates
//! with the configured credentials and asks for an address and DNS.

use std::{fmt, time::Instant};

use rand_core::Rng;

use crate::{
    ClientConfig, ClientEvent, DownReason, FrameCompression, Hlak, LinkProfile, Protocol,
    auth::{ClientAuthOutcome, chap::ChapClient, pap::PapClient},
    ccp::WindowsCcpPolicy,
    config::DEFAULT_MRU,
    fsm::{Fsm, LayerEvent},
    ipcp::IpcpClientPolicy,
    ipv6cp::Ipv6cpPolicy,
    lcp::{AuthProtocol, Lcp, LcpOutcome, Role, WindowsLcp},
    link::{Link, Phase, Received, Timer},
};

#[derive(Debug)]
enum Authenticatee {
    Chap(ChapClient),
    Pap(PapClient),
}

/// The client's network-layer protocols.
#[derive(Debug)]
struct Ncps {
    ipcp: Fsm<IpcpClientPolicy>,
    ipv6cp: Option<Fsm<Ipv6cpPolicy>>,
    /// Windows only: the CCP request it sends after authentication.
    ccp: Option<Fsm<WindowsCcpPolicy>>,
}

/// A sans-IO PPP client. Same call order as [`crate::Server`].
pub struct Client {
    config: ClientConfig,
    link: Link<ClientEvent, Authenticatee, Ncps>,
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
            link: Link::new(lcp, rng),
        }
    }

    /// The header compression the server acknowledged in LCP, for the frames we send. The
    /// frames [`Client::poll_transmit`] yields are always uncompressed; a caller reproducing a
    /// client that compresses applies this to its non-LCP frames.
    #[must_use]
    pub fn frame_compression(&self) -> FrameCompression {
        let fsm = &self.link.lcp.fsm;
        let acked = match &fsm.policy.windows {
            Some(windows) if fsm.is_opened() => windows.acked,
            _ => (false, false),
        };
        FrameCompression {
            protocol_field: acked.0,
            address_control: acked.1,
        }
    }

    /// The transport is up: LCP starts.
    pub fn lower_up(&mut self, now: Instant) {
        self.link.lower_up(now);
    }

    /// Handles one received control frame.
    pub fn handle_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
        match self.link.receive(now, protocol, information) {
            Received::Lcp(outcome) => return self.on_lcp(now, outcome),
            Received::Dropped => return,
            Received::Upper => {}
        }
        let link = &mut self.link;
        match (protocol, link.phase.ncp_mut()) {
            (Protocol::CHAP | Protocol::PAP, _) => self.on_auth_frame(now, protocol, information),
            (Protocol::IPCP, Some(ncp)) => {
                let event = ncp
                    .ipcp
                    .handle_packet_raw(&mut link.wire.cx(now), information);
                self.on_ipcp(now, event);
            }
            (
                Protocol::IPV6CP,
                Some(Ncps {
                    ipv6cp: Some(ipv6cp),
                    ..
                }),
            ) => {
                let event = ipv6cp.handle_packet_raw(&mut link.wire.cx(now), information);
                self.on_ipv6cp(event);
            }
            (Protocol::CCP, Some(Ncps { ccp: Some(ccp), .. })) => {
                let _ = ccp.handle_packet_raw(&mut link.wire.cx(now), information);
            }
            (Protocol::IPCP | Protocol::IPV4, _) => {}
            (Protocol::IPV6CP | Protocol::IPV6, _) if self.config.ipv6 => {}
            _ => link
                .lcp
                .protocol_reject(&mut link.wire.cx(now), protocol, information),
        }
    }

    /// Fires whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let next = self.next_timer();
        let Some(outcome) = self.link.lcp_timeout(now, next) else {
            return;
        };
        self.on_lcp(now, outcome);
        let link = &mut self.link;
        if let Some(Authenticatee::Pap(pap)) = link.phase.auth_mut()
            && let Some(outcome) = pap.handle_timeout(&mut link.wire.cx(now))
        {
            self.on_auth_outcome(now, outcome);
        }
        let link = &mut self.link;
        if let Some(ncp) = link.phase.ncp_mut() {
            let event = ncp.ipcp.handle_timeout(&mut link.wire.cx(now));
            self.on_ipcp(now, event);
        }
        let link = &mut self.link;
        if let Some(Ncps {
            ipv6cp: Some(ipv6cp),
            ..
        }) = link.phase.ncp_mut()
        {
            let event = ipv6cp.handle_timeout(&mut link.wire.cx(now));
            self.on_ipv6cp(event);
        }
        let link = &mut self.link;
        if let Some(Ncps { ccp: Some(ccp), .. }) = link.phase.ncp_mut()
            && ccp.handle_timeout(&mut link.wire.cx(now)) == Some(LayerEvent::Finished)
        {
            tracing::debug!("CCP got no answer; the link goes on without it");
        }
    }

    /// The next instant [`Client::handle_timeout`] must be called at, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(_, at)| at)
    }

    /// The timer due first.
    fn next_timer(&self) -> Option<(Timer, Instant)> {
        let phase = &self.link.phase;
        if matches!(phase, Phase::Finished) {
            return None;
        }
        let auth = match phase.auth() {
            Some(Authenticatee::Pap(pap)) => pap.poll_timeout(),
            _ => None,
        };
        let ncp = phase.ncp();
        Timer::next([
            (Timer::Lcp, self.link.lcp.fsm.poll_timeout()),
            (Timer::Auth, auth),
            (Timer::Ipcp, ncp.and_then(|n| n.ipcp.poll_timeout())),
            (
                Timer::Ipv6cp,
                ncp.and_then(|n| n.ipv6cp.as_ref()?.poll_timeout()),
            ),
            (Timer::Ccp, ncp.and_then(|n| n.ccp.as_ref()?.poll_timeout())),
        ])
    }

    /// The next whole PPP frame to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.poll_transmit()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.link.poll_event()
    }

    /// Terminates the link; [`ClientEvent::Down`] follows.
    pub fn close(&mut self, now: Instant, reason: &str) {
        let reason = DownReason::LocalClose {
            reason: reason.to_owned(),
        };
        match self.link.phase {
            Phase::Finished => {}
            Phase::Dead => self.finish(reason),
            _ => self.terminate(now, reason),
        }
    }

    /// The transport is gone: nothing more is sent.
    pub fn lower_down(&mut self) {
        let reason = self.link.lower_down();
        self.finish(reason);
    }

    fn on_lcp(&mut self, now: Instant, outcome: LcpOutcome) {
        let link = &mut self.link;
        match outcome {
            LcpOutcome::Layer(LayerEvent::Up) => self.start_auth(now),
            LcpOutcome::Layer(LayerEvent::Down) => {
                link.enter(Phase::Terminate);
                if link.closing.is_none() && link.lcp.fsm.failure().is_none() {
                    self.terminate(now, DownReason::Renegotiation);
                }
            }
            LcpOutcome::Layer(LayerEvent::Finished) => {
                let reason = link.closing.take().unwrap_or_else(|| {
                    link.lcp
                        .fsm
                        .failure()
                        .map_or(DownReason::PeerTerminated, |f| f.down_reason(Protocol::LCP))
                });
                self.finish(reason);
            }
            LcpOutcome::ProtocolRejected(Protocol::IPV6CP) => {
                if let Some(Ncps {
                    ipv6cp: Some(ipv6cp),
                    ..
                }) = link.phase.ncp_mut()
                {
                    let event = ipv6cp.rxj(&mut link.wire.cx(now), false);
                    self.on_ipv6cp(event);
                }
            }
            LcpOutcome::ProtocolRejected(Protocol::CCP) => {
                if let Some(Ncps { ccp: Some(ccp), .. }) = link.phase.ncp_mut() {
                    // RXJ-: CCP stops quietly; the link carries IP without it.
                    let _ = ccp.rxj(&mut link.wire.cx(now), false);
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
        let config = &self.config;
        let auth = match self.link.lcp.fsm.policy.peer_auth {
            Some(AuthProtocol::MsChapV2) => {
                Authenticatee::Chap(ChapClient::new(&config.username, &config.password))
            }
            Some(AuthProtocol::Pap) => Authenticatee::Pap(PapClient::start(
                &mut self.link.wire.cx(now),
                &config.username,
                &config.password,
                config.timers,
            )),
            None => {
                // The server asked for no authentication: there are no keys to bind.
                let outcome = ClientAuthOutcome::Success { hlak: Hlak::ZERO };
                return self.on_auth_outcome(now, outcome);
            }
        };
        self.link.enter(Phase::Authenticate(auth));
    }

    fn on_auth_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
        let link = &mut self.link;
        let outcome = match (link.phase.auth_mut(), protocol) {
            (Some(Authenticatee::Chap(chap)), Protocol::CHAP) => {
                chap.handle(&mut link.wire.cx(now), information)
            }
            (Some(Authenticatee::Pap(pap)), Protocol::PAP) => pap.handle(information),
            _ => None,
        };
        if let Some(outcome) = outcome
            && matches!(self.link.phase, Phase::Authenticate(_))
        {
            self.on_auth_outcome(now, outcome);
        }
    }

    fn on_auth_outcome(&mut self, now: Instant, outcome: ClientAuthOutcome) {
        match outcome {
            ClientAuthOutcome::Success { hlak } => {
                self.link
                    .events
                    .push_back(ClientEvent::Authenticated { hlak });
                self.start_network(now);
            }
            ClientAuthOutcome::Failure { message } => {
                self.link
                    .events
                    .push_back(ClientEvent::AuthFailed { message });
                self.terminate(now, DownReason::AuthRejected);
            }
        }
    }

    fn start_network(&mut self, now: Instant) {
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
        let mut cx = self.link.wire.cx(now);
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
        self.link.enter_network(Ncps { ipcp, ipv6cp, ccp });
    }

    fn on_ipcp(&mut self, now: Instant, event: Option<LayerEvent>) {
        let Some(ncp) = self.link.phase.ncp() else {
            return;
        };
        match event {
            Some(LayerEvent::Up) => {
                let policy = &ncp.ipcp.policy;
                let up = ClientEvent::Ipv4Up {
                    local: policy.local,
                    dns: policy.dns,
                };
                self.link.events.push_back(up);
            }
            Some(LayerEvent::Finished) => {
                let reason = ncp.ipcp.failure().map_or(DownReason::PeerTerminated, |f| {
                    f.down_reason(Protocol::IPCP)
                });
                self.terminate(now, reason);
            }
            _ => {}
        }
    }

    fn on_ipv6cp(&mut self, event: Option<LayerEvent>) {
        let Some(Ncps {
            ipv6cp: Some(ipv6cp),
            ..
        }) = self.link.phase.ncp()
        else {
            return;
        };
        if let (Some(LayerEvent::Up), Some(peer_interface_id)) = (event, ipv6cp.policy.peer_id) {
            let up = ClientEvent::Ipv6Up {
                local_interface_id: ipv6cp.policy.local_id,
                peer_interface_id,
            };
            self.link.events.push_back(up);
        }
    }

    fn terminate(&mut self, now: Instant, reason: DownReason) {
        // Our Terminate-Request carries no text: only the server explains itself.
        if self.link.terminate(now, reason, |_| b"") {
            let reason = self.link.closing.take().unwrap_or(DownReason::LowerDown);
            self.finish(reason);
        }
    }

    fn finish(&mut self, reason: DownReason) {
        let down = ClientEvent::Down {
            reason: reason.clone(),
        };
        self.link.finish(&reason, down);
    }
}

/// The MRU the Windows client asks for over SSTP (windows-client.md §1.5).
const WINDOWS_MRU: u16 = 4091;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("phase", &self.link.phase.name())
            .field("lcp", &self.link.lcp.fsm.state())
            .finish_non_exhaustive()
    }
}
