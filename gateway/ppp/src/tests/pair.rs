//! Client and server negotiating with each other.

use super::*;
use crate::{AuthFailure, AuthMethod, DownReason, Hlak};

fn pair_with(server: ServerConfig, users: Users, client: ClientConfig, pool: &Pool) -> Pair {
    let server = new_server(server, users, pool);
    let client = Client::new(client, rng(2));
    let mut pair = Pair::new(server, client);
    pair.start();
    pair.run();
    pair
}

fn authenticated_hlak(events: &[ServerEvent]) -> Hlak {
    events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Authenticated { hlak, .. } => Some(hlak.clone()),
            _ => None,
        })
        .expect("server authenticated the client")
}

#[test]
fn mschapv2_login_brings_ipv4_up_on_both_sides_with_the_pool_address_and_dns() {
    let pool = Pool::new(&POOL);
    let mut pair = Pair::new(
        new_server(server_config(), alice(), &pool),
        Client::new(client_config("alice", "correct horse"), rng(2)),
    );
    pair.start();
    pair.drive();

    let hlak = authenticated_hlak(&pair.server_events);
    assert_ne!(hlak, Hlak::ZERO);
    assert!(matches!(
        &pair.server_events[..],
        [
            ServerEvent::Authenticated { username, method: AuthMethod::MsChapV2, .. },
            ServerEvent::Ipv4Up { peer },
        ] if username == "alice" && *peer == POOL[0]
    ));
    assert_eq!(
        pair.client_events,
        [
            ClientEvent::Authenticated { hlak },
            ClientEvent::Ipv4Up {
                local: POOL[0],
                dns: [Some(DNS1), Some(DNS2)]
            },
        ]
    );
    assert_eq!(pair.server.peer_ipv4(), Some(POOL[0]));
    assert_eq!(pool.in_use(), [POOL[0]]);
    // No retransmission was needed: everything happened at the start instant.
    assert!(pair.server.poll_timeout().is_none());
}

#[test]
fn server_challenge_carries_the_server_name_and_success_the_authenticator_response() {
    let pool = Pool::new(&POOL);
    let pair = pair_with(
        server_config(),
        alice(),
        client_config("alice", "correct horse"),
        &pool,
    );
    let chap: Vec<&Sent> = pair
        .wire
        .iter()
        .filter(|(_, s)| s.protocol == Protocol::CHAP)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(chap.len(), 3, "challenge, response, success");
    assert_eq!(chap[0].code, 1);
    assert_eq!(chap[0].data[0], 16);
    assert_eq!(&chap[0].data[17..], b"sstp-gw");
    assert_eq!(chap[1].code, 2);
    assert_eq!(chap[1].data[0], 49);
    assert_eq!(&chap[1].data[50..], b"alice");
    let success = String::from_utf8(chap[2].data.clone()).unwrap();
    assert_eq!(chap[2].code, 3);
    assert!(success.starts_with("S="), "{success}");
    let hex_part = &success[2..42];
    assert!(
        hex_part
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert!(success[42..].starts_with(" M="), "{success}");
}

#[test]
fn domain_prefixed_user_name_authenticates_as_the_bare_user() {
    let pool = Pool::new(&POOL);
    let pair = pair_with(
        server_config(),
        alice(),
        client_config("CORP\\alice", "correct horse"),
        &pool,
    );
    assert!(matches!(
        &pair.server_events[0],
        ServerEvent::Authenticated { username, .. } if username == "alice"
    ));
    assert!(matches!(pair.client_events[1], ClientEvent::Ipv4Up { .. }));
}

#[test]
fn pap_login_works_when_the_policy_allows_it_and_yields_a_zero_hlak() {
    let pool = Pool::new(&POOL);
    let mut server = server_config();
    server.auth = AuthPolicy {
        mschapv2: false,
        pap: true,
    };
    let mut client = client_config("alice", "correct horse");
    client.auth = AuthPolicy {
        mschapv2: false,
        pap: true,
    };
    let pair = pair_with(server, alice(), client, &pool);
    assert_eq!(
        pair.server_events[0],
        ServerEvent::Authenticated {
            username: "alice".to_owned(),
            method: AuthMethod::Pap,
            hlak: Hlak::ZERO
        }
    );
    assert_eq!(
        pair.client_events[0],
        ClientEvent::Authenticated { hlak: Hlak::ZERO }
    );
    assert!(matches!(pair.server_events[1], ServerEvent::Ipv4Up { peer } if peer == POOL[0]));
}

#[test]
fn server_allowing_both_methods_switches_to_pap_when_the_client_naks_mschapv2() {
    let pool = Pool::new(&POOL);
    let mut server = server_config();
    server.auth.pap = true;
    let mut client = client_config("alice", "correct horse");
    client.auth = AuthPolicy {
        mschapv2: false,
        pap: true,
    };
    let pair = pair_with(server, alice(), client, &pool);
    assert!(matches!(
        pair.server_events[0],
        ServerEvent::Authenticated {
            method: AuthMethod::Pap,
            ..
        }
    ));
}

#[test]
fn pap_only_client_is_refused_when_pap_is_not_allowed() {
    let pool = Pool::new(&POOL);
    let mut client = client_config("alice", "correct horse");
    client.auth = AuthPolicy {
        mschapv2: false,
        pap: true,
    };
    let pair = pair_with(server_config(), alice(), client, &pool);
    assert_eq!(
        pair.server_events,
        [
            ServerEvent::AuthFailed {
                username: None,
                reason: AuthFailure::MethodNotAllowed
            },
            ServerEvent::Down {
                reason: DownReason::AuthFailed(AuthFailure::MethodNotAllowed)
            },
        ]
    );
    // A Terminate-Request before LCP is Opened does not end the peer's negotiation
    // (RFC 1661 Req-Sent + RTR); our client gives up once the closed server stops answering.
    assert_eq!(
        pair.client_events,
        [ClientEvent::Down {
            reason: DownReason::NoResponse {
                protocol: Protocol::LCP
            }
        }]
    );
    // The client's Naks all proposed PAP; the server never sent anything but MS-CHAPv2.
    let client_answers: Vec<u8> = pair
        .wire
        .iter()
        .filter(|(from_server, s)| !from_server && s.protocol == Protocol::LCP)
        .filter(|(_, s)| s.code == 3 || s.code == 4)
        .map(|(_, s)| s.code)
        .collect();
    // After Max-Failure Naks the client Rejects authentication, which the server cannot accept.
    assert_eq!(client_answers, [3, 3, 3, 3, 3, 4]);
    assert!(!pair.wire.iter().any(|(_, s)| s.protocol == Protocol::PAP));
    assert_eq!(pool.allocations(), 0);
}

fn failed_login(users: Users, username: &str, password: &str) -> (Pair, Pool) {
    let pool = Pool::new(&POOL);
    let pair = pair_with(
        server_config(),
        users,
        client_config(username, password),
        &pool,
    );
    (pair, pool)
}

fn assert_refused(pair: &Pair, username: &str, reason: AuthFailure) {
    assert_eq!(
        pair.server_events,
        [
            ServerEvent::AuthFailed {
                username: Some(username.to_owned()),
                reason
            },
            ServerEvent::Down {
                reason: DownReason::AuthFailed(reason)
            },
        ]
    );
    let [
        ClientEvent::AuthFailed { message },
        ClientEvent::Down { reason },
    ] = &pair.client_events[..]
    else {
        panic!("unexpected client events {:?}", pair.client_events);
    };
    assert_eq!(*reason, DownReason::AuthRejected);
    // RFC 2759 §6, no retry offered; the same answer whatever the cause.
    assert!(message.starts_with("E=691 R=0 C="), "{message}");
    assert_eq!(message[12..44].len(), 32);
    assert!(message[12..44].chars().all(|c| c.is_ascii_hexdigit()));
    assert!(message[44..].starts_with(" V=3 M="), "{message}");
    // The Failure goes out before LCP's Terminate-Request.
    let failure = pair
        .wire
        .iter()
        .position(|(s, p)| *s && p.protocol == Protocol::CHAP && p.code == 4);
    let terminate = pair
        .wire
        .iter()
        .position(|(s, p)| *s && p.protocol == Protocol::LCP && p.code == 5);
    assert!(failure.unwrap() < terminate.unwrap());
}

#[test]
fn wrong_password_fails_with_e691_and_the_link_goes_down() {
    let (pair, pool) = failed_login(alice(), "alice", "battery staple");
    assert_refused(&pair, "alice", AuthFailure::BadPassword);
    assert_eq!(pool.allocations(), 0);
}

#[test]
fn unknown_user_is_refused_like_a_wrong_password() {
    let (pair, _) = failed_login(alice(), "mallory", "correct horse");
    assert_refused(&pair, "mallory", AuthFailure::UnknownUser);
}

#[test]
fn disabled_expired_and_throttled_users_are_refused_with_their_reason() {
    for (account, reason) in [
        (Account::Disabled, AuthFailure::Disabled),
        (Account::Expired, AuthFailure::Expired),
        (Account::Throttled, AuthFailure::Throttled),
    ] {
        let users = Users::default().with("bob", account);
        let (pair, _) = failed_login(users, "bob", "whatever");
        assert_refused(&pair, "bob", reason);
    }
}

#[test]
fn pap_with_a_wrong_password_gets_a_nak_and_the_link_goes_down() {
    let pool = Pool::new(&POOL);
    let pap_only = AuthPolicy {
        mschapv2: false,
        pap: true,
    };
    let mut server = server_config();
    server.auth = pap_only;
    let mut client = client_config("alice", "nope");
    client.auth = pap_only;
    let pair = pair_with(server, alice(), client, &pool);
    assert_eq!(
        pair.server_events.last(),
        Some(&ServerEvent::Down {
            reason: DownReason::AuthFailed(AuthFailure::BadPassword)
        })
    );
    assert!(matches!(
        pair.client_events[0],
        ClientEvent::AuthFailed { .. }
    ));
    assert!(
        pair.wire
            .iter()
            .any(|(s, p)| *s && p.protocol == Protocol::PAP && p.code == 3)
    );
}

#[test]
fn ipv6cp_brings_up_interface_identifiers_when_both_sides_want_it() {
    let pool = Pool::new(&POOL);
    let mut server = server_config();
    server.ipv6 = true;
    let mut client = client_config("alice", "correct horse");
    client.ipv6 = true;
    let pair = pair_with(server, alice(), client, &pool);
    let server_view = pair.server_events.iter().find_map(|e| match e {
        ServerEvent::Ipv6Up { peer_interface_id } => Some(*peer_interface_id),
        _ => None,
    });
    let client_view = pair.client_events.iter().find_map(|e| match e {
        ClientEvent::Ipv6Up {
            local_interface_id,
            peer_interface_id,
        } => Some((*local_interface_id, *peer_interface_id)),
        _ => None,
    });
    let (client_local, client_peer) = client_view.unwrap();
    assert_eq!(server_view, Some(client_local));
    assert_ne!(client_local, client_peer);
    assert_ne!(client_local, [0; 8]);
}

#[test]
fn ipv6cp_is_protocol_rejected_when_disabled_and_ipv4_still_comes_up() {
    let pool = Pool::new(&POOL);
    let mut client = client_config("alice", "correct horse");
    client.ipv6 = true;
    let pair = pair_with(server_config(), alice(), client, &pool);
    let reject = pair
        .wire
        .iter()
        .find(|(s, p)| *s && p.protocol == Protocol::LCP && p.code == 8)
        .expect("a Protocol-Reject");
    assert_eq!(&reject.1.data[..2], &[0x80, 0x57]);
    assert!(matches!(pair.client_events[1], ClientEvent::Ipv4Up { .. }));
    assert!(
        !pair
            .client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Down { .. } | ClientEvent::Ipv6Up { .. }))
    );
}

#[test]
fn local_close_terminates_both_sides_and_releases_the_address() {
    let pool = Pool::new(&POOL);
    let mut pair = Pair::new(
        new_server(server_config(), alice(), &pool),
        Client::new(client_config("alice", "correct horse"), rng(2)),
    );
    pair.start();
    pair.drive();
    assert_eq!(pool.in_use(), [POOL[0]]);
    pair.server.close(pair.now, "shutting down");
    pair.run();
    assert_eq!(
        pair.server_events.last(),
        Some(&ServerEvent::Down {
            reason: DownReason::LocalClose {
                reason: "shutting down".to_owned()
            }
        })
    );
    assert_eq!(
        pair.client_events.last(),
        Some(&ClientEvent::Down {
            reason: DownReason::PeerTerminated
        })
    );
    assert!(pool.in_use().is_empty());
    assert_eq!(pair.server.peer_ipv4(), None);
}

#[test]
fn client_termination_is_reported_as_peer_terminated_after_the_restart_period() {
    let pool = Pool::new(&POOL);
    let mut pair = Pair::new(
        new_server(server_config(), alice(), &pool),
        Client::new(client_config("alice", "correct horse"), rng(2)),
    );
    pair.start();
    pair.drive();
    pair.client.close(pair.now, "user hung up");
    pair.drive();
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Down { .. }))
    );
    pair.run();
    assert_eq!(
        pair.server_events.last(),
        Some(&ServerEvent::Down {
            reason: DownReason::PeerTerminated
        })
    );
    assert!(pool.in_use().is_empty());
}

#[test]
fn address_goes_back_to_the_pool_when_the_server_is_dropped() {
    let pool = Pool::new(&POOL);
    let mut pair = Pair::new(
        new_server(server_config(), alice(), &pool),
        Client::new(client_config("alice", "correct horse"), rng(2)),
    );
    pair.start();
    pair.drive();
    assert_eq!(pool.in_use(), [POOL[0]]);
    drop(pair);
    assert!(pool.in_use().is_empty());
}

#[test]
fn lower_down_releases_the_address_once_and_reports_down_once() {
    let pool = Pool::new(&POOL);
    let mut pair = Pair::new(
        new_server(server_config(), alice(), &pool),
        Client::new(client_config("alice", "correct horse"), rng(2)),
    );
    pair.start();
    pair.drive();
    pair.server.lower_down();
    pair.server.lower_down();
    assert!(pair.server.poll_transmit().is_none());
    let downs: Vec<_> = std::iter::from_fn(|| pair.server.poll_event()).collect();
    assert_eq!(
        downs,
        [ServerEvent::Down {
            reason: DownReason::LowerDown
        }]
    );
    assert!(pool.in_use().is_empty());
    drop(pair);
    assert_eq!(pool.0.lock().unwrap().free.len(), POOL.len());
}

#[test]
fn exhausted_pool_is_refused_at_authentication_with_a_reason() {
    let pool = Pool::new(&[]);
    let pair = pair_with(
        server_config(),
        alice(),
        client_config("alice", "correct horse"),
        &pool,
    );
    // Decided before Success: the client sees a Failure that says why, never a Success
    // followed by a silent teardown.
    assert_eq!(
        pair.server_events[0],
        ServerEvent::AuthFailed {
            username: Some("alice".into()),
            reason: AuthFailure::AddressExhausted,
        }
    );
    assert!(
        !pair
            .server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Authenticated { .. }))
    );
    assert_eq!(
        pair.server_events.last(),
        Some(&ServerEvent::Down {
            reason: DownReason::AuthFailed(AuthFailure::AddressExhausted)
        })
    );
    let message = pair
        .client_events
        .iter()
        .find_map(|e| match e {
            ClientEvent::AuthFailed { message } => Some(message.clone()),
            _ => None,
        })
        .expect("the client saw a Failure");
    assert!(message.starts_with("E=649 R=0 C="), "{message}");
    assert!(
        message.ends_with("V=3 M=No client address is free on this gateway"),
        "{message}"
    );
}

#[test]
fn two_sessions_get_different_addresses_from_a_shared_pool() {
    let pool = Pool::new(&POOL);
    let first = pair_with(
        server_config(),
        alice(),
        client_config("alice", "correct horse"),
        &pool,
    );
    let second = pair_with(
        server_config(),
        alice(),
        client_config("alice", "correct horse"),
        &pool,
    );
    assert_eq!(first.server.peer_ipv4(), Some(POOL[0]));
    assert_eq!(second.server.peer_ipv4(), Some(POOL[1]));
}

#[test]
fn dns_requests_are_rejected_when_none_is_configured_and_ipv4_still_comes_up() {
    let pool = Pool::new(&POOL);
    let mut server = server_config();
    server.dns = [None, None];
    let pair = pair_with(
        server,
        alice(),
        client_config("alice", "correct horse"),
        &pool,
    );
    assert_eq!(
        pair.client_events[1],
        ClientEvent::Ipv4Up {
            local: POOL[0],
            dns: [None, None]
        }
    );
    let reject = pair
        .wire
        .iter()
        .find(|(s, p)| *s && p.protocol == Protocol::IPCP && p.code == 4)
        .expect("an IPCP Configure-Reject");
    assert_eq!(reject.1.data, [129, 6, 0, 0, 0, 0, 131, 6, 0, 0, 0, 0]);
}
