//! The Windows profiles against the server, in memory: every Windows behaviour the profile
//! reproduces and the server's answer to it, asserted from the client's transcript.

use std::time::Duration;

use super::{POOL_FIRST, SERVER_IP, client_config, ipv4_packet, pair::Pair, server_config};
use crate::{
    ClientConfig, ClientEvent, ClientProfile, CloseReason, ControlMessage, HashProtocol, Recorded,
    RecordedPacket, ServerEvent,
};

fn windows(profile: ClientProfile) -> ClientConfig {
    let mut config = client_config("alice", super::PASSWORD).with_profile(profile);
    config.correlation_id = None;
    config.record = true;
    config
}

fn connected(config: ClientConfig) -> (Pair, Vec<Recorded>) {
    let mut pair = Pair::with(config, server_config());
    pair.connect();
    let recorded = pair.client.take_recorded();
    (pair, recorded)
}

/// Position of the first recorded packet that `pick` accepts.
fn position(recorded: &[Recorded], pick: impl Fn(&Recorded) -> bool) -> usize {
    recorded
        .iter()
        .position(pick)
        .unwrap_or_else(|| panic!("not in the transcript: {recorded:#?}"))
}

fn is_ppp(r: &Recorded, from_server: bool, protocol: u16, code: u8) -> bool {
    matches!(&r.packet, RecordedPacket::Ppp { protocol: p, information, .. }
        if r.from_server == from_server && p.0 == protocol && information.first() == Some(&code))
}

#[test]
fn windows_sends_a_braced_correlation_guid_new_per_attempt() {
    for profile in [ClientProfile::Windows10, ClientProfile::Windows11] {
        let (first, recorded) = connected(windows(profile));
        let RecordedPacket::Http(request) = &recorded[0].packet else {
            panic!("the HTTP request comes first");
        };
        let id = first.client.correlation_id().unwrap().to_owned();
        assert!(request.contains(&format!("SSTPCORRELATIONID: {id}\r\n")));
        assert!(
            id.starts_with('{') && id.ends_with('}') && id.len() == 38,
            "{id}"
        );
        let seen = first.server_events.iter().find_map(|e| match e {
            ServerEvent::HttpAccepted { correlation_id, .. } => correlation_id.clone(),
            _ => None,
        });
        assert_eq!(
            seen.as_deref(),
            Some(id.as_str()),
            "the server reads it as sent"
        );
        // Another attempt (another random source) carries another GUID.
        let mut config = windows(profile);
        config.new_correlation_id = Some(crate::GuidStyle::Braced);
        let other = crate::ClientConnection::new(
            config,
            super::cert(),
            super::rng(99),
            std::time::Instant::now(),
        );
        assert_ne!(other.correlation_id(), Some(id.as_str()));
    }
}

#[test]
fn sstpc_sends_a_bare_correlation_guid_and_call_connected_before_chap_success() {
    let (pair, recorded) = connected(windows(ClientProfile::Sstpc));
    let id = pair.client.correlation_id().unwrap();
    assert_eq!(id.len(), 36);
    assert!(!id.contains('{'));
    let connected = position(&recorded, |r| {
        !r.from_server
            && matches!(
                r.packet,
                RecordedPacket::Control(ControlMessage::CallConnected(_))
            )
    });
    let success = position(&recorded, |r| is_ppp(r, true, 0xC223, 3));
    assert!(
        connected < success,
        "sstpc binds before the server's Success"
    );
}

#[test]
fn windows_sends_call_connected_only_after_chap_success_and_chooses_sha256() {
    for profile in [ClientProfile::Windows10, ClientProfile::Windows11] {
        let (pair, recorded) = connected(windows(profile));
        let ack = position(&recorded, |r| {
            r.from_server
                && matches!(&r.packet, RecordedPacket::Control(ControlMessage::CallConnectAck(req))
                if req.hash_protocols == crate::HashProtocolSet::BOTH)
        });
        let success = position(&recorded, |r| is_ppp(r, true, 0xC223, 3));
        let connected = position(&recorded, |r| {
            !r.from_server
                && matches!(&r.packet, RecordedPacket::Control(ControlMessage::CallConnected(b))
                    if b.hash_protocol == HashProtocol::SHA256)
        });
        assert!(
            ack < success && success < connected,
            "spec order (§3.2.7.1)"
        );
        assert!(pair.server_events.contains(&ServerEvent::Connected {
            hash_protocol: HashProtocol::SHA256
        }));
        assert!(pair.client_events.contains(&ClientEvent::Connected {
            hash_protocol: HashProtocol::SHA256
        }));
    }
}

#[test]
fn windows_frames_compressed_after_pfc_and_acfc_are_accepted_both_ways() {
    for compress in [true, false] {
        let mut config = windows(ClientProfile::Windows10);
        config.compress_frames = compress;
        let (mut pair, recorded) = connected(config);
        // The first IPCP request goes out after LCP opened with PFC and ACFC acked.
        let ipcp = recorded
            .iter()
            .find(|r| is_ppp(r, false, 0x8021, 1))
            .unwrap();
        let RecordedPacket::Ppp { frame, .. } = &ipcp.packet else {
            unreachable!()
        };
        let expected: &[u8] = if compress {
            &[0x80, 0x21]
        } else {
            &[0xFF, 0x03, 0x80, 0x21]
        };
        assert_eq!(&frame[..expected.len()], expected, "compress={compress}");
        let packet = ipv4_packet(POOL_FIRST, SERVER_IP, 40);
        pair.client.send_ip(&packet).unwrap();
        pair.pump();
        assert_eq!(pair.server_ip, [packet], "compress={compress}");
    }
}

#[test]
fn windows_disconnect_carries_status_info_and_is_acknowledged() {
    let (mut pair, _) = connected(windows(ClientProfile::Windows11));
    pair.client.disconnect(pair.now);
    pair.run_until_closed();
    let recorded = pair.client.take_recorded();
    let disconnect = position(&recorded, |r| {
        !r.from_server
            && matches!(
                &r.packet,
                RecordedPacket::Control(ControlMessage::CallDisconnect(Some(_)))
            )
    });
    let ack = position(&recorded, |r| {
        r.from_server && r.packet == RecordedPacket::Control(ControlMessage::CallDisconnectAck)
    });
    assert!(disconnect < ack);
    // PPP went first: LCP Terminate-Request, then its Ack (§3.2.4.2).
    let terminate = position(&recorded, |r| is_ppp(r, false, 0xC021, 5));
    assert!(terminate < disconnect);
    assert_eq!(
        pair.client_closed_reason(),
        Some(&CloseReason::LocalDisconnect)
    );
}

#[test]
fn windows_abort_carries_status_info_and_is_answered_with_an_abort() {
    // A client abort: the server offers only SHA-1 and this client insists on SHA-256.
    let mut config = windows(ClientProfile::Windows10);
    config.hash_protocols = crate::HashProtocolSet::SHA256;
    let mut server = server_config();
    server.hash_protocols = crate::HashProtocolSet::SHA1;
    let mut pair = Pair::with(config, server);
    pair.run_until_closed();
    let recorded = pair.client.take_recorded();
    let abort = position(&recorded, |r| {
        !r.from_server
            && matches!(
                &r.packet,
                RecordedPacket::Control(ControlMessage::CallAbort(Some(_)))
            )
    });
    let answer = position(&recorded, |r| {
        r.from_server
            && matches!(
                &r.packet,
                RecordedPacket::Control(ControlMessage::CallAbort(_))
            )
    });
    assert!(abort < answer);
}

#[test]
fn windows_echo_request_is_answered_by_the_server() {
    let mut config = windows(ClientProfile::Windows10);
    config.timers.hello = Duration::from_secs(5);
    let (mut pair, _) = connected(config);
    pair.advance(Duration::from_secs(6));
    let recorded = pair.client.take_recorded();
    let echo = position(&recorded, |r| {
        !r.from_server && r.packet == RecordedPacket::Control(ControlMessage::EchoRequest)
    });
    let response = position(&recorded, |r| {
        r.from_server && r.packet == RecordedPacket::Control(ControlMessage::EchoResponse)
    });
    assert!(echo < response);
    assert!(!pair.client.is_closed());
}

#[test]
fn windows_ccp_and_ipv6cp_get_protocol_rejects_and_ipv4_stays_up() {
    let (pair, recorded) = connected(windows(ClientProfile::Windows11));
    let rejected: Vec<[u8; 2]> = recorded
        .iter()
        .filter_map(|r| match &r.packet {
            RecordedPacket::Ppp {
                protocol,
                information,
                ..
            } if r.from_server && protocol.0 == 0xC021 && information[0] == 8 => {
                Some([information[4], information[5]])
            }
            _ => None,
        })
        .collect();
    assert!(rejected.contains(&[0x80, 0xFD]), "CCP: {rejected:?}");
    assert!(rejected.contains(&[0x80, 0x57]), "IPv6CP: {rejected:?}");
    assert!(!pair.client.is_closed());
}
