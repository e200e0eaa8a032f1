//! IP packets for tests that write to real TUN devices.

use std::net::Ipv4Addr;

/// An IPv4/UDP packet with a correct header checksum and no UDP checksum (allowed in IPv4).
pub(crate) fn udp_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = u16::try_from(20 + 8 + payload.len()).expect("a small packet");
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&p);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&(total - 20).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// An IPv4/TCP segment (ACK, no options, ports 50000 -> 443) at sequence `seq` with `payload`
/// bytes, both checksums correct.
pub(crate) fn tcp_segment(src: Ipv4Addr, dst: Ipv4Addr, seq: u32, payload: usize) -> Vec<u8> {
    let total = u16::try_from(40 + payload).expect("a small packet");
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&p);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&50_000u16.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&[0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    p.resize(40 + payload, 0xab);
    let mut pseudo = Vec::with_capacity(12 + p.len() - 20);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(total - 20).to_be_bytes());
    pseudo.extend_from_slice(&p[20..]);
    let checksum = internet_checksum(&pseudo);
    p[36..38].copy_from_slice(&checksum.to_be_bytes());
    p
}

/// The ones' complement sum of RFC 1071.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
