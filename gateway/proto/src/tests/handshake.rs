//! The whole way, with the real PPP server and client.

use std::time::Duration;

use sstp_ppp::AuthMethod;

use super::{POOL_FIRST, SERVER_IP, client_config, ipv4_packet, pair::Pair, server_config};
use crate::{
    CallConnectedTiming, ClientEvent, CloseReason, ControlMessage, HashProtocol, HashProtocolSet,
    SendError, ServerEvent, StatusInfo,
};

#[test]
fn a_client_connects_authenticates_binds_and_exchanges_ip_both_ways() {
    let mut pair = Pair::new();
    pair.connect();

    assert_eq!(
        pair.server_events[..3],
        [
            ServerEvent::HttpAccepted {
                host: Some("vpn.example.com".to_owned()),
                correlation_id: Some("{8C4F2B9A-0F3C-4E5B-9D6A-1B2C3D4E5F60}".to_owned()),
            },
            ServerEvent::Authenticated {
                username: "alice".to_owned(),
                method: AuthMethod::MsChapV2
            },
            ServerEvent::Connected {
                hash_protocol: HashProtocol::SHA256
            },
        ]
    );
    assert!(
        pair.server_events
            .contains(&ServerEvent::Ipv4Up { peer: POOL_FIRST })
    );
    assert!(matches!(
        pair.client_sent[0],
        ControlMessage::CallConnectRequest(_)
    ));
    assert!(
        matches!(pair.server_sent[0], ControlMessage::CallConnectAck(ref r) if r.hash_protocols == HashProtocolSet::BOTH)
    );

    let up = ipv4_packet(POOL_FIRST, SERVER_IP, 1372);
    pair.client.send_ip(&up).expect("client IPv4 is up");
    let down = ipv4_packet(SERVER_IP, POOL_FIRST, 100);
    pair.server.send_ip(&down).expect("server IPv4 is up");
    pair.pump();
    assert_eq!(pair.server_ip, vec![up]);
    assert_eq!(pair.client_ip, vec![down]);
}

#[test]
fn an_ip_packet_too_large_for_one_sstp_packet_is_refused() {
    let mut pair = Pair::new();
    pair.connect();
    // 4095 - 4 (SSTP header) - 4 (PPP header) = 4087 bytes of IP at most.
    let largest = ipv4_packet(SERVER_IP, POOL_FIRST, 4087 - 20);
    pair.server.send_ip(&largest).expect("fits exactly");
    let oversized = ipv4_packet(SERVER_IP, POOL_FIRST, 4088 - 20);
    assert_eq!(
        pair.server.send_ip(&oversized),
        Err(SendError::TooLarge(4088))
    );
    pair.pump();
    assert_eq!(pair.client_ip, vec![largest]);
}

#[test]
fn an_idle_connection_is_kept_alive_by_echo() {
    let mut pair = Pair::new();
    pair.connect();
    let connected_at = pair.now;
    pair.run_until("two hello intervals passed", |p| {
        p.now >= connected_at + Duration::from_secs(130)
    });
    assert!(pair.server_sent.contains(&ControlMessage::EchoRequest));
    assert!(pair.client_sent.contains(&ControlMessage::EchoResponse));
    assert!(!pair.server.is_closed() && !pair.client.is_closed());
}

#[test]
fn traffic_from_the_peer_restarts_the_hello_timer() {
    let mut pair = Pair::new();
    pair.connect();
    for _ in 0..5 {
        pair.advance(Duration::from_secs(50));
        pair.client
            .send_ip(&ipv4_packet(POOL_FIRST, SERVER_IP, 8))
            .expect("connected");
        pair.pump();
    }
    assert_eq!(pair.server_ip.len(), 5);
    assert!(!pair.server_sent.contains(&ControlMessage::EchoRequest));
    // The server sent nothing, so the client did probe, and got its answer.
    assert!(pair.client_sent.contains(&ControlMessage::EchoRequest));
    assert!(pair.server_sent.contains(&ControlMessage::EchoResponse));
    assert!(!pair.server.is_closed());
}

#[test]
fn server_disconnect_terminates_ppp_then_sstp_and_releases_the_address() {
    let mut pair = Pair::new();
    pair.connect();
    assert_eq!(pair.pool.in_use(), vec![POOL_FIRST]);
    pair.server.disconnect(pair.now);
    pair.run_until_closed();
    assert_eq!(
        pair.server_closed_reason(),
        Some(&CloseReason::LocalDisconnect)
    );
    assert!(
        pair.server_sent.contains(&ControlMessage::CallDisconnect(
            Some(StatusInfo::no_error())
        ))
    );
    assert!(
        pair.client_sent
            .contains(&ControlMessage::CallDisconnectAck)
    );
    assert!(pair.pool.in_use().is_empty());
    assert_eq!(
        pair.server.send_ip(&ipv4_packet(SERVER_IP, POOL_FIRST, 1)),
        Err(SendError::Closed)
    );
}

#[test]
fn client_disconnect_closes_both_sides_exactly_once() {
    let mut pair = Pair::new();
    pair.connect();
    pair.client.disconnect(pair.now);
    pair.run_until_closed();
    assert_eq!(
        pair.client_closed_reason(),
        Some(&CloseReason::LocalDisconnect)
    );
    let closed = |events: &[ServerEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, ServerEvent::Closed { .. }))
            .count()
    };
    assert_eq!(closed(&pair.server_events), 1);
    assert!(pair.pool.in_use().is_empty());
}

fn connect_with_timing(timing: CallConnectedTiming) -> Pair {
    let mut client = client_config("alice", super::PASSWORD);
    client.call_connected = timing;
    let mut pair = Pair::with(client, server_config());
    pair.connect();
    pair
}

#[test]
fn call_connected_sent_before_the_chap_response_is_buffered_until_authentication() {
    let pair = connect_with_timing(CallConnectedTiming::BeforeChapResponse);
    let authenticated = pair
        .server_events
        .iter()
        .position(|e| matches!(e, ServerEvent::Authenticated { .. }))
        .expect("authenticated");
    let connected = pair
        .server_events
        .iter()
        .position(|e| matches!(e, ServerEvent::Connected { .. }))
        .expect("connected");
    assert!(authenticated < connected);
}

#[test]
fn call_connected_right_after_the_chap_response_like_sstpc_is_accepted() {
    let pair = connect_with_timing(CallConnectedTiming::AfterChapResponse);
    assert!(pair.client_events.contains(&ClientEvent::Connected {
        hash_protocol: HashProtocol::SHA256
    }));
}

#[test]
fn a_sha1_only_server_gets_a_sha1_binding() {
    let mut server = server_config();
    server.hash_protocols = HashProtocolSet::SHA1;
    let mut pair = Pair::with(client_config("alice", super::PASSWORD), server);
    pair.connect();
    assert!(pair.server_events.contains(&ServerEvent::Connected {
        hash_protocol: HashProtocol::SHA1
    }));
}

#[test]
fn ip_sent_before_the_call_is_connected_is_refused() {
    let mut pair = Pair::new();
    let packet = ipv4_packet(POOL_FIRST, SERVER_IP, 10);
    assert_eq!(pair.client.send_ip(&packet), Err(SendError::NotConnected));
    assert_eq!(pair.server.send_ip(&[0x00, 1, 2]), Err(SendError::NotIp));
}

#[test]
fn ipv6_comes_up_alongside_ipv4_and_carries_packets_both_ways() {
    let mut server = server_config();
    let mut ppp = (*server.ppp).clone();
    ppp.ipv6 = true;
    server.ppp = std::sync::Arc::new(ppp);
    let mut client = client_config("alice", super::PASSWORD);
    client.ppp.ipv6 = true;
    let mut pair = Pair::with(client, server);
    pair.run_until("IPv6 up on both sides", |p| {
        p.server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Ipv6Up { .. }))
            && p.client_events
                .iter()
                .any(|e| matches!(e, ClientEvent::Ipv6Up { .. }))
    });
    let mut packet = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    packet.resize(48, 0xfe);
    pair.client.send_ip(&packet).expect("IPv6 up");
    pair.server.send_ip(&packet).expect("IPv6 up");
    pair.pump();
    assert_eq!(pair.server_ip, vec![packet.clone()]);
    assert_eq!(pair.client_ip, vec![packet]);
}

#[test]
fn ip_from_the_peer_before_call_connected_is_dropped() {
    let mut client = client_config("alice", super::PASSWORD);
    client.call_connected = CallConnectedTiming::Never;
    let mut pair = Pair::with(client, server_config());
    pair.run_until("server IPCP up", |p| {
        p.server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Ipv4Up { .. }))
    });
    let data_packet = |ip: &[u8]| {
        let mut frame = vec![0xff, 0x03, 0x00, 0x21];
        frame.extend_from_slice(ip);
        let mut out = Vec::new();
        crate::packet::encode_data(&frame, &mut out).unwrap();
        out
    };
    let ip = ipv4_packet(POOL_FIRST, SERVER_IP, 8);
    pair.server.handle_input(pair.now, &data_packet(&ip));
    pair.pump();
    assert!(pair.server_ip.is_empty(), "dropped before CALL_CONNECTED");

    let mut pair = Pair::new();
    pair.connect();
    pair.server.handle_input(pair.now, &data_packet(&ip));
    pair.pump();
    assert_eq!(
        pair.server_ip,
        vec![ip],
        "the same packet passes once connected"
    );
}
