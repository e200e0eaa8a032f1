//! The server side of a PPP link: LCP, then authentication, then IPCP and IPv6CP.

use std::{collections::VecDeque, fmt, net::Ipv4Addr, sync::Arc, time::Instant};

use rand_core::Rng;

use crate::{
    AddressAllocator, AuthFailure, DownReason, Protocol, ServerConfig, ServerEvent, UserLookup,
    auth::{AuthOutcome, chap::ChapServer, pap::PapServer},
    fsm::{Ctx, Failure, Fsm, LayerEvent},
    ipcp::IpcpServerPolicy,
    ipv6cp::Ipv6cpPolicy,
    lcp::{AuthProtocol, Lcp, LcpOutcome, Role},
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

/// The RFC 1661 §3.2 link phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dead,
    Establish,
    Authenticate,
    Network,
    /// Down was reported: nothing more happens.
    Finished,
}

#[derive(Debug)]
enum Authenticator {
    Chap(ChapServer),
    Pap(PapServer),
}

/// A sans-IO PPP server for one SSTP session. See the crate docs for the call order.
pub struct Server {
    config: Arc<ServerConfig>,
    users: Arc<dyn UserLookup>,
    allocator: Box<dyn AddressAllocator>,
    rng: Box<dyn Rng + Send>,
    out: Outbox,
    events: VecDeque<ServerEvent>,
    phase: Phase,
    lcp: Lcp,
    auth: Option<Authenticator>,
    ipcp: Option<Fsm<IpcpServerPolicy>>,
    ipv6cp: Option<Fsm<Ipv6cpPolicy>>,
    /// The address taken from the allocator, owed back to it.
    address: Option<Ipv4Addr>,
    /// Why we are closing the link, reported when LCP finishes.
    closing: Option<DownReason>,
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
            rng,
            out: Outbox::default(),
            events: VecDeque::new(),
            phase: Phase::Dead,
            lcp,
            auth: None,
            ipcp: None,
            ipv6cp: None,
            address: None,
            closing: None,
        }
    }

    /// The transport is up (SSTP sent CONNECT_ACK): LCP starts and sends its Configure-Request.
    pub fn lower_up(&mut self, now: Instant) {
        if self.phase != Phase::Dead {
            return;
        }
        self.phase = Phase::Establish;
        let mut cx = cx!(self, now);
        let _started = self.lcp.fsm.open(&mut cx);
        let _ = self.lcp.fsm.up(&mut cx);
    }

    /// Handles one received control frame (anything but IPv4/IPv6 data, which the caller
    /// sends straight to the data path).
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
            // RFC 1661 §3.2: only LCP is allowed before the link is established.
            tracing::trace!(%protocol, "frame before LCP Opened dropped");
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
            // RFC 1661 §3.4: network-layer packets before the Network phase are discarded;
            // data frames after it belong to the caller's data path, not here.
            Protocol::IPCP | Protocol::IPV4 => {
                tracing::trace!(%protocol, "frame outside its phase dropped");
            }
            Protocol::IPV6CP | Protocol::IPV6 if self.config.ipv6 => {
                tracing::trace!(%protocol, "frame outside its phase dropped");
            }
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
        let outcome = match &mut self.auth {
            Some(Authenticator::Chap(chap)) => chap.handle_timeout(&mut cx!(self, now)),
            Some(Authenticator::Pap(pap)) => pap.handle_timeout(now),
            None => None,
        };
        if let Some(outcome) = outcome {
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
    }

    /// The next instant [`Server::handle_timeout`] must be called at, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Finished {
            return None;
        }
        let auth = match &self.auth {
            Some(Authenticator::Chap(chap)) => chap.poll_timeout(),
            Some(Authenticator::Pap(pap)) => pap.poll_timeout(),
            None => None,
        };
        [
            self.lcp.fsm.poll_timeout(),
            auth,
            self.ipcp.as_ref().and_then(Fsm::poll_timeout),
            self.ipv6cp.as_ref().and_then(Fsm::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next whole PPP frame to send (uncompressed header), if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Terminates the link with an LCP Terminate-Request; [`ServerEvent::Down`] follows once the
    /// peer acknowledges or the terminate timer runs out.
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

    /// The transport is gone: nothing more is sent, the address goes back to the pool and
    /// [`ServerEvent::Down`] is reported if it was not already.
    pub fn lower_down(&mut self) {
        self.out.close();
        let _ = self.lcp.fsm.down();
        let reason = self.closing.take().unwrap_or(DownReason::LowerDown);
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
                self.auth = None;
                self.ipcp = None;
                self.ipv6cp = None;
                if self.closing.is_none() && self.lcp.fsm.failure().is_none() {
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
        if let Some(reason) = self.closing.take() {
            return reason;
        }
        let policy = &self.lcp.fsm.policy;
        match self.lcp.fsm.failure() {
            Some(Failure::NotConverging) if policy.loop_suspected > 0 => {
                DownReason::LoopbackDetected
            }
            Some(Failure::NotConverging) if policy.auth_refused => {
                self.events.push_back(ServerEvent::AuthFailed {
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
        match protocol {
            Protocol::IPCP => {
                if let Some(ipcp) = &mut self.ipcp {
                    let event = ipcp.rxj(&mut cx!(self, now), false);
                    self.on_ipcp(now, event);
                }
            }
            Protocol::IPV6CP => {
                if let Some(ipv6cp) = &mut self.ipv6cp {
                    let event = ipv6cp.rxj(&mut cx!(self, now), false);
                    self.on_ipv6cp(event);
                }
            }
            Protocol::CHAP | Protocol::PAP if self.phase == Phase::Authenticate => {
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
        self.phase = Phase::Authenticate;
        let auth = match self.lcp.fsm.policy.our_auth {
            Some(AuthProtocol::MsChapV2) => Authenticator::Chap(ChapServer::start(
                &mut cx!(self, now),
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
        self.auth = Some(auth);
    }

    fn on_auth_frame(&mut self, now: Instant, protocol: Protocol, information: &[u8]) {
        let outcome = match (&mut self.auth, protocol) {
            (Some(Authenticator::Chap(chap)), Protocol::CHAP) => chap.handle(
                &mut cx!(self, now),
                information,
                &*self.users,
                &mut *self.allocator,
            ),
            (Some(Authenticator::Pap(pap)), Protocol::PAP) => pap.handle(
                &mut cx!(self, now),
                information,
                &*self.users,
                &mut *self.allocator,
            ),
            _ => {
                tracing::trace!(%protocol, "authentication frame for a method not in use dropped");
                None
            }
        };
        if self.phase != Phase::Authenticate {
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
                self.events.push_back(ServerEvent::Authenticated {
                    username,
                    method,
                    hlak,
                });
                self.start_network(now, address);
            }
            AuthOutcome::Failure { username, reason } => {
                tracing::debug!(?username, %reason, "authentication failed");
                self.events
                    .push_back(ServerEvent::AuthFailed { username, reason });
                self.terminate(now, DownReason::AuthFailed(reason));
            }
        }
    }

    fn start_network(&mut self, now: Instant, address: Ipv4Addr) {
        self.phase = Phase::Network;
        let config = &self.config;
        let policy = IpcpServerPolicy::new(config.local_ipv4, address, config.dns);
        let mut ipcp = Fsm::new(Protocol::IPCP, config.timers, policy);
        let mut ipv6cp = config
            .ipv6
            .then(|| Fsm::new(Protocol::IPV6CP, config.timers, Ipv6cpPolicy::default()));
        let mut cx = cx!(self, now);
        let _ = ipcp.open(&mut cx);
        let _ = ipcp.up(&mut cx);
        if let Some(ipv6cp) = &mut ipv6cp {
            let _ = ipv6cp.open(&mut cx);
            let _ = ipv6cp.up(&mut cx);
        }
        self.ipcp = Some(ipcp);
        self.ipv6cp = ipv6cp;
    }

    fn on_ipcp(&mut self, now: Instant, event: Option<LayerEvent>) {
        let Some(ipcp) = &self.ipcp else { return };
        match event {
            Some(LayerEvent::Up) => {
                let peer = ipcp.policy.peer;
                tracing::debug!(%peer, "IPCP opened");
                self.events.push_back(ServerEvent::Ipv4Up { peer });
            }
            Some(LayerEvent::Finished) => {
                // IPv4 is what the tunnel is for: without it the session is useless.
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
        match (event, ipv6cp.policy.peer_id) {
            (Some(LayerEvent::Up), Some(peer_interface_id)) => {
                self.events
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
        if self.closing.is_none() {
            self.closing = Some(reason);
        }
        self.auth = None;
        self.ipcp = None;
        self.ipv6cp = None;
        // RFC 1661 §5.5: the Terminate-Request's data is ours to fill; pppd logs it as
        // "LCP terminated by peer (<text>)", so a refused user sees why.
        self.lcp
            .fsm
            .set_terminate_text(reason_text(self.closing.as_ref()));
        let event = self.lcp.fsm.close(&mut cx!(self, now));
        if event == Some(LayerEvent::Finished) {
            let reason = self.lcp_failure_reason();
            self.finish(reason);
        }
    }

    /// Reports Down once and gives the address back.
    fn finish(&mut self, reason: DownReason) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.auth = None;
        self.ipcp = None;
        self.ipv6cp = None;
        self.release_address();
        tracing::debug!(%reason, "PPP link down");
        self.events.push_back(ServerEvent::Down { reason });
    }

    fn release_address(&mut self) {
        if let Some(address) = self.address.take() {
            self.allocator.release(address);
        }
    }
}

/// What our LCP Terminate-Request says for `reason`.
fn reason_text(reason: Option<&DownReason>) -> &'static [u8] {
    let text = match reason {
        Some(DownReason::AuthFailed(failure)) => match failure {
            AuthFailure::SessionLimit => crate::Refusal::SessionLimit.message(),
            AuthFailure::AddressExhausted => crate::Refusal::AddressExhausted.message(),
            AuthFailure::GatewayFull => crate::Refusal::GatewayFull.message(),
            AuthFailure::MethodNotAllowed => "No acceptable authentication method",
            AuthFailure::Timeout => "Authentication timed out",
            _ => "Authentication failed",
        },
        Some(DownReason::LocalClose { .. }) => "Gateway closed the session",
        Some(DownReason::LoopbackDetected) => "Loopback detected",
        Some(DownReason::Renegotiation) => "LCP renegotiation is not supported",
        Some(DownReason::NotConverging { .. } | DownReason::PeerRejected { .. }) => {
            "Negotiation failed"
        }
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
            .field("phase", &self.phase)
            .field("lcp", &self.lcp.fsm.state())
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
