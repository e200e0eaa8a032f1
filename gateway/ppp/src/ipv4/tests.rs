use super::*;

/// RFC 1071 §3's example words, and a real header (from Wikipedia's IPv4 checksum example).
const HEADER: [u8; 20] = [
    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
    0xc0, 0xa8, 0x00, 0xc7,
];

#[test]
fn a_header_with_its_checksum_in_place_sums_to_zero_and_without_it_gives_it() {
    assert_eq!(checksum(&HEADER), 0);
    let mut zeroed = HEADER;
    zeroed[10..12].copy_from_slice(&[0, 0]);
    assert_eq!(checksum(&zeroed), 0xb861);
    // RFC 1071 §3: an odd last byte is padded with zero.
    assert_eq!(checksum(&[0x00, 0x01, 0xf2]), !(0x0001u16 + 0xf200));
}

#[test]
fn addresses_are_read_only_from_ipv4_headers() {
    assert_eq!(source(&HEADER), Some(Ipv4Addr::new(192, 168, 0, 1)));
    assert_eq!(destination(&HEADER), Some(Ipv4Addr::new(192, 168, 0, 199)));
    let mut v6 = HEADER;
    v6[0] = 0x60;
    assert_eq!(source(&v6), None);
    for len in 0..MIN_HEADER_LEN {
        assert_eq!(destination(&HEADER[..len]), None, "{len} bytes");
    }
}

#[test]
fn a_udp_checksum_computed_here_verifies_and_a_flipped_bit_does_not() {
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
    let mut udp = vec![0, 68, 0, 67, 0, 12, 0, 0, 1, 2, 3, 4];
    let sum = udp_checksum(src, dst, &udp);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    assert!(udp_checksum_ok(src, dst, &udp));
    udp[9] ^= 1;
    assert!(!udp_checksum_ok(src, dst, &udp));
    // Zero: the sender computed none (RFC 768).
    udp[6..8].copy_from_slice(&[0, 0]);
    assert!(udp_checksum_ok(src, dst, &udp));
}
