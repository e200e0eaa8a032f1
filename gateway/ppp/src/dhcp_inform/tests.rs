use super::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

/// A DHCPINFORM shaped like the one Windows RAS sends after IPCP: broadcast, ciaddr set,
/// options 53, 61, 12, 60 and 55 asking for 249 and 121.
fn windows_inform(udp_checksum: bool) -> Vec<u8> {
    let mut dhcp = vec![BOOTREQUEST, 1, 6, 0, 0x12, 0x34, 0xAB, 0xCD, 0, 0, 0, 0];
    dhcp.extend_from_slice(&CLIENT.octets());
    dhcp.resize(OFFSET_CHADDR, 0);
    dhcp.extend_from_slice(&[0x02, 0x00, 0x4C, 0x4F, 0x4F, 0x50]);
    dhcp.resize(BOOTP_FIXED_LEN, 0);
    dhcp.extend_from_slice(&MAGIC_COOKIE);
    dhcp.extend_from_slice(&[53, 1, DHCPINFORM]);
    dhcp.extend_from_slice(&[61, 7, 1, 0x02, 0x00, 0x4C, 0x4F, 0x4F, 0x50]);
    dhcp.extend_from_slice(&[12, 8]);
    dhcp.extend_from_slice(b"WIN11-VM");
    dhcp.extend_from_slice(&[60, 8]);
    dhcp.extend_from_slice(b"MSFT 5.0");
    dhcp.extend_from_slice(&[55, 12, 1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43]);
    dhcp.push(OPTION_END);
    let mut packet = Vec::new();
    write_udp_ipv4(
        CLIENT,
        Ipv4Addr::BROADCAST,
        (DHCP_SERVER_PORT, DHCP_CLIENT_PORT),
        &dhcp,
        &mut packet,
    )
    .unwrap();
    // The helper writes a server-to-client datagram; turn the ports around.
    packet[20..24].copy_from_slice(&[0, 68, 0, 67]);
    packet[26..28].copy_from_slice(&[0, 0]);
    if udp_checksum {
        let sum = ipv4::udp_checksum(CLIENT, Ipv4Addr::BROADCAST, &packet[20..]);
        packet[26..28].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

fn route(a: [u8; 4], len: u8) -> ClasslessRoute {
    ClasslessRoute::new(Ipv4Addr::from(a), len, SERVER).unwrap()
}

fn config(routes: Vec<ClasslessRoute>) -> InformConfig {
    InformConfig {
        server: SERVER,
        routes,
        domain: Some("corp.example".to_owned()),
        dns: vec![Ipv4Addr::new(10, 0, 0, 53)],
    }
}

fn encoded(routes: &[ClasslessRoute]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_classless_routes(routes, &mut out);
    out
}

#[test]
fn rfc_3442_encodings_carry_only_the_significant_destination_octets() {
    assert_eq!(encoded(&[route([0, 0, 0, 0], 0)]), [0, 10, 77, 0, 1]);
    assert_eq!(encoded(&[route([10, 0, 0, 0], 8)]), [8, 10, 10, 77, 0, 1]);
    assert_eq!(
        encoded(&[route([10, 17, 0, 0], 16)]),
        [16, 10, 17, 10, 77, 0, 1]
    );
    assert_eq!(
        encoded(&[route([192, 168, 1, 0], 24)]),
        [24, 192, 168, 1, 10, 77, 0, 1]
    );
    assert_eq!(
        encoded(&[route([10, 229, 0, 128], 32)]),
        [32, 10, 229, 0, 128, 10, 77, 0, 1]
    );
    // RFC 3442 §3's own example: 10.229.0.128/25 is 25.10.229.0.128.
    assert_eq!(
        encoded(&[route([10, 229, 0, 128], 25)]),
        [25, 10, 229, 0, 128, 10, 77, 0, 1]
    );
}

#[test]
fn host_bits_of_a_destination_are_cleared_and_long_prefixes_refused() {
    assert_eq!(
        route([10, 17, 3, 4], 16).destination(),
        Ipv4Addr::new(10, 17, 0, 0)
    );
    assert_eq!(
        ClasslessRoute::new(Ipv4Addr::UNSPECIFIED, 33, SERVER),
        Err(DhcpError::BadRoute)
    );
}

#[test]
fn a_route_list_decodes_back_to_the_routes_encoded() {
    let routes = vec![
        route([0, 0, 0, 0], 0),
        route([10, 0, 0, 0], 8),
        route([10, 17, 0, 0], 16),
        route([192, 168, 1, 0], 24),
        route([192, 0, 2, 7], 32),
    ];
    assert_eq!(decode_classless_routes(&encoded(&routes)), Ok(routes));
}

#[test]
fn truncated_or_overlong_route_lists_are_errors() {
    assert_eq!(
        decode_classless_routes(&[24, 192, 168]),
        Err(DhcpError::BadRoute)
    );
    assert_eq!(
        decode_classless_routes(&[8, 10, 1, 2, 3]),
        Err(DhcpError::BadRoute)
    );
    assert_eq!(
        decode_classless_routes(&[33, 1, 2, 3, 4, 5, 1, 2, 3, 4]),
        Err(DhcpError::BadRoute)
    );
}

#[test]
fn a_windows_inform_is_recognised_with_or_without_a_udp_checksum() {
    for checksum in [true, false] {
        let inform = parse_inform(&windows_inform(checksum)).unwrap();
        assert_eq!(inform.xid, 0x1234_ABCD);
        assert_eq!(inform.ciaddr, CLIENT);
        assert_eq!(inform.source, CLIENT);
        assert_eq!(inform.destination, Ipv4Addr::BROADCAST);
        assert_eq!(&inform.chaddr[..6], &[0x02, 0x00, 0x4C, 0x4F, 0x4F, 0x50]);
    }
}

#[test]
fn a_built_inform_is_recognised_and_carries_its_options() {
    let request = InformRequest {
        client: CLIENT,
        destination: Ipv4Addr::BROADCAST,
        xid: 77,
        hardware: [2, 0, 0x4C, 0x4F, 0x4F, 0x50],
        host_name: Some("WIN10".to_owned()),
        vendor_class: Some("MSFT 5.0".to_owned()),
        parameters: vec![1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43],
    };
    let mut packet = Vec::new();
    build_inform(&request, &mut packet).unwrap();
    let inform = parse_inform(&packet).unwrap();
    assert_eq!(
        (inform.xid, inform.ciaddr, inform.source),
        (77, CLIENT, CLIENT)
    );
    assert_eq!(inform.destination, Ipv4Addr::BROADCAST);
    let options = &packet[20 + 8 + 240..];
    assert_eq!(&options[..3], &[53, 1, 8]);
    let prl = [55, 12, 1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43];
    assert!(options.windows(prl.len()).any(|w| w == prl));
    assert!(options.windows(10).any(|w| w == b"\x3c\x08MSFT 5.0"));
}

#[test]
fn a_wrong_udp_checksum_is_refused() {
    let mut packet = windows_inform(true);
    packet[27] ^= 1;
    assert_eq!(parse_inform(&packet), Err(DhcpError::UdpChecksum));
}

#[test]
fn a_corrupt_ip_header_or_a_fragment_is_refused() {
    let mut packet = windows_inform(false);
    packet[8] = 1; // TTL changed, header checksum now wrong
    assert_eq!(parse_inform(&packet), Err(DhcpError::NotIpv4));
    let mut packet = windows_inform(false);
    packet[6] = 0x20; // More Fragments
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = ipv4::checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(parse_inform(&packet), Err(DhcpError::Fragment));
}

#[test]
fn other_dhcp_messages_and_other_udp_are_not_informs() {
    let mut packet = windows_inform(false);
    let at = 20 + UDP_HEADER_LEN + BOOTP_FIXED_LEN + 4 + 2;
    assert_eq!(packet[at], DHCPINFORM);
    packet[at] = 3; // DHCPREQUEST
    assert_eq!(
        parse_inform(&packet),
        Err(DhcpError::WrongMessageType(Some(3)))
    );
    let mut packet = windows_inform(false);
    packet[23] = 53; // to the DNS port
    assert_eq!(parse_inform(&packet), Err(DhcpError::NotDhcpPort));
    let mut packet = windows_inform(false);
    packet[20 + UDP_HEADER_LEN + BOOTP_FIXED_LEN] = 0;
    assert_eq!(parse_inform(&packet), Err(DhcpError::NotDhcp));
}

#[test]
fn the_ack_carries_exactly_the_configured_options_in_order() {
    let inform = parse_inform(&windows_inform(true)).unwrap();
    let routes = vec![route([10, 17, 0, 0], 16), route([192, 168, 1, 0], 24)];
    let mut packet = Vec::new();
    build_ack(&inform, &config(routes), &mut packet).unwrap();
    assert_eq!(&packet[..2], &[0x45, 0]);
    assert_eq!(&packet[12..20], &[10, 77, 0, 1, 10, 77, 0, 2]);
    assert_eq!(&packet[20..24], &[0, 67, 0, 68]);
    let dhcp = &packet[28..];
    assert_eq!(&dhcp[..8], &[2, 1, 6, 0, 0x12, 0x34, 0xAB, 0xCD]);
    assert_eq!(
        &dhcp[12..20],
        &[10, 77, 0, 2, 0, 0, 0, 0],
        "ciaddr, yiaddr 0"
    );
    assert_eq!(&dhcp[28..34], &[0x02, 0x00, 0x4C, 0x4F, 0x4F, 0x50]);
    let routes = [16, 10, 17, 10, 77, 0, 1, 24, 192, 168, 1, 10, 77, 0, 1];
    let mut options = vec![99, 130, 83, 99, 53, 1, 5, 54, 4, 10, 77, 0, 1];
    options.extend_from_slice(&[6, 4, 10, 0, 0, 53, 15, 12]);
    options.extend_from_slice(b"corp.example");
    options.extend_from_slice(&[249, 15]);
    options.extend_from_slice(&routes);
    options.extend_from_slice(&[121, 15]);
    options.extend_from_slice(&routes);
    options.push(255);
    // 304 bytes of DHCP: already past the 300-byte BOOTP minimum, so no padding.
    assert_eq!(&dhcp[236..], options.as_slice());
}

#[test]
fn the_ack_parses_back_with_valid_checksums_and_the_same_routes() {
    let inform = parse_inform(&windows_inform(false)).unwrap();
    let routes = vec![route([0, 0, 0, 0], 0), route([10, 0, 0, 0], 8)];
    let mut packet = Vec::new();
    build_ack(&inform, &config(routes.clone()), &mut packet).unwrap();
    let ack = parse_ack(&packet).unwrap();
    assert_eq!(ack.destination, CLIENT);
    assert_eq!(ack.xid, 0x1234_ABCD);
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.server_id, Some(SERVER));
    assert_eq!(ack.dns, vec![Ipv4Addr::new(10, 0, 0, 53)]);
    assert_eq!(ack.domain.as_deref(), Some(&b"corp.example"[..]));
    assert_eq!(ack.classless_routes, routes);
    assert_eq!(ack.ms_classless_routes, routes);
}

#[test]
fn routes_longer_than_one_option_are_split_and_joined_again() {
    let inform = parse_inform(&windows_inform(true)).unwrap();
    // 60 routes of 8 bytes each: 480 bytes, two options of each code.
    let routes: Vec<_> = (0..60u8).map(|i| route([172, 16, i, 0], 24)).collect();
    let mut packet = Vec::new();
    build_ack(&inform, &config(routes.clone()), &mut packet).unwrap();
    let ack = parse_ack(&packet).unwrap();
    assert_eq!(ack.ms_classless_routes, routes);
    assert_eq!(ack.classless_routes, routes);
}

#[test]
fn an_inform_without_any_client_address_cannot_be_answered() {
    let mut inform = parse_inform(&windows_inform(true)).unwrap();
    inform.ciaddr = Ipv4Addr::UNSPECIFIED;
    inform.source = Ipv4Addr::UNSPECIFIED;
    let mut packet = Vec::new();
    assert_eq!(
        build_ack(&inform, &config(vec![]), &mut packet),
        Err(DhcpError::NoClientAddress)
    );
}

#[test]
fn a_short_ack_is_padded_to_the_bootp_minimum() {
    let inform = parse_inform(&windows_inform(true)).unwrap();
    let mut config = config(vec![route([10, 0, 0, 0], 8)]);
    config.domain = None;
    config.dns.clear();
    let mut packet = Vec::new();
    build_ack(&inform, &config, &mut packet).unwrap();
    assert_eq!(packet.len(), 20 + 8 + BOOTP_MIN_MESSAGE_LEN);
    assert_eq!(parse_ack(&packet).unwrap().classless_routes.len(), 1);
}

#[test]
fn nothing_is_answered_without_routes_or_a_domain() {
    let mut config = config(vec![]);
    assert!(config.answers());
    config.domain = None;
    assert!(!config.answers());
}

#[test]
fn every_truncation_of_an_inform_is_an_error_not_a_panic() {
    let packet = windows_inform(true);
    for len in 0..packet.len() {
        assert!(parse_inform(&packet[..len]).is_err(), "length {len}");
    }
}
