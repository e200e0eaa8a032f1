//! The few facts of IPv4 (RFC 791) and its checksums (RFC 1071, RFC 768) that the gateway,
//! the DHCPINFORM answer, the load tool and the tests need: one place instead of five parsers
//! and four checksums. Reads never panic on short or foreign input; they give `None`.

use std::net::Ipv4Addr;

/// RFC 791 §3.1: the version nibble of an IPv4 header.
pub const VERSION: u8 = 4;
/// RFC 791 §3.1: a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// RFC 791 §3.1: the Protocol number of UDP (RFC 768).
pub const PROTOCOL_UDP: u8 = 17;

/// RFC 791 §3.1: offset of the Source Address field.
const SOURCE_OFFSET: usize = 12;
/// RFC 791 §3.1: offset of the Destination Address field.
const DESTINATION_OFFSET: usize = 16;

/// The source address of an IPv4 packet, or `None` if `packet` is not one (wrong version or
/// shorter than a header).
#[must_use]
pub fn source(packet: &[u8]) -> Option<Ipv4Addr> {
    address_at(packet, SOURCE_OFFSET)
}

/// The destination address of an IPv4 packet, or `None` if `packet` is not one.
#[must_use]
pub fn destination(packet: &[u8]) -> Option<Ipv4Addr> {
    address_at(packet, DESTINATION_OFFSET)
}

fn address_at(packet: &[u8], offset: usize) -> Option<Ipv4Addr> {
    if packet.first()? >> 4 != VERSION || packet.len() < MIN_HEADER_LEN {
        return None;
    }
    let bytes: [u8; 4] = packet.get(offset..offset + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

/// RFC 1071: the Internet checksum of `bytes` (one's complement of the one's complement sum
/// of its 16-bit words; an odd last byte is padded with zero). Over a header or datagram that
/// carries its checksum, a correct one gives 0.
#[must_use]
pub fn checksum(bytes: &[u8]) -> u16 {
    !fold(sum_words(bytes))
}

/// RFC 768: the UDP checksum of `udp` (header with a zero checksum field, and payload) sent
/// from `source` to `destination`, with the pseudo-header. A computed zero is given as all ones,
/// since zero on the wire means "no checksum".
#[must_use]
pub fn udp_checksum(source: Ipv4Addr, destination: Ipv4Addr, udp: &[u8]) -> u16 {
    let sum = !fold(udp_pseudo_sum(source, destination, udp.len()) + sum_words(udp));
    if sum == 0 { 0xFFFF } else { sum }
}

/// RFC 768: whether a received UDP datagram's checksum is right (its field included), where
/// a zero field means the sender computed none.
#[must_use]
pub fn udp_checksum_ok(source: Ipv4Addr, destination: Ipv4Addr, udp: &[u8]) -> bool {
    matches!(udp.get(6..8), Some([0, 0]))
        || fold(udp_pseudo_sum(source, destination, udp.len()) + sum_words(udp)) == 0xFFFF
}

/// RFC 1071: the one's complement sum of 16-bit words, not yet folded.
fn sum_words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .fold(0u32, u32::wrapping_add)
}

/// RFC 768: the pseudo-header sum (addresses, protocol, UDP length).
fn udp_pseudo_sum(source: Ipv4Addr, destination: Ipv4Addr, udp_len: usize) -> u32 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&source.octets());
    pseudo[4..8].copy_from_slice(&destination.octets());
    pseudo[9] = PROTOCOL_UDP;
    // A UDP length beyond 16 bits is no datagram; its checksum is then simply wrong.
    pseudo[10..].copy_from_slice(&u16::try_from(udp_len).unwrap_or(u16::MAX).to_be_bytes());
    sum_words(&pseudo)
}

/// RFC 1071: folds the carries back into 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests;
