//! The server's packet policy in the pair, no root: a spoofed source stays in the tunnel, a
//! DHCPINFORM is answered into the tunnel with the routes, and what the policy does not claim
//! passes like any packet.

use std::{net::Ipv4Addr, sync::Arc};

use sstp_ppp::dhcp_inform::{ClasslessRoute, InformConfig, InformRequest, build_inform, parse_ack};

use super::{POOL_FIRST, SERVER_IP, client_config, ipv4_packet, pair::Pair, server_config};
use crate::IpPolicyCounts;

/// A Windows-like DHCPINFORM from the pair's client to `destination`.
fn inform(destination: Ipv4Addr) -> Vec<u8> {
    let mut packet = Vec::new();
    build_inform(
        &InformRequest {
            client: POOL_FIRST,
            destination,
            xid: 0x5eed_f00d,
            hardware: [2, 0, 0, 0, 0, 1],
            host_name: Some("DESKTOP-1".into()),
            vendor_class: Some("MSFT 5.0".into()),
            parameters: vec![1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43],
        },
        &mut packet,
    )
    .unwrap();
    packet
}

/// A pair whose server answers DHCPINFORMs with one split-tunnel route.
fn answering_pair() -> (Pair, ClasslessRoute) {
    let route = ClasslessRoute::new(Ipv4Addr::new(172, 16, 0, 0), 12, SERVER_IP).unwrap();
    let mut server = server_config();
    server.dhcp_inform = Some(Arc::new(InformConfig {
        server: SERVER_IP,
        routes: vec![route],
        domain: None,
        dns: Vec::new(),
    }));
    let mut pair = Pair::with(client_config("alice", super::PASSWORD), server);
    pair.connect();
    (pair, route)
}

#[test]
fn a_packet_from_any_source_but_the_peers_own_address_stays_in_the_tunnel_and_is_counted() {
    let mut pair = Pair::new();
    pair.connect();
    let own = ipv4_packet(POOL_FIRST, SERVER_IP, 40);
    let another_session = ipv4_packet(Ipv4Addr::new(10, 8, 0, 11), SERVER_IP, 40);
    let anyone = ipv4_packet(Ipv4Addr::new(192, 0, 2, 1), SERVER_IP, 40);
    for packet in [&another_session, &own, &anyone, &own] {
        pair.client.send_ip(packet).unwrap();
    }
    pair.pump();
    assert_eq!(pair.server_ip, [own.clone(), own]);
    assert_eq!(
        pair.server.take_ip_policy(),
        IpPolicyCounts {
            foreign_source: 2,
            dhcp_informs_answered: 0
        }
    );
    assert_eq!(
        pair.server.take_ip_policy(),
        IpPolicyCounts::default(),
        "taken"
    );
}

#[test]
fn a_dhcpinform_is_answered_into_the_tunnel_with_the_routes_and_goes_no_further() {
    let (mut pair, route) = answering_pair();
    pair.client.send_ip(&inform(Ipv4Addr::BROADCAST)).unwrap();
    pair.pump();
    assert!(pair.server_ip.is_empty(), "{:?}", pair.server_ip);
    assert_eq!(pair.client_ip.len(), 1);
    let ack = parse_ack(&pair.client_ip[0]).unwrap();
    assert_eq!(ack.xid, 0x5eed_f00d);
    assert_eq!(ack.ciaddr, POOL_FIRST);
    assert_eq!(ack.server_id, Some(SERVER_IP));
    assert_eq!(ack.classless_routes, [route]);
    assert_eq!(ack.ms_classless_routes, [route]);
    assert_eq!(pair.server.take_ip_policy().dhcp_informs_answered, 1);

    // To the server's own address as well.
    pair.client.send_ip(&inform(SERVER_IP)).unwrap();
    pair.pump();
    assert_eq!(pair.client_ip.len(), 2);
    assert!(pair.server_ip.is_empty());
}

#[test]
fn an_inform_for_another_server_or_with_nothing_to_tell_passes_like_any_packet() {
    let (mut pair, _) = answering_pair();
    let elsewhere = inform(Ipv4Addr::new(10, 8, 0, 77));
    pair.client.send_ip(&elsewhere).unwrap();
    pair.pump();
    assert_eq!(pair.server_ip, [elsewhere]);
    assert!(pair.client_ip.is_empty());

    let mut pair = Pair::new();
    pair.connect();
    let broadcast = inform(Ipv4Addr::BROADCAST);
    pair.client.send_ip(&broadcast).unwrap();
    pair.pump();
    assert_eq!(
        pair.server_ip,
        [broadcast],
        "no configuration: not answered"
    );
    assert_eq!(pair.server.take_ip_policy(), IpPolicyCounts::default());
}

#[test]
fn a_spoofed_inform_is_dropped_not_answered() {
    let (mut pair, _) = answering_pair();
    let mut spoofed = inform(Ipv4Addr::BROADCAST);
    spoofed[12..16].copy_from_slice(&[10, 8, 0, 11]);
    pair.client.send_ip(&spoofed).unwrap();
    pair.pump();
    assert!(pair.server_ip.is_empty() && pair.client_ip.is_empty());
    assert_eq!(
        pair.server.take_ip_policy(),
        IpPolicyCounts {
            foreign_source: 1,
            dhcp_informs_answered: 0
        }
    );
}
