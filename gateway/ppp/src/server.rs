//! The server side of a PPP link: LCP, then authentication, then IPCP and IPv6CP.

use std::{fmt, net::Ipv4Addr, sync::Arc, time::Instant};

use rand_core::Rng;

use crate::{
    AddressAllocator, AuthFailure, DownReason, Protocol, ServerConfig, ServerEvent, UserLookup,
    auth::{AuthOutcome, chap::ChapServer, pap::PapServer},
    fsm::{Failure, Fsm, LayerEvent},
    ipcp::IpcpServerPolicy,
    ipv6cp::Ipv6cpPolicy,
    lcp::{AuthProtocol, Lcp, LcpOutcome, Role},
    link::{Link, Phase, Received, Timer},
};

#[derive(Debug)]
enum Authenticator {
    Chap(ChapServer),
    Pap(PapServer),
}

/// The server's network-layer protocols.
#[derive(Debug)]
struct Ncps {
    ipcp: Fsm<IpcpServerPolicy>,
    ipv6cp: Option<Fsm<Ipv6cpPolicy>>,
}

/// A sans-IO PPP server for one SSTP session. See the crate docs for the call order.
pub struct Server {
    config: Arc<ServerConfig>,
    users: Arc<dyn UserLookup>,
    allocator: Box<dyn AddressAllocator>,
    link: Link<ServerEvent, Authenticator, Ncps>,
    /// The address taken from the allocator, owed back to it.
    address: Option<Ipv4Addr>,
}

impl Server {
    /// Creates the server of one session. `rng` supplies challenges, magic numbers and
    /// interface identifiers and must be cryptographically secure (a seeded generator is only
    /// for tests); any `rand_core` 0.10 [`Rng`] that is `Send` fits.
    pub fn new(
        config: Arc<ServerConfig>,
        users: Arc<dyn UserLookup>,
        allocator: Box<dyn AddressAllocator>,
        rng: Box<dyn Rng + Send>,
    ) -> Self {
        let lcp = Lcp::new(Role::Authenticator, config.auth, config.mru, config.timers);
        Self {
            config,
            users,
            allocator,
            link: Link::new(lcp, rng),
            address: None,
        }
    }

    /// The transport is up (SSTP sent CONNECT_ACK): LCP starts and sends its Configure-Request.
    pub fn lower_up(&mut self, now: Instant) {
        self.link.lower_up(now);
    }

    /// Handles one received control frame (anything but IPv4/IPv6 data, which the caller
    /// sends straight to the data path).
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
            // RFC 1661 §3.4: network-layer packets before the Network phase are discarded;
            // data frames after it belong to the caller's data path, not here.
            (Protocol::IPCP | Protocol::IPV4, _) => {
                tracing::trace!(%protocol, "frame outside its phase dropped");
            }
            (Protocol::IPV6CP | Protocol::IPV6, _) if self.config.ipv6 => {
                tracing::trace!(%protocol, "frame outside its phase dropped");
            }
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
        let outcome = match link.phase.auth_mut() {
            Some(Authenticator::Chap(chap)) => chap.handle_timeout(&mut link.wire.cx(now)),
            Some(Authenticator::Pap(pap)) => pap.handle_timeout(now),
            None => None,
        };
        if let Some(outcome) = outcome {
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
    }

    /// The next instant [`Server::handle_timeout`] must be called at, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(_, at)| at)
    }

    /// The timer due first.
    pub(crate) fn next_timer(&self) -> Option<(Timer, Instant)> {
        let phase = &self.link.phase;
        if matches!(phase, Phase::Finished) {
            return None;
        }
        let auth = match phase.auth() {
            Some(Authenticator::Chap(chap)) => chap.poll_timeout(),
            Some(Authenticator::Pap(pap)) => pap.poll_timeout(),
            None => None,
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
        ])
    }

    /// The next whole PPP frame to send (uncompressed header), if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.poll_transmit()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.link.poll_event()
    }

    /// Terminates the link with an LCP Terminate-Request; [`ServerEvent::Down`] follows once the
    /// peer acknowledges or the terminate timer runs out.
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

    /// The transport is gone: nothing more is sent, the address goes back to the pool and
    /// [`ServerEvent::Down`] is reported if it was not already.
    pub fn lower_down(&mut self) {
        let reason = self.link.lower_down();
        self.finish(reason);
    }

    /// The address assigned to the peer, from successful authentication until the link ends.
    #[must_use]
    pub fn peer_ipv4(&self) -> Option<Ipv4Addr> {
        self.address
    }

    fn on_lcp(&mut self, now: Instant, outcome: LcpOutcome) {
        match outcome {
            LcpOutcome::Nothing => {}
            LcpOutcome::Layer(LayerEvent::Up) => self.start_auth(now),
            LcpOutcome::Layer(LayerEvent::Down) => {
                self.link.enter(Phase::Terminate);
                if self.link.closing.is_none() && self.link.lcp.fsm.failure().is_none() {
                    // The peer sent a Configure-Request on an open link.
                    self.terminate(now, DownReason::Renegotiation);
                }
            }
            LcpOutcome::Layer(LayerEvent::Started) => {}
            LcpOutcome::Layer(LayerEvent::Finished) => {
                let reason = self.lcp_failure_reason();
                self.finish(reason);
            }
            LcpOutcome::ProtocolRejected(protocol) => self.on_protocol_rejected(now, protocol),
        }
    }

    /// Why LCP finished, preferring the reason we closed it for.
    fn lcp_failure_reason(&mut self) -> DownReason {
        if let Some(reason) = self.link.closing.take() {
            return reason;
        }
        let policy = &self.link.lcp.fsm.policy;
        match self.link.lcp.fsm.failure() {
            Some(Failure::NotConverging) if policy.loop_suspected > 0 => {
                DownReason::LoopbackDetected
            }
            Some(Failure::NotConverging) if policy.auth_refused => {
                self.link.events.push_back(ServerEvent::AuthFailed {
                    username: None,
                    reason: AuthFailure::MethodNotAllowed,
                });
                DownReason::AuthFailed(AuthFailure::MethodNotAllowed)
            }
            Some(failure) => failure.down_reason(Protocol::LCP),
            None => DownReason::PeerTerminated,
        }
    }

    fn on_protocol_rejected(&mut self, now: Instant, protocol: Protocol) {
        let link = &mut self.link;
        match (protocol, &mut link.phase) {
            (Protocol::IPCP, Phase::Network { ncp, .. }) => {
                let event = ncp.ipcp.rxj(&mut link.wire.cx(now), false);
                self.on_ipcp(now, event);
            }
            (Protocol::IPV6CP, Phase::Network { ncp, .. }) => {
                if let Some(ipv6cp) = &mut ncp.ipv6cp {
                    let event = ipv6cp.rxj(&mut link.wire.cx(now), false);
                    self.on_ipv6cp(event);
                }
            }
            (Protocol::CHAP | Protocol::PAP, Phase::Authenticate(_)) => {
                self.on_auth_outcome(
                    now,
                    AuthOutcome::Failure {
                        username: None,
                        reason: AuthFailure::MethodNotAllowed,
                    },
                );
            }
            _ => {}
        }
    }

    fn start_auth(&mut self, now: Instant) {
        let auth = match self.link.lcp.fsm.policy.our_auth {
            Some(AuthProtocol::MsChapV2) => Authenticator::Chap(ChapServer::start(
                &mut self.link.wire.cx(now),
                &self.config.server_name,
                self.config.timers,
            )),
            Some(AuthProtocol::Pap) => {
                Authenticator::Pap(PapServer::start(now, self.config.timers))
            }
            None => {
                // The policy allows no method at all: never let a peer in unauthenticated.
                let failure = AuthOutcome::Failure {
                    username: None,
                    reason: AuthFailure::MethodNotAllowed,
                };
                return self.on_auth_outcome(now, failure);
            }
        };
        self.link.enter(Phase::Authenticate(auth));
    }

    fn on_auth_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
        let link = &mut self.link;
        let outcome = match (link.phase.auth_mut(), protocol) {
            (Some(Authenticator::Chap(chap)), Protocol::CHAP) => chap.handle(
                &mut link.wire.cx(now),
                information,
                &*self.users,
                &mut *self.allocator,
            ),
            (Some(Authenticator::Pap(pap)), Protocol::PAP) => pap.handle(
                &mut link.wire.cx(now),
                information,
                &*self.users,
                &mut *self.allocator,
            ),
            _ => {
                tracing::trace!(%protocol, "authentication frame for a method not in use dropped");
                None
            }
        };
        if !matches!(self.link.phase, Phase::Authenticate(_)) {
            // Only retransmitted answers matter once authentication is over.
            return;
        }
        if let Some(outcome) = outcome {
            self.on_auth_outcome(now, outcome);
        }
    }

    fn on_auth_outcome(&mut self, now: Instant, outcome: AuthOutcome) {
        match outcome {
            AuthOutcome::Success {
                username,
                method,
                hlak,
                address,
            } => {
                tracing::debug!(%username, ?method, "peer authenticated");
                // Owed back from here on, whatever happens next.
                self.address = Some(address);
                self.link.events.push_back(ServerEvent::Authenticated {
                    username,
                    method,
                    hlak,
                });
                self.start_network(now, address);
            }
            AuthOutcome::Failure { username, reason } => {
                tracing::debug!(?username, %reason, "authentication failed");
                self.link
                    .events
                    .push_back(ServerEvent::AuthFailed { username, reason });
                self.terminate(now, DownReason::AuthFailed(reason));
            }
        }
    }

    fn start_network(&mut self, now: Instant, address: Ipv4Addr) {
        let config = &self.config;
        let policy = IpcpServerPolicy::new(config.local_ipv4, address, config.dns);
        let mut ipcp = Fsm::new(Protocol::IPCP, config.timers, policy);
        let mut ipv6cp = config
            .ipv6
            .then(|| Fsm::new(Protocol::IPV6CP, config.timers, Ipv6cpPolicy::default()));
        let mut cx = self.link.wire.cx(now);
        let _ = ipcp.open(&mut cx);
        let _ = ipcp.up(&mut cx);
        if let Some(ipv6cp) = &mut ipv6cp {
            let _ = ipv6cp.open(&mut cx);
            let _ = ipv6cp.up(&mut cx);
        }
        self.link.enter_network(Ncps { ipcp, ipv6cp });
    }

    fn on_ipcp(&mut self, now: Instant, event: Option<LayerEvent>) {
        let Some(ncp) = self.link.phase.ncp() else {
            return;
        };
        match event {
            Some(LayerEvent::Up) => {
                let peer = ncp.ipcp.policy.peer;
                tracing::debug!(%peer, "IPCP opened");
                self.link.events.push_back(ServerEvent::Ipv4Up { peer });
            }
            Some(LayerEvent::Finished) => {
                // IPv4 is what the tunnel is for: without it the session is useless.
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
        match (event, ipv6cp.policy.peer_id) {
            (Some(LayerEvent::Up), Some(peer_interface_id)) => {
                self.link
                    .events
                    .push_back(ServerEvent::Ipv6Up { peer_interface_id });
            }
            (Some(LayerEvent::Finished), _) => {
                tracing::debug!("IPv6CP finished; the link carries IPv4 only");
            }
            _ => {}
        }
    }

    /// Closes LCP (Terminate-Request) and remembers why, for the Down event.
    fn terminate(&mut self, now: Instant, reason: DownReason) {
        if self.link.terminate(now, reason, reason_text) {
            let reason = self.lcp_failure_reason();
            self.finish(reason);
        }
    }

    /// Reports Down once and gives the address back.
    fn finish(&mut self, reason: DownReason) {
        let down = ServerEvent::Down {
            reason: reason.clone(),
        };
        if self.link.finish(&reason, down) {
            self.release_address();
        }
    }

    fn release_address(&mut self) {
        if let Some(address) = self.address.take() {
            self.allocator.release(address);
        }
    }
}

/// What our LCP Terminate-Request says for `reason`.
fn reason_text(reason: &DownReason) -> &'static [u8] {
    let text = match reason {
        DownReason::AuthFailed(failure) => match failure {
            AuthFailure::SessionLimit => crate::Refusal::SessionLimit.message(),
            AuthFailure::AddressExhausted => crate::Refusal::AddressExhausted.message(),
            AuthFailure::GatewayFull => crate::Refusal::GatewayFull.message(),
            AuthFailure::MethodNotAllowed => "No acceptable authentication method",
            AuthFailure::Timeout => "Authentication timed out",
            _ => "Authentication failed",
        },
        DownReason::LocalClose { .. } => "Gateway closed the session",
        DownReason::LoopbackDetected => "Loopback detected",
        DownReason::Renegotiation => "LCP renegotiation is not supported",
        DownReason::NotConverging { .. } | DownReason::PeerRejected { .. } => "Negotiation failed",
        _ => "",
    };
    text.as_bytes()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.release_address();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("phase", &self.link.phase.name())
            .field("lcp", &self.link.lcp.fsm.state())
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
