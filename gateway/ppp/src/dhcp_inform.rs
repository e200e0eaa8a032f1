//! Answering a client's DHCPINFORM over the PPP link with split-tunnel routes.
//!
//! IPCP hands out one address and DNS servers, nothing else. Windows RAS clients ask for the
//! rest right after IPCP with a DHCPINFORM (RFC 2131 §3.4) sent through the tunnel to UDP port
//! 67; a server that answers with a DHCPACK carrying classless static routes (option 249, the
//! Microsoft code, and option 121, RFC 3442) gives them a split tunnel. RRAS and accel-ppp do
//! the same. This module only turns bytes into bytes: [`parse_inform`] recognises the request
//! inside a whole IPv4 packet from the client, [`build_ack`] writes the whole IPv4 packet to
//! send back, and [`parse_ack`] reads such a reply (for clients and tests).

use std::net::Ipv4Addr;

mod routes;

pub use routes::{ClasslessRoute, decode_classless_routes, encode_classless_routes};

use crate::ipv4::{
    self, MIN_HEADER_LEN as IPV4_MIN_HEADER_LEN, PROTOCOL_UDP as IP_PROTOCOL_UDP,
    VERSION as IPV4_VERSION,
};

/// RFC 791 §3.1: the More Fragments flag and the fragment offset within the flags word.
const IPV4_FRAGMENT_BITS: u16 = 0x3FFF;
/// RFC 791 §3.1: Don't Fragment, set on replies.
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
/// RFC 1700: the recommended default TTL.
const IPV4_DEFAULT_TTL: u8 = 64;
/// RFC 768: the UDP header.
const UDP_HEADER_LEN: usize = 8;
/// RFC 2131 §4.1: DHCP messages to servers go to port 67, to clients to port 68.
const DHCP_SERVER_PORT: u16 = 67;
/// RFC 2131 §4.1: the client port.
const DHCP_CLIENT_PORT: u16 = 68;

/// RFC 2131 §2: op of a message from a client.
const BOOTREQUEST: u8 = 1;
/// RFC 2131 §2: op of a message from a server.
const BOOTREPLY: u8 = 2;
/// RFC 2131 §2: length of the fixed fields (op .. file) before the magic cookie.
const BOOTP_FIXED_LEN: usize = 236;
/// RFC 2131 §3: the magic cookie that starts the options.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// RFC 1542 §2.1: BOOTP messages are at least 300 bytes; shorter replies are padded.
const BOOTP_MIN_MESSAGE_LEN: usize = 300;
/// RFC 2131 §2 field offsets.
const OFFSET_HTYPE: usize = 1;
const OFFSET_HLEN: usize = 2;
const OFFSET_XID: usize = 4;
const OFFSET_FLAGS: usize = 10;
const OFFSET_CIADDR: usize = 12;
const OFFSET_YIADDR: usize = 16;
const OFFSET_CHADDR: usize = 28;
/// RFC 2131 §2: chaddr is 16 bytes.
const CHADDR_LEN: usize = 16;

/// RFC 2132 §3.1: Pad.
const OPTION_PAD: u8 = 0;
/// RFC 2132 §3.8: Domain Name Server.
const OPTION_DNS: u8 = 6;
/// RFC 2132 §3.17: Domain Name.
const OPTION_DOMAIN_NAME: u8 = 15;
/// Host Name (RFC 2132 §3.14).
const OPTION_HOST_NAME: u8 = 12;
/// Parameter Request List (RFC 2132 §9.8).
const OPTION_PARAMETER_LIST: u8 = 55;
/// Vendor class identifier (RFC 2132 §9.13).
const OPTION_VENDOR_CLASS: u8 = 60;
/// Client-identifier (RFC 2132 §9.14).
const OPTION_CLIENT_ID: u8 = 61;
/// RFC 2132 §9.6: DHCP Message Type.
const OPTION_MESSAGE_TYPE: u8 = 53;
/// RFC 2132 §9.7: Server Identifier.
const OPTION_SERVER_ID: u8 = 54;
/// RFC 3442: Classless Static Route.
const OPTION_CLASSLESS_ROUTES: u8 = 121;
/// Microsoft's pre-standard code for the RFC 3442 encoding, which Windows RAS clients request.
const OPTION_MS_CLASSLESS_ROUTES: u8 = 249;
/// RFC 2132 §3.2: End.
const OPTION_END: u8 = 255;
/// RFC 2132 §2: an option's value is at most 255 bytes; RFC 3396 splits longer ones.
const OPTION_MAX_LEN: usize = 255;
/// RFC 2132 §9.6: DHCPACK.
const DHCPACK: u8 = 5;
/// RFC 2132 §9.6: DHCPINFORM.
const DHCPINFORM: u8 = 8;

/// Why a packet is not a DHCPINFORM to answer, or a reply cannot be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Not a well-formed IPv4 header (version, length or header checksum).
    #[error("not a well-formed IPv4 packet")]
    NotIpv4,
    /// A fragment: DHCP messages from a tunnel client are never fragmented.
    #[error("IPv4 fragment")]
    Fragment,
    /// Not UDP to the DHCP port expected.
    #[error("not UDP to the DHCP port")]
    NotDhcpPort,
    /// The UDP length field disagrees with the packet.
    #[error("bad UDP length")]
    UdpLength,
    /// The UDP checksum is set and wrong.
    #[error("bad UDP checksum")]
    UdpChecksum,
    /// Too short for the BOOTP fixed fields and the magic cookie, or the cookie is wrong.
    #[error("not a DHCP message")]
    NotDhcp,
    /// The op field is not what this direction carries.
    #[error("wrong BOOTP op {0}")]
    WrongOp(u8),
    /// An option runs past the end of the message.
    #[error("truncated DHCP option {0}")]
    TruncatedOption(u8),
    /// The message type is absent or not the one expected.
    #[error("DHCP message type {0:?} is not the one expected")]
    WrongMessageType(Option<u8>),
    /// Neither ciaddr nor the IP source give an address to answer.
    #[error("no client address to answer")]
    NoClientAddress,
    /// A classless route with a prefix longer than 32 or cut short.
    #[error("bad classless static route")]
    BadRoute,
    /// The reply would not fit in one IPv4 packet.
    #[error("reply too large")]
    TooLarge,
}

/// What the gateway tells clients that ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformConfig {
    /// The gateway's tunnel address: server identifier and source of replies.
    pub server: Ipv4Addr,
    /// Split-tunnel routes (options 121 and 249); none are sent when empty.
    pub routes: Vec<ClasslessRoute>,
    /// The connection-specific DNS suffix (option 15).
    pub domain: Option<String>,
    /// DNS servers (option 6); none are sent when empty.
    pub dns: Vec<Ipv4Addr>,
}

impl InformConfig {
    /// Whether there is anything to answer with: without routes or a domain the request is
    /// left alone.
    pub fn answers(&self) -> bool {
        !self.routes.is_empty() || self.domain.is_some()
    }
}

/// The fields of a DHCPINFORM that the reply echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inform {
    /// The IPv4 source address.
    pub source: Ipv4Addr,
    /// The IPv4 destination address (broadcast or the server).
    pub destination: Ipv4Addr,
    /// Transaction ID.
    pub xid: u32,
    /// The client's own address.
    pub ciaddr: Ipv4Addr,
    /// Hardware type, length and address, echoed.
    pub htype: u8,
    /// Hardware address length.
    pub hlen: u8,
    /// Client hardware address.
    pub chaddr: [u8; CHADDR_LEN],
    /// Flags, echoed (RFC 2131 §4.3.1).
    pub flags: u16,
}

/// Recognises a DHCPINFORM to UDP port 67 in a whole IPv4 packet.
pub fn parse_inform(packet: &[u8]) -> Result<Inform, DhcpError> {
    let datagram = Datagram::parse(packet, DHCP_SERVER_PORT)?;
    let message = Message::parse(datagram.payload, BOOTREQUEST)?;
    if message.message_type != Some(DHCPINFORM) {
        return Err(DhcpError::WrongMessageType(message.message_type));
    }
    Ok(Inform {
        source: datagram.source,
        destination: datagram.destination,
        xid: message.xid,
        ciaddr: message.ciaddr,
        htype: message.htype,
        hlen: message.hlen,
        chaddr: message.chaddr,
        flags: message.flags,
    })
}

/// Writes into `out` (cleared first) the whole IPv4 packet of the DHCPACK that answers
/// `inform`: sent from the server to the client's address, port 67 to 68.
pub fn build_ack(
    inform: &Inform,
    config: &InformConfig,
    out: &mut Vec<u8>,
) -> Result<(), DhcpError> {
    // RFC 2131 §4.3.5: the ACK goes to ciaddr; a client that left it empty is answered at
    // the address it sent from.
    let client = [inform.ciaddr, inform.source]
        .into_iter()
        .find(|a| !a.is_unspecified() && !a.is_broadcast())
        .ok_or(DhcpError::NoClientAddress)?;
    let mut dhcp = Vec::with_capacity(BOOTP_MIN_MESSAGE_LEN);
    dhcp.extend_from_slice(&[BOOTREPLY, inform.htype, inform.hlen, 0]);
    dhcp.extend_from_slice(&inform.xid.to_be_bytes());
    dhcp.extend_from_slice(&[0, 0]); // secs
    dhcp.extend_from_slice(&inform.flags.to_be_bytes());
    dhcp.extend_from_slice(&inform.ciaddr.octets());
    // RFC 2131 §4.3.5: yiaddr stays empty; siaddr and giaddr are not used here.
    dhcp.resize(OFFSET_CHADDR, 0);
    dhcp.extend_from_slice(&inform.chaddr);
    dhcp.resize(BOOTP_FIXED_LEN, 0); // sname, file
    dhcp.extend_from_slice(&MAGIC_COOKIE);
    put_option(&mut dhcp, OPTION_MESSAGE_TYPE, &[DHCPACK]);
    put_option(&mut dhcp, OPTION_SERVER_ID, &config.server.octets());
    if !config.dns.is_empty() {
        let dns: Vec<u8> = config.dns.iter().flat_map(|a| a.octets()).collect();
        put_option(&mut dhcp, OPTION_DNS, &dns);
    }
    if let Some(domain) = config.domain.as_deref().filter(|d| !d.is_empty()) {
        put_option(&mut dhcp, OPTION_DOMAIN_NAME, domain.as_bytes());
    }
    if !config.routes.is_empty() {
        let mut routes = Vec::new();
        encode_classless_routes(&config.routes, &mut routes);
        put_option(&mut dhcp, OPTION_MS_CLASSLESS_ROUTES, &routes);
        put_option(&mut dhcp, OPTION_CLASSLESS_ROUTES, &routes);
    }
    dhcp.push(OPTION_END);
    if dhcp.len() < BOOTP_MIN_MESSAGE_LEN {
        dhcp.resize(BOOTP_MIN_MESSAGE_LEN, OPTION_PAD);
    }
    write_udp_ipv4(
        config.server,
        client,
        (DHCP_SERVER_PORT, DHCP_CLIENT_PORT),
        &dhcp,
        out,
    )
}

/// What a client puts in its DHCPINFORM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformRequest {
    /// The client's tunnel address: IPv4 source and ciaddr.
    pub client: Ipv4Addr,
    /// Where it goes: Windows broadcasts it.
    pub destination: Ipv4Addr,
    /// Transaction ID.
    pub xid: u32,
    /// Hardware address (htype 1, 6 bytes) and client identifier (option 61).
    pub hardware: [u8; 6],
    /// Host name (option 12), if any.
    pub host_name: Option<String>,
    /// Vendor class identifier (option 60), if any.
    pub vendor_class: Option<String>,
    /// Parameter request list (option 55).
    pub parameters: Vec<u8>,
}

/// Writes into `out` (cleared first) the whole IPv4 packet of a DHCPINFORM (RFC 2131 §3.4):
/// UDP 68 to 67, ciaddr set, no yiaddr.
pub fn build_inform(request: &InformRequest, out: &mut Vec<u8>) -> Result<(), DhcpError> {
    let mut dhcp = Vec::with_capacity(BOOTP_MIN_MESSAGE_LEN);
    dhcp.extend_from_slice(&[BOOTREQUEST, 1, 6, 0]);
    dhcp.extend_from_slice(&request.xid.to_be_bytes());
    dhcp.extend_from_slice(&[0, 0, 0, 0]); // secs, flags
    dhcp.extend_from_slice(&request.client.octets());
    dhcp.resize(OFFSET_CHADDR, 0);
    dhcp.extend_from_slice(&request.hardware);
    dhcp.resize(BOOTP_FIXED_LEN, 0);
    dhcp.extend_from_slice(&MAGIC_COOKIE);
    put_option(&mut dhcp, OPTION_MESSAGE_TYPE, &[DHCPINFORM]);
    let mut client_id = vec![1];
    client_id.extend_from_slice(&request.hardware);
    put_option(&mut dhcp, OPTION_CLIENT_ID, &client_id);
    if let Some(name) = &request.host_name {
        put_option(&mut dhcp, OPTION_HOST_NAME, name.as_bytes());
    }
    if let Some(class) = &request.vendor_class {
        put_option(&mut dhcp, OPTION_VENDOR_CLASS, class.as_bytes());
    }
    if !request.parameters.is_empty() {
        put_option(&mut dhcp, OPTION_PARAMETER_LIST, &request.parameters);
    }
    dhcp.push(OPTION_END);
    if dhcp.len() < BOOTP_MIN_MESSAGE_LEN {
        dhcp.resize(BOOTP_MIN_MESSAGE_LEN, OPTION_PAD);
    }
    write_udp_ipv4(
        request.client,
        request.destination,
        (DHCP_CLIENT_PORT, DHCP_SERVER_PORT),
        &dhcp,
        out,
    )
}

/// RFC 3396: a value longer than one option is split across consecutive options of the
/// same code, which the receiver concatenates.
fn put_option(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    for chunk in value.chunks(OPTION_MAX_LEN) {
        out.push(code);
        out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(chunk);
    }
}

/// Wraps `payload` in UDP (`ports`: source, destination) and IPv4 headers, both with
/// checksums.
fn write_udp_ipv4(
    source: Ipv4Addr,
    destination: Ipv4Addr,
    ports: (u16, u16),
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DhcpError> {
    let udp_len = u16::try_from(UDP_HEADER_LEN + payload.len()).map_err(|_| DhcpError::TooLarge)?;
    let total_len = u16::try_from(IPV4_MIN_HEADER_LEN + usize::from(udp_len))
        .map_err(|_| DhcpError::TooLarge)?;
    out.clear();
    out.push((IPV4_VERSION << 4) | 5);
    out.push(0); // TOS
    out.extend_from_slice(&total_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // identification: DF is set, nothing to reassemble
    out.extend_from_slice(&IPV4_DONT_FRAGMENT.to_be_bytes());
    out.extend_from_slice(&[IPV4_DEFAULT_TTL, IP_PROTOCOL_UDP, 0, 0]);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&destination.octets());
    let header_sum = ipv4::checksum(out);
    out[10..12].copy_from_slice(&header_sum.to_be_bytes());
    let udp_start = out.len();
    out.extend_from_slice(&ports.0.to_be_bytes());
    out.extend_from_slice(&ports.1.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let udp = out.get(udp_start..).unwrap_or_default();
    let sum = ipv4::udp_checksum(source, destination, udp);
    out[udp_start + 6..udp_start + 8].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// What a DHCPACK (as written by [`build_ack`]) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The IPv4 destination address.
    pub destination: Ipv4Addr,
    /// Transaction ID.
    pub xid: u32,
    /// ciaddr.
    pub ciaddr: Ipv4Addr,
    /// yiaddr.
    pub yiaddr: Ipv4Addr,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain: Option<Vec<u8>>,
    /// Option 121, decoded.
    pub classless_routes: Vec<ClasslessRoute>,
    /// Option 249, decoded.
    pub ms_classless_routes: Vec<ClasslessRoute>,
}

/// Reads a DHCPACK to UDP port 68 in a whole IPv4 packet.
pub fn parse_ack(packet: &[u8]) -> Result<Ack, DhcpError> {
    let datagram = Datagram::parse(packet, DHCP_CLIENT_PORT)?;
    let message = Message::parse(datagram.payload, BOOTREPLY)?;
    if message.message_type != Some(DHCPACK) {
        return Err(DhcpError::WrongMessageType(message.message_type));
    }
    let value = |code| message.option(code);
    let server_id = value(OPTION_SERVER_ID).and_then(|v| ipv4_at(&v, 0));
    let dns = value(OPTION_DNS)
        .unwrap_or_default()
        .chunks_exact(4)
        .filter_map(|c| ipv4_at(c, 0))
        .collect();
    let routes = |code| decode_classless_routes(&value(code).unwrap_or_default());
    Ok(Ack {
        destination: datagram.destination,
        xid: message.xid,
        ciaddr: message.ciaddr,
        yiaddr: message.yiaddr,
        server_id,
        dns,
        domain: value(OPTION_DOMAIN_NAME),
        classless_routes: routes(OPTION_CLASSLESS_ROUTES)?,
        ms_classless_routes: routes(OPTION_MS_CLASSLESS_ROUTES)?,
    })
}

/// A checked UDP datagram inside an IPv4 packet.
struct Datagram<'a> {
    source: Ipv4Addr,
    destination: Ipv4Addr,
    payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// RFC 791 and RFC 768 checks; `port` is the destination port required.
    fn parse(packet: &'a [u8], port: u16) -> Result<Self, DhcpError> {
        let first = *packet.first().ok_or(DhcpError::NotIpv4)?;
        let header_len = usize::from(first & 0x0F) * 4;
        let total_len = usize::from(u16_at(packet, 2).ok_or(DhcpError::NotIpv4)?);
        if first >> 4 != IPV4_VERSION
            || header_len < IPV4_MIN_HEADER_LEN
            || total_len < header_len
            || total_len > packet.len()
        {
            return Err(DhcpError::NotIpv4);
        }
        let header = packet.get(..header_len).ok_or(DhcpError::NotIpv4)?;
        if ipv4::checksum(header) != 0 {
            return Err(DhcpError::NotIpv4);
        }
        if u16_at(header, 6).ok_or(DhcpError::NotIpv4)? & IPV4_FRAGMENT_BITS != 0 {
            return Err(DhcpError::Fragment);
        }
        let source = ipv4_at(header, 12).ok_or(DhcpError::NotIpv4)?;
        let destination = ipv4_at(header, 16).ok_or(DhcpError::NotIpv4)?;
        let udp = packet
            .get(header_len..total_len)
            .ok_or(DhcpError::NotIpv4)?;
        if header.get(9) != Some(&IP_PROTOCOL_UDP) || u16_at(udp, 2) != Some(port) {
            return Err(DhcpError::NotDhcpPort);
        }
        let udp_len = u16_at(udp, 4).ok_or(DhcpError::UdpLength)?;
        let udp = udp
            .get(..usize::from(udp_len))
            .filter(|u| u.len() >= UDP_HEADER_LEN)
            .ok_or(DhcpError::UdpLength)?;
        if !ipv4::udp_checksum_ok(source, destination, udp) {
            return Err(DhcpError::UdpChecksum);
        }
        Ok(Self {
            source,
            destination,
            payload: udp.get(UDP_HEADER_LEN..).unwrap_or_default(),
        })
    }
}

/// The BOOTP fields and options of one DHCP message.
struct Message<'a> {
    htype: u8,
    hlen: u8,
    xid: u32,
    flags: u16,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    chaddr: [u8; CHADDR_LEN],
    message_type: Option<u8>,
    options: Vec<(u8, &'a [u8])>,
}

impl<'a> Message<'a> {
    fn parse(payload: &'a [u8], op: u8) -> Result<Self, DhcpError> {
        let (fixed, rest) = payload
            .split_at_checked(BOOTP_FIXED_LEN)
            .ok_or(DhcpError::NotDhcp)?;
        let (cookie, mut data) = rest.split_at_checked(4).ok_or(DhcpError::NotDhcp)?;
        if cookie != MAGIC_COOKIE {
            return Err(DhcpError::NotDhcp);
        }
        let got = fixed.first().copied().unwrap_or_default();
        if got != op {
            return Err(DhcpError::WrongOp(got));
        }
        let mut options = Vec::new();
        while let Some((&code, rest)) = data.split_first() {
            match code {
                OPTION_PAD => data = rest,
                OPTION_END => break,
                _ => {
                    let (&len, rest) =
                        rest.split_first().ok_or(DhcpError::TruncatedOption(code))?;
                    let (value, rest) = rest
                        .split_at_checked(usize::from(len))
                        .ok_or(DhcpError::TruncatedOption(code))?;
                    options.push((code, value));
                    data = rest;
                }
            }
        }
        let message_type = options
            .iter()
            .find(|(code, _)| *code == OPTION_MESSAGE_TYPE)
            .and_then(|(_, value)| value.first().copied());
        let mut chaddr = [0u8; CHADDR_LEN];
        chaddr.copy_from_slice(
            fixed
                .get(OFFSET_CHADDR..OFFSET_CHADDR + CHADDR_LEN)
                .ok_or(DhcpError::NotDhcp)?,
        );
        Ok(Self {
            htype: fixed.get(OFFSET_HTYPE).copied().unwrap_or_default(),
            hlen: fixed.get(OFFSET_HLEN).copied().unwrap_or_default(),
            xid: u32_at(fixed, OFFSET_XID).ok_or(DhcpError::NotDhcp)?,
            flags: u16_at(fixed, OFFSET_FLAGS).ok_or(DhcpError::NotDhcp)?,
            ciaddr: ipv4_at(fixed, OFFSET_CIADDR).ok_or(DhcpError::NotDhcp)?,
            yiaddr: ipv4_at(fixed, OFFSET_YIADDR).ok_or(DhcpError::NotDhcp)?,
            chaddr,
            message_type,
            options,
        })
    }

    /// The value of `code`, its instances concatenated (RFC 3396), or `None` if absent.
    fn option(&self, code: u8) -> Option<Vec<u8>> {
        let mut found = self.options.iter().filter(|(c, _)| *c == code).peekable();
        found.peek()?;
        Some(found.flat_map(|(_, value)| value.iter().copied()).collect())
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn ipv4_at(bytes: &[u8], at: usize) -> Option<Ipv4Addr> {
    u32_at(bytes, at).map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests;
