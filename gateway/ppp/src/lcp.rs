//! LCP (RFC 1661 §5-§6): the link options both roles negotiate, and the LCP-only codes (Echo,
//! Discard, Protocol-Reject, Identification, Time-Remaining) handled outside the automaton.

use rand_core::Rng;

use crate::{
    AuthPolicy, Protocol,
    config::{DEFAULT_MRU, Timers},
    fsm::{Ctx, Fsm, LayerEvent, NotConverging, OptionPolicy, Verdict},
    packet::{Code, ConfigOption, PACKET_HEADER_LEN, Packet, write_option},
};

/// The authentication protocol agreed in LCP (RFC 1661 §6.2 Authentication-Protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthProtocol {
    /// CHAP with algorithm 0x81 (RFC 2759 §2).
    MsChapV2,
    /// PAP (RFC 1334).
    Pap,
}

impl AuthProtocol {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Self::MsChapV2 => {
                let [hi, lo] = Protocol::CHAP.0.to_be_bytes();
                write_option(OPT_AUTH_PROTOCOL, &[hi, lo, CHAP_ALGORITHM_MSCHAPV2], out);
            }
            Self::Pap => write_option(OPT_AUTH_PROTOCOL, &Protocol::PAP.0.to_be_bytes(), out),
        }
    }

    /// Parses an Authentication-Protocol option value; `None` for anything we do not speak.
    fn parse(value: &[u8]) -> Option<Self> {
        match value {
            [0xC2, 0x23, CHAP_ALGORITHM_MSCHAPV2] => Some(Self::MsChapV2),
            [0xC0, 0x23] => Some(Self::Pap),
            _ => None,
        }
    }

    /// Allowed methods in order of preference.
    fn allowed(policy: AuthPolicy) -> impl Iterator<Item = Self> {
        [
            policy.mschapv2.then_some(Self::MsChapV2),
            policy.pap.then_some(Self::Pap),
        ]
        .into_iter()
        .flatten()
    }

    fn is_allowed(self, policy: AuthPolicy) -> bool {
        match self {
            Self::MsChapV2 => policy.mschapv2,
            Self::Pap => policy.pap,
        }
    }
}

/// Which side of authentication this LCP is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Asks the peer to authenticate with one of these methods.
    Authenticator,
    /// Authenticates itself with one of these methods when asked.
    Peer,
}

/// LCP option semantics for either role.
#[derive(Debug)]
pub(crate) struct LcpPolicy {
    role: Role,
    auth: AuthPolicy,
    /// Our magic number (RFC 1661 §6.4); 0 once the peer rejected the option.
    pub(crate) magic: u32,
    /// The MRU we ask for, if not the default.
    our_mru: Option<u16>,
    /// Authenticator: the method we are asking for.
    pub(crate) our_auth: Option<AuthProtocol>,
    /// Authenticator: the peer asked for a method we do not allow, or rejected authentication.
    pub(crate) auth_refused: bool,
    /// The peer's MRU: the largest frame we may send it.
    pub(crate) peer_mru: u16,
    /// Peer role: the method the authenticator asked for and we accepted.
    pub(crate) peer_auth: Option<AuthProtocol>,
    /// The peer keeps presenting our own magic number: the link may be looped back.
    pub(crate) loop_suspected: u32,
    /// Peer role: the extra options a Windows client asks for, if it plays one.
    pub(crate) windows: Option<WindowsLcp>,
}

/// The options the Windows built-in client puts in its LCP Configure-Request besides MRU 4091
/// and the magic number, in its order: `<pcomp> <accomp> <callback CBCP>` and, when the profile's
/// multilink setting is on, `<mrru 1614> <endpoint [local:...]>` (windows-client.md §1.5: the
/// sorz/sstp-server #5 log; SoftEther #1169 shows a Windows 10 request of MRU, Magic, PFC, ACFC
/// and Callback only). Each option rejected by the server is dropped for good and the request
/// re-sent without it (§1.5 "Configure-Reject handling", same log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowsLcp {
    pfc: bool,
    acfc: bool,
    callback: bool,
    mrru: bool,
    /// Endpoint-Discriminator class 1 (locally assigned) and its 20 bytes, like the log's
    /// `local:b5.1f.d9...00.00.00.0c`; drawn once, on the first negotiation.
    endpoint: Option<Option<[u8; ENDPOINT_LEN]>>,
    /// What the server acknowledged in our last acked request: (PFC, ACFC).
    pub(crate) acked: (bool, bool),
}

impl WindowsLcp {
    pub(crate) fn new(multilink: bool) -> Self {
        Self {
            pfc: true,
            acfc: true,
            callback: true,
            mrru: multilink,
            endpoint: multilink.then_some(None),
            acked: (false, false),
        }
    }

    fn reset(&mut self, rng: &mut dyn Rng) {
        if let Some(endpoint @ None) = &mut self.endpoint {
            let mut value = [0u8; ENDPOINT_LEN];
            rng.fill_bytes(&mut value[..16]);
            // The log's identifier ends in 00 00 00 0c after 16 random-looking bytes.
            value[16..].copy_from_slice(&[0, 0, 0, 0x0C]);
            *endpoint = Some(value);
        }
        self.acked = (false, false);
    }

    fn request(&self, out: &mut Vec<u8>) {
        if self.pfc {
            write_option(OPT_PFC, &[], out);
        }
        if self.acfc {
            write_option(OPT_ACFC, &[], out);
        }
        if self.callback {
            write_option(OPT_CALLBACK, &[CALLBACK_CBCP], out);
        }
        if self.mrru {
            write_option(OPT_MRRU, &WINDOWS_MRRU.to_be_bytes(), out);
        }
        if let Some(Some(endpoint)) = &self.endpoint {
            let mut value = Vec::with_capacity(1 + ENDPOINT_LEN);
            value.push(ENDPOINT_CLASS_LOCAL);
            value.extend_from_slice(endpoint);
            write_option(OPT_ENDPOINT_DISCRIMINATOR, &value, out);
        }
    }

    fn rejected(&mut self, kind: u8) {
        match kind {
            OPT_PFC => self.pfc = false,
            OPT_ACFC => self.acfc = false,
            OPT_CALLBACK => self.callback = false,
            OPT_MRRU => self.mrru = false,
            OPT_ENDPOINT_DISCRIMINATOR => self.endpoint = None,
            _ => {}
        }
    }
}

impl LcpPolicy {
    pub(crate) fn new(role: Role, auth: AuthPolicy, mru: u16) -> Self {
        Self {
            role,
            auth,
            magic: 0,
            our_mru: (mru != DEFAULT_MRU).then_some(mru.max(MIN_MRU)),
            our_auth: None,
            auth_refused: false,
            peer_mru: DEFAULT_MRU,
            peer_auth: None,
            loop_suspected: 0,
            windows: None,
        }
    }

    /// Judges the peer's Authentication-Protocol option (peer role only).
    fn check_auth(&mut self, value: &[u8], reject_if_disagree: bool) -> OptionAnswer {
        if self.role == Role::Authenticator {
            // We never authenticate ourselves to the client.
            return OptionAnswer::Reject;
        }
        match AuthProtocol::parse(value) {
            Some(method) if method.is_allowed(self.auth) => {
                self.peer_auth = Some(method);
                OptionAnswer::Ack
            }
            _ => match AuthProtocol::allowed(self.auth).next() {
                Some(preferred) if !reject_if_disagree => {
                    let mut nak = Vec::new();
                    preferred.write(&mut nak);
                    OptionAnswer::Nak(nak)
                }
                _ => OptionAnswer::Reject,
            },
        }
    }

    /// RFC 1661 §6.4: our own magic number coming back suggests a looped-back link. Only the
    /// magic number is Nak'd then, whatever else the request holds, so that a looped link keeps
    /// bouncing Naks until Max-Failure instead of failing on our own (reflected) options.
    fn check_loopback(
        &mut self,
        options: &[ConfigOption<'_>],
        reject_if_disagree: bool,
        rng: &mut dyn Rng,
    ) -> Option<Verdict> {
        let looped = options
            .iter()
            .any(|o| o.kind == OPT_MAGIC && self.magic != 0 && o.value == self.magic.to_be_bytes());
        if !looped || reject_if_disagree {
            return None;
        }
        self.loop_suspected += 1;
        self.magic = nonzero_u32(rng);
        let mut nak = Vec::new();
        write_option(OPT_MAGIC, &nonzero_u32(rng).to_be_bytes(), &mut nak);
        Some(Verdict::Nak(nak))
    }

    fn check_option(
        &mut self,
        option: &ConfigOption<'_>,
        reject_if_disagree: bool,
        rng: &mut dyn Rng,
    ) -> OptionAnswer {
        match (option.kind, option.value) {
            (OPT_MRU, &[hi, lo]) => {
                let mru = u16::from_be_bytes([hi, lo]);
                if mru >= MIN_MRU {
                    self.peer_mru = mru;
                    OptionAnswer::Ack
                } else if reject_if_disagree {
                    OptionAnswer::Reject
                } else {
                    OptionAnswer::nak(OPT_MRU, &MIN_MRU.to_be_bytes())
                }
            }
            // ACCM only matters for HDLC framing, which SSTP does not use: harmless to Ack.
            (OPT_ACCM, [_, _, _, _]) | (OPT_PFC | OPT_ACFC, []) => OptionAnswer::Ack,
            (OPT_AUTH_PROTOCOL, value) if value.len() >= 2 => {
                self.check_auth(value, reject_if_disagree)
            }
            (OPT_MAGIC, &[a, b, c, d]) => {
                let magic = u32::from_be_bytes([a, b, c, d]);
                if magic != 0 && magic != self.magic {
                    return OptionAnswer::Ack;
                }
                if reject_if_disagree {
                    OptionAnswer::Reject
                } else {
                    OptionAnswer::nak(OPT_MAGIC, &nonzero_u32(rng).to_be_bytes())
                }
            }
            // Callback, MRRU, Endpoint-Discriminator, Quality-Protocol, bad lengths and
            // anything unknown: Windows offers several of these and copes with a Reject.
            _ => OptionAnswer::Reject,
        }
    }

    fn apply_nak(&mut self, option: &ConfigOption<'_>, rng: &mut dyn Rng) {
        match (option.kind, option.value) {
            (OPT_MRU, &[hi, lo]) if self.our_mru.is_some() => {
                let mru = u16::from_be_bytes([hi, lo]);
                if mru >= MIN_MRU {
                    self.our_mru = Some(mru);
                }
            }
            (OPT_MAGIC, _) if self.magic != 0 => self.magic = nonzero_u32(rng),
            (OPT_AUTH_PROTOCOL, value) if self.role == Role::Authenticator => {
                let suggested = AuthProtocol::parse(value).filter(|m| m.is_allowed(self.auth));
                let next = suggested.or_else(|| {
                    AuthProtocol::allowed(self.auth).find(|m| Some(*m) != self.our_auth)
                });
                match next {
                    Some(method) => self.our_auth = Some(method),
                    None => {
                        tracing::debug!("peer wants an authentication method we do not allow");
                        self.auth_refused = true;
                    }
                }
            }
            _ => {}
        }
    }
}

impl OptionPolicy for LcpPolicy {
    fn reset(&mut self, rng: &mut dyn Rng) {
        self.magic = nonzero_u32(rng);
        if self.role == Role::Authenticator {
            self.our_auth = AuthProtocol::allowed(self.auth).next();
        }
        self.auth_refused = false;
        if let Some(windows) = &mut self.windows {
            windows.reset(rng);
        }
    }

    fn request(&mut self, out: &mut Vec<u8>) {
        if let Some(mru) = self.our_mru {
            write_option(OPT_MRU, &mru.to_be_bytes(), out);
        }
        if let Some(auth) = self.our_auth {
            auth.write(out);
        }
        if self.magic != 0 {
            write_option(OPT_MAGIC, &self.magic.to_be_bytes(), out);
        }
        if let Some(windows) = &self.windows {
            windows.request(out);
        }
    }

    fn acked(&mut self) {
        if let Some(windows) = &mut self.windows {
            windows.acked = (windows.pfc, windows.acfc);
        }
    }

    fn check_request(
        &mut self,
        options: &[ConfigOption<'_>],
        reject_if_disagree: bool,
        rng: &mut dyn Rng,
    ) -> Verdict {
        self.peer_mru = DEFAULT_MRU;
        self.peer_auth = None;
        if let Some(nak) = self.check_loopback(options, reject_if_disagree, rng) {
            return nak;
        }
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        for option in options {
            match self.check_option(option, reject_if_disagree, rng) {
                OptionAnswer::Ack => {}
                OptionAnswer::Nak(value) => naks.extend_from_slice(&value),
                OptionAnswer::Reject => option.write(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            Verdict::Reject(rejects)
        } else if !naks.is_empty() {
            Verdict::Nak(naks)
        } else {
            Verdict::Ack
        }
    }

    fn nakked(
        &mut self,
        options: &[ConfigOption<'_>],
        rng: &mut dyn Rng,
    ) -> Result<(), NotConverging> {
        for option in options {
            self.apply_nak(option, rng);
        }
        Ok(())
    }

    fn rejected(&mut self, options: &[ConfigOption<'_>]) -> Result<(), NotConverging> {
        for option in options {
            match option.kind {
                OPT_MRU => self.our_mru = None,
                OPT_MAGIC => self.magic = 0,
                OPT_AUTH_PROTOCOL if self.our_auth.is_some() => {
                    // Authentication is not optional for us.
                    self.auth_refused = true;
                    return Err(NotConverging);
                }
                kind => {
                    if let Some(windows) = &mut self.windows {
                        windows.rejected(kind);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The answer for one option of a Configure-Request.
enum OptionAnswer {
    Ack,
    Nak(Vec<u8>),
    Reject,
}

impl OptionAnswer {
    fn nak(kind: u8, value: &[u8]) -> Self {
        let mut out = Vec::new();
        write_option(kind, value, &mut out);
        Self::Nak(out)
    }
}

/// What LCP tells its owner after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LcpOutcome {
    Nothing,
    /// A This-Layer action of the automaton.
    Layer(LayerEvent),
    /// The peer Protocol-Rejected this (non-LCP) protocol.
    ProtocolRejected(Protocol),
}

/// LCP: the automaton plus the LCP-only codes.
#[derive(Debug)]
pub(crate) struct Lcp {
    pub(crate) fsm: Fsm<LcpPolicy>,
    next_id: u8,
}

impl Lcp {
    pub(crate) fn new(role: Role, auth: AuthPolicy, mru: u16, timers: Timers) -> Self {
        Self {
            fsm: Fsm::new(Protocol::LCP, timers, LcpPolicy::new(role, auth, mru)),
            next_id: 0x80,
        }
    }

    /// Handles the information field of an LCP frame.
    pub(crate) fn handle(&mut self, cx: &mut Ctx<'_>, information: &[u8]) -> LcpOutcome {
        let Ok(packet) = Packet::parse(information) else {
            tracing::debug!("malformed LCP packet discarded");
            return LcpOutcome::Nothing;
        };
        let opened = self.fsm.is_opened();
        match packet.code {
            Code::PROTOCOL_REJECT if opened => return self.protocol_rejected(cx, &packet),
            Code::ECHO_REQUEST if opened => self.echo_reply(cx, &packet),
            Code::ECHO_REPLY | Code::DISCARD_REQUEST => {
                tracing::trace!(code = packet.code.0, "LCP echo reply or discard ignored");
            }
            Code::IDENTIFICATION | Code::TIME_REMAINING => {
                tracing::debug!(code = packet.code.0, "LCP informational packet ignored");
            }
            Code::PROTOCOL_REJECT | Code::ECHO_REQUEST => {
                // Only meaningful once Opened (RFC 1661 §5.7, §5.8).
            }
            _ => {
                return match self.fsm.handle_packet(cx, &packet, information) {
                    Some(event) => LcpOutcome::Layer(event),
                    None => LcpOutcome::Nothing,
                };
            }
        }
        LcpOutcome::Nothing
    }

    /// Sends a Protocol-Reject for a frame of `protocol` (RFC 1661 §5.7). Only legal once LCP
    /// is Opened; before that the frame is silently dropped.
    pub(crate) fn protocol_reject(&mut self, cx: &mut Ctx<'_>, protocol: Protocol, info: &[u8]) {
        if !self.fsm.is_opened() {
            tracing::trace!(%protocol, "frame before LCP Opened dropped");
            return;
        }
        tracing::debug!(%protocol, "protocol rejected");
        let room = self.max_data().saturating_sub(2);
        let mut data = Vec::with_capacity(2 + room.min(info.len()));
        data.extend_from_slice(&protocol.0.to_be_bytes());
        data.extend_from_slice(info.get(..room).unwrap_or(info));
        let id = self.take_id();
        cx.out.push(Protocol::LCP, Code::PROTOCOL_REJECT, id, &data);
    }

    fn protocol_rejected(&mut self, cx: &mut Ctx<'_>, packet: &Packet<'_>) -> LcpOutcome {
        let [hi, lo, ..] = *packet.data else {
            return LcpOutcome::Nothing;
        };
        let protocol = Protocol(u16::from_be_bytes([hi, lo]));
        if protocol == Protocol::LCP {
            return match self.fsm.rxj(cx, false) {
                Some(event) => LcpOutcome::Layer(event),
                None => LcpOutcome::Nothing,
            };
        }
        tracing::debug!(%protocol, "peer rejected protocol");
        LcpOutcome::ProtocolRejected(protocol)
    }

    fn echo_reply(&mut self, cx: &mut Ctx<'_>, packet: &Packet<'_>) {
        let [a, b, c, d, rest @ ..] = packet.data else {
            return;
        };
        let magic = self.fsm.policy.magic;
        if magic != 0 && u32::from_be_bytes([*a, *b, *c, *d]) == magic {
            tracing::debug!("Echo-Request carries our own magic number: link may be looped back");
            self.fsm.policy.loop_suspected += 1;
            return;
        }
        let room = self.max_data().saturating_sub(4);
        let mut data = Vec::with_capacity(4 + room.min(rest.len()));
        data.extend_from_slice(&magic.to_be_bytes());
        data.extend_from_slice(rest.get(..room).unwrap_or(rest));
        cx.out
            .push(Protocol::LCP, Code::ECHO_REPLY, packet.id, &data);
    }

    /// The most LCP data bytes a packet to the peer may carry (its MRU less our headers).
    fn max_data(&self) -> usize {
        usize::from(self.fsm.policy.peer_mru).saturating_sub(PACKET_HEADER_LEN)
    }

    fn take_id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }
}

fn nonzero_u32(rng: &mut dyn Rng) -> u32 {
    loop {
        let value = rng.next_u32();
        if value != 0 {
            return value;
        }
    }
}

/// Maximum-Receive-Unit (RFC 1661 §6.1).
pub(crate) const OPT_MRU: u8 = 1;
/// Async-Control-Character-Map (RFC 1662 §7.1).
pub(crate) const OPT_ACCM: u8 = 2;
/// Authentication-Protocol (RFC 1661 §6.2).
pub(crate) const OPT_AUTH_PROTOCOL: u8 = 3;
/// Magic-Number (RFC 1661 §6.4).
pub(crate) const OPT_MAGIC: u8 = 5;
/// Protocol-Field-Compression (RFC 1661 §6.5).
pub(crate) const OPT_PFC: u8 = 7;
/// Address-and-Control-Field-Compression (RFC 1661 §6.6).
pub(crate) const OPT_ACFC: u8 = 8;
/// Callback (RFC 1570 §2.3); Windows asks for operation 6, CBCP.
pub(crate) const OPT_CALLBACK: u8 = 13;
/// Multilink Maximum Received Reconstructed Unit (RFC 1990 §5.1.1).
pub(crate) const OPT_MRRU: u8 = 17;
/// Endpoint-Discriminator (RFC 1990 §5.1.3).
pub(crate) const OPT_ENDPOINT_DISCRIMINATOR: u8 = 19;
/// Callback operation 6: Microsoft's Callback Control Protocol (windows-client.md §1.5).
const CALLBACK_CBCP: u8 = 6;
/// The MRRU Windows offers (windows-client.md §1.5, sorz/sstp-server #5 log).
const WINDOWS_MRRU: u16 = 1614;
/// Endpoint-Discriminator class 1, Locally Assigned Address (RFC 1990 §5.1.3).
const ENDPOINT_CLASS_LOCAL: u8 = 1;
/// Length of the Windows endpoint identifier in the sorz/sstp-server #5 log.
const ENDPOINT_LEN: usize = 20;
/// CHAP algorithm number of MS-CHAPv2 (RFC 2759 §2).
const CHAP_ALGORITHM_MSCHAPV2: u8 = 0x81;
/// Smallest MRU we accept from a peer or ask for; pppd uses the same floor.
const MIN_MRU: u16 = 128;
