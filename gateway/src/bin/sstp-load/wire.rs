//! What the load tool puts on the wire: IPv4/UDP packets built by hand (the client driver
//! carries raw IP packets), and the small messages between the load tool and its sink.
//!
//! Every UDP payload starts with [`MAGIC`] and a [`Kind`]; numbers are big-endian.
//! - `Data`: session id (u32), sequence number (u64), filler up to the packet size;
//! - `StatsRequest`: session id; the sink answers with `Stats` for that session;
//! - `Stats`: session id, packets (u64), bytes (u64, IP bytes), span between first and last
//!   arrival in nanoseconds (u64), highest sequence number seen (u64);
//! - `BlastRequest`: session id, duration in milliseconds (u32), packet size (u16); the sink
//!   then sends `Data` packets to the requester for that long (downstream throughput).

use std::net::Ipv4Addr;

/// Marks our datagrams ("SLD1").
pub(crate) const MAGIC: [u8; 4] = *b"SLD1";
/// IPv4 header without options (RFC 791).
pub(crate) const IPV4_HEADER: usize = 20;
/// UDP header (RFC 768).
pub(crate) const UDP_HEADER: usize = 8;
/// IP protocol number of UDP.
const PROTO_UDP: u8 = 17;
/// The UDP port the load tool sends from (replies come back to it).
pub(crate) const CLIENT_PORT: u16 = 40_000;
/// Magic + kind + session id: the start of every message.
const MESSAGE_HEADER: usize = 4 + 1 + 4;

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Data = 1,
    StatsRequest = 2,
    Stats = 3,
    BlastRequest = 4,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Data),
            2 => Some(Self::StatsRequest),
            3 => Some(Self::Stats),
            4 => Some(Self::BlastRequest),
            _ => None,
        }
    }
}

/// What the sink counted for one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SinkStats {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) span_ns: u64,
    pub(crate) max_seq: u64,
}

/// A parsed message: kind, session id and the bytes after the header.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) kind: Kind,
    pub(crate) session: u32,
    pub(crate) body: &'a [u8],
}

/// Writes a message header plus `body` into a UDP payload of at least `len` bytes (zero filler).
pub(crate) fn message(kind: Kind, session: u32, body: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(MESSAGE_HEADER + body.len()));
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(body);
    if out.len() < len {
        out.resize(len, 0);
    }
    out
}

/// Parses a UDP payload as one of our messages.
pub(crate) fn parse_message(payload: &[u8]) -> Option<Message<'_>> {
    let magic = payload.get(..4)?;
    if magic != MAGIC {
        return None;
    }
    let kind = Kind::from_byte(*payload.get(4)?)?;
    let session = u32::from_be_bytes(payload.get(5..9)?.try_into().ok()?);
    Some(Message {
        kind,
        session,
        body: payload.get(MESSAGE_HEADER..)?,
    })
}

/// Encodes [`SinkStats`] as a `Stats` body.
pub(crate) fn stats_body(stats: &SinkStats) -> Vec<u8> {
    [stats.packets, stats.bytes, stats.span_ns, stats.max_seq]
        .iter()
        .flat_map(|n| n.to_be_bytes())
        .collect()
}

/// Decodes a `Stats` body.
pub(crate) fn parse_stats(body: &[u8]) -> Option<SinkStats> {
    let n = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(
            body.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some(SinkStats {
        packets: n(0)?,
        bytes: n(1)?,
        span_ns: n(2)?,
        max_seq: n(3)?,
    })
}

/// Reads the sequence number at the start of a `Data` body.
pub(crate) fn data_seq(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
}

/// Builds an IPv4/UDP packet (no options, DF set, UDP checksum 0 = none, allowed for IPv4 by
/// RFC 768).
pub(crate) fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let total = IPV4_HEADER + UDP_HEADER + payload.len();
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    let udp_len = u16::try_from(UDP_HEADER + payload.len()).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let checksum = sstp_ppp::ipv4::checksum(&p);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The UDP payload of an IPv4/UDP packet addressed to [`CLIENT_PORT`], if it is one.
pub(crate) fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first >> 4 != 4 || *packet.get(9)? != PROTO_UDP {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let udp = packet.get(ihl..)?;
    let dst_port = u16::from_be_bytes(udp.get(2..4)?.try_into().ok()?);
    (dst_port == CLIENT_PORT).then(|| udp.get(UDP_HEADER..))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_packet_has_a_valid_header_checksum_and_parses_back() {
        let payload = message(Kind::Data, 7, &42u64.to_be_bytes(), 100);
        let packet = udp_packet(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 1, 2),
            9000,
            &payload,
        );
        assert_eq!(packet.len(), 128);
        // A header with its checksum in place sums to 0xffff (RFC 1071).
        assert_eq!(sstp_ppp::ipv4::checksum(&packet[..IPV4_HEADER]), 0);
        // Replies go to CLIENT_PORT; make one and parse it.
        let mut reply = packet.clone();
        reply[22..24].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        let message = parse_message(udp_payload(&reply).expect("udp")).expect("ours");
        assert_eq!(message.kind, Kind::Data);
        assert_eq!(message.session, 7);
        assert_eq!(data_seq(message.body), Some(42));
    }

    #[test]
    fn stats_survive_a_round_trip_and_foreign_datagrams_are_ignored() {
        let stats = SinkStats {
            packets: 1,
            bytes: 2,
            span_ns: 3,
            max_seq: 4,
        };
        assert_eq!(parse_stats(&stats_body(&stats)), Some(stats));
        assert!(parse_message(b"GET / HTTP/1.1").is_none());
        assert!(parse_message(b"SLD1").is_none());
    }
}
