//! A server against a scripted raw peer: LCP details the friendly client never exercises.

use std::time::Duration;

use super::*;
use crate::{AuthFailure, DownReason};

/// The server and everything it sent, with a virtual clock.
struct Raw {
    server: Server,
    pool: Pool,
    now: Instant,
    sent: Vec<Sent>,
    events: Vec<ServerEvent>,
}

impl Raw {
    fn new(config: ServerConfig) -> Self {
        let pool = Pool::new(&POOL);
        let mut raw = Self {
            server: new_server(config, alice(), &pool),
            pool,
            now: Instant::now(),
            sent: Vec::new(),
            events: Vec::new(),
        };
        raw.server.lower_up(raw.now);
        raw.collect();
        raw
    }

    /// Sends one control packet to the server and returns what it sent back.
    fn send(&mut self, protocol: Protocol, information: &[u8]) -> Vec<Sent> {
        self.server.handle_frame(self.now, protocol, information);
        self.collect()
    }

    fn collect(&mut self) -> Vec<Sent> {
        let new: Vec<Sent> = std::iter::from_fn(|| self.server.poll_transmit())
            .map(|f| parse_sent(&f))
            .collect();
        self.sent.extend(new.iter().cloned());
        self.events
            .extend(std::iter::from_fn(|| self.server.poll_event()));
        new
    }

    /// Advances to the server's next deadline, if any, and returns what it sent.
    fn tick(&mut self) -> Option<Vec<Sent>> {
        let next = self.server.poll_timeout()?;
        self.now = self.now.max(next);
        self.server.handle_timeout(self.now);
        Some(self.collect())
    }

    /// Acks the server's latest Configure-Request and sends it an empty one: LCP is Opened.
    fn open_lcp(&mut self) {
        let request = self.last(Protocol::LCP, 1).clone();
        self.send(Protocol::LCP, &packet(2, request.id, &request.data));
        let answer = self.send(Protocol::LCP, &packet(1, 0x42, &[]));
        assert_eq!(answer[0].code, 2, "empty Configure-Request is acked");
    }

    fn last(&self, protocol: Protocol, code: u8) -> &Sent {
        self.sent
            .iter()
            .rev()
            .find(|s| s.protocol == protocol && s.code == code)
            .expect("the server sent such a packet")
    }

    fn downs(&self) -> Vec<&DownReason> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Down { reason } => Some(reason),
                _ => None,
            })
            .collect()
    }
}

/// Options of a real Windows LCP Configure-Request (reference §4: mru 4091, magic, pcomp,
/// accomp, callback CBCP, mrru 1614, endpoint discriminator).
fn windows_options(with_extras: bool) -> Vec<u8> {
    let mut options = vec![
        0x01, 0x04, 0x0F, 0xFB, // MRU 4091
        0x05, 0x06, 0x3C, 0x1D, 0x6A, 0x11, // Magic
        0x07, 0x02, // PFC
        0x08, 0x02, // ACFC
    ];
    if with_extras {
        options.extend_from_slice(&windows_extras());
    }
    options
}

fn windows_extras() -> Vec<u8> {
    let mut extras = vec![
        0x0D, 0x03, 0x06, // Callback, operation 6 (CBCP)
        0x11, 0x04, 0x06, 0x4E, // MRRU 1614
        0x13, 0x13, 0x01, // Endpoint-Discriminator, class 1, 16 bytes
    ];
    extras.extend_from_slice(&[0xA5; 16]);
    extras
}

#[test]
fn server_configure_request_asks_for_mschapv2_and_a_magic_number() {
    let raw = Raw::new(server_config());
    let request = raw.last(Protocol::LCP, 1);
    assert_eq!(&request.data[..5], &[0x03, 0x05, 0xC2, 0x23, 0x81]);
    assert_eq!(&request.data[5..7], &[0x05, 0x06]);
    assert_eq!(request.data.len(), 11, "no MRU option at the default 1500");
}

#[test]
fn windows_configure_request_gets_callback_mrru_and_endpoint_rejected_then_acked() {
    let mut raw = Raw::new(server_config());
    let answer = raw.send(Protocol::LCP, &packet(1, 7, &windows_options(true)));
    assert_eq!(answer.len(), 1);
    assert_eq!((answer[0].code, answer[0].id), (4, 7), "Configure-Reject");
    assert_eq!(answer[0].data, windows_extras());

    let answer = raw.send(Protocol::LCP, &packet(1, 8, &windows_options(false)));
    assert_eq!((answer[0].code, answer[0].id), (2, 8), "Configure-Ack");
    assert_eq!(answer[0].data, windows_options(false));
}

#[test]
fn empty_configure_request_is_acked() {
    let mut raw = Raw::new(server_config());
    let answer = raw.send(Protocol::LCP, &packet(1, 3, &[]));
    assert_eq!(
        answer,
        [Sent {
            protocol: Protocol::LCP,
            code: 2,
            id: 3,
            data: vec![]
        }]
    );
}

#[test]
fn quality_protocol_and_unknown_options_are_rejected_and_bad_lengths_too() {
    let mut raw = Raw::new(server_config());
    let options = [0x04, 0x04, 0xC0, 0x25, 0x63, 0x02, 0x01, 0x03, 0x05];
    let answer = raw.send(Protocol::LCP, &packet(1, 3, &options));
    assert_eq!(answer[0].code, 4);
    assert_eq!(answer[0].data, options);
}

#[test]
fn magic_number_zero_is_naked_with_a_fresh_value() {
    let mut raw = Raw::new(server_config());
    let answer = raw.send(Protocol::LCP, &packet(1, 3, &[0x05, 0x06, 0, 0, 0, 0]));
    assert_eq!(answer[0].code, 3);
    assert_eq!(&answer[0].data[..2], &[0x05, 0x06]);
    assert_ne!(&answer[0].data[2..], &[0, 0, 0, 0]);
}

#[test]
fn an_ack_that_does_not_match_our_request_is_ignored() {
    let mut raw = Raw::new(server_config());
    let request = raw.last(Protocol::LCP, 1).clone();
    raw.send(Protocol::LCP, &packet(2, request.id, &[0x07, 0x02]));
    raw.send(
        Protocol::LCP,
        &packet(2, request.id.wrapping_add(9), &request.data),
    );
    raw.send(Protocol::LCP, &packet(1, 1, &[]));
    assert!(
        !raw.sent.iter().any(|s| s.protocol == Protocol::CHAP),
        "LCP must not be Opened"
    );
}

#[test]
fn ccp_is_dropped_before_lcp_opens_and_protocol_rejected_after() {
    let mut raw = Raw::new(server_config());
    let ccp = packet(1, 1, &[0x12, 0x06, 0, 0, 0, 0x01]);
    assert!(raw.send(Protocol::CCP, &ccp).is_empty());
    raw.open_lcp();
    let answer = raw.send(Protocol::CCP, &ccp);
    assert_eq!(answer.len(), 1);
    assert_eq!((answer[0].protocol, answer[0].code), (Protocol::LCP, 8));
    assert_eq!(&answer[0].data[..2], &[0x80, 0xFD]);
    assert_eq!(&answer[0].data[2..], &ccp[..]);
    assert!(
        raw.downs().is_empty(),
        "a Protocol-Reject does not end the link"
    );
}

#[test]
fn eap_and_unknown_protocols_are_protocol_rejected_once_opened() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    for protocol in [Protocol::EAP, Protocol(0x80F1), Protocol::MP] {
        let answer = raw.send(protocol, &packet(1, 1, &[]));
        assert_eq!(answer[0].code, 8, "{protocol}");
        assert_eq!(answer[0].data[..2], protocol.0.to_be_bytes());
    }
}

#[test]
fn echo_request_is_answered_with_our_magic_and_the_same_data() {
    let mut raw = Raw::new(server_config());
    let request = raw.last(Protocol::LCP, 1).clone();
    let our_magic = request.data[7..11].to_vec();
    raw.open_lcp();
    let answer = raw.send(Protocol::LCP, &packet(9, 0x33, &[1, 2, 3, 4, 0xDE, 0xAD]));
    assert_eq!(answer.len(), 1);
    assert_eq!((answer[0].code, answer[0].id), (10, 0x33));
    assert_eq!(&answer[0].data[..4], &our_magic[..]);
    assert_eq!(&answer[0].data[4..], &[0xDE, 0xAD]);
}

#[test]
fn echo_request_before_lcp_opens_is_not_answered() {
    let mut raw = Raw::new(server_config());
    assert!(
        raw.send(Protocol::LCP, &packet(9, 1, &[1, 2, 3, 4]))
            .is_empty()
    );
}

#[test]
fn identification_discard_and_time_remaining_are_ignored() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    for code in [11, 12, 13] {
        let mut data = vec![1, 2, 3, 4];
        data.extend_from_slice(b"MSRASV5.20");
        assert!(raw.send(Protocol::LCP, &packet(code, 5, &data)).is_empty());
    }
    assert!(raw.downs().is_empty());
}

#[test]
fn unknown_lcp_code_gets_a_code_reject_carrying_the_packet() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    let unknown = packet(42, 9, &[0xAB]);
    let answer = raw.send(Protocol::LCP, &unknown);
    assert_eq!(answer[0].code, 7);
    assert_eq!(answer[0].data, unknown);
}

#[test]
fn peer_that_never_answers_gets_max_configure_requests_then_the_link_goes_down() {
    let mut raw = Raw::new(server_config());
    let start = raw.now;
    while raw.tick().is_some() {}
    let requests = raw.sent.iter().filter(|s| s.code == 1).count();
    assert_eq!(requests, 10);
    assert_eq!(raw.now - start, Duration::from_secs(30));
    assert_eq!(
        raw.downs(),
        [&DownReason::NoResponse {
            protocol: Protocol::LCP
        }]
    );
    assert!(raw.server.poll_timeout().is_none());
}

#[test]
fn peer_that_naks_forever_ends_the_link_after_max_failure() {
    let mut raw = Raw::new(server_config());
    for _ in 0..50 {
        let request = raw.last(Protocol::LCP, 1).clone();
        let answer = raw.send(
            Protocol::LCP,
            &packet(3, request.id, &[0x05, 0x06, 1, 2, 3, 4]),
        );
        if answer.iter().any(|s| s.code == 5) {
            break;
        }
    }
    let naks_answered = raw.sent.iter().filter(|s| s.code == 1).count();
    assert_eq!(
        naks_answered, 6,
        "the first request plus one per tolerated Nak"
    );
    let terminate = raw.last(Protocol::LCP, 5).clone();
    raw.send(Protocol::LCP, &packet(6, terminate.id, &[]));
    assert_eq!(
        raw.downs(),
        [&DownReason::NotConverging {
            protocol: Protocol::LCP
        }]
    );
}

#[test]
fn peer_that_never_accepts_our_rejects_is_not_converging_either() {
    let mut raw = Raw::new(server_config());
    for id in 0..30u8 {
        raw.send(Protocol::LCP, &packet(1, id, &windows_options(true)));
        if !raw.downs().is_empty() || raw.sent.iter().any(|s| s.code == 5) {
            break;
        }
    }
    let rejects = raw.sent.iter().filter(|s| s.code == 4).count();
    assert_eq!(rejects, 11, "2 x Max-Failure Rejects are tolerated");
    while raw.tick().is_some() {}
    assert_eq!(
        raw.downs(),
        [&DownReason::NotConverging {
            protocol: Protocol::LCP
        }]
    );
}

#[test]
fn looped_back_link_is_detected_through_the_magic_number() {
    let mut raw = Raw::new(server_config());
    for _ in 0..100 {
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| raw.server.poll_transmit()).collect();
        let pending = raw.sent.split_off(0);
        let mut looped: Vec<Vec<u8>> = pending
            .iter()
            .map(|s| packet(s.code, s.id, &s.data))
            .collect();
        looped.extend(
            frames
                .iter()
                .map(|f| decode_frame(f).unwrap().information.to_vec()),
        );
        if looped.is_empty() {
            break;
        }
        for information in looped {
            raw.send(Protocol::LCP, &information);
        }
    }
    assert_eq!(raw.downs(), [&DownReason::LoopbackDetected]);
}

#[test]
fn peer_terminate_request_is_acked_at_once_and_down_follows_after_the_restart_period() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    let answer = raw.send(Protocol::LCP, &packet(5, 0x77, &[]));
    assert_eq!(
        answer,
        [Sent {
            protocol: Protocol::LCP,
            code: 6,
            id: 0x77,
            data: vec![]
        }]
    );
    assert!(raw.downs().is_empty());
    raw.tick();
    assert_eq!(raw.downs(), [&DownReason::PeerTerminated]);
}

#[test]
fn unanswered_challenge_is_retransmitted_then_authentication_times_out() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    while raw.downs().is_empty() {
        if raw.tick().is_none() {
            break;
        }
    }
    let challenges: Vec<&Sent> = raw
        .sent
        .iter()
        .filter(|s| s.protocol == Protocol::CHAP && s.code == 1)
        .collect();
    assert_eq!(challenges.len(), 10);
    assert!(
        challenges.windows(2).all(|w| w[0] == w[1]),
        "same id and challenge"
    );
    assert_eq!(
        raw.events[0],
        ServerEvent::AuthFailed {
            username: None,
            reason: AuthFailure::Timeout
        }
    );
    assert_eq!(raw.downs(), [&DownReason::AuthFailed(AuthFailure::Timeout)]);
    assert_eq!(raw.pool.allocations(), 0);
}

#[test]
fn ipcp_before_authentication_is_silently_discarded() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    let answer = raw.send(Protocol::IPCP, &packet(1, 1, &[0x03, 0x06, 0, 0, 0, 0]));
    assert!(answer.is_empty());
}

#[test]
fn server_with_no_method_allowed_never_lets_a_peer_in() {
    let mut config = server_config();
    config.auth = AuthPolicy {
        mschapv2: false,
        pap: false,
    };
    let mut raw = Raw::new(config);
    raw.open_lcp();
    assert_eq!(
        raw.events[0],
        ServerEvent::AuthFailed {
            username: None,
            reason: AuthFailure::MethodNotAllowed
        }
    );
    assert_eq!(raw.last(Protocol::LCP, 5).protocol, Protocol::LCP);
}

/// windows-client.md §4 check 5: every protocol Windows may start besides the ones we run is
/// Protocol-Rejected once LCP is Opened, and none of them ends the link.
#[test]
fn ecp_cbcp_bacp_bap_and_multilink_are_protocol_rejected_once_opened() {
    let mut raw = Raw::new(server_config());
    raw.open_lcp();
    for protocol in [
        Protocol::ECP,
        Protocol::CBCP,
        Protocol(0xC02B), // BACP (RFC 2125)
        Protocol(0xC02D), // BAP (RFC 2125)
        Protocol::MP,
        Protocol::CCP,
    ] {
        let request = packet(1, 3, &[]);
        let answer = raw.send(protocol, &request);
        assert_eq!(answer.len(), 1, "{protocol}");
        assert_eq!((answer[0].protocol, answer[0].code), (Protocol::LCP, 8));
        assert_eq!(answer[0].data[..2], protocol.0.to_be_bytes());
        assert_eq!(&answer[0].data[2..], &request[..]);
    }
    assert!(raw.downs().is_empty());
}

/// windows-client.md §4 check 4: MRU 4091 is acked, not Nak'd, and Link-Discriminator (23),
/// which no public Windows trace shows but the check lists, is rejected with the rest.
#[test]
fn mru_4091_is_acked_and_link_discriminator_is_rejected() {
    let mut raw = Raw::new(server_config());
    let mut options = windows_options(true);
    options.extend_from_slice(&[0x17, 0x04, 0x00, 0x01]);
    let answer = raw.send(Protocol::LCP, &packet(1, 1, &options));
    assert_eq!(answer[0].code, 4);
    let mut expected = windows_extras();
    expected.extend_from_slice(&[0x17, 0x04, 0x00, 0x01]);
    assert_eq!(answer[0].data, expected);
    let answer = raw.send(Protocol::LCP, &packet(1, 2, &windows_options(false)));
    assert_eq!((answer[0].code, answer[0].id), (2, 2));
    assert_eq!(&answer[0].data[..4], &[0x01, 0x04, 0x0F, 0xFB]);
}

/// Trap #10 (OGI adc7754a): authentication frames outside their moment are never
/// Protocol-Rejected. A retransmitted Response gets the same answer again (RFC 1994 §4.2), a
/// Response to an old Challenge and a PAP request during MS-CHAPv2 get nothing.
#[test]
fn in_phase_authentication_retransmits_are_never_protocol_rejected() {
    let pool = Pool::new(&POOL);
    let mut pair = Pair::new(
        new_server(server_config(), alice(), &pool),
        Client::new(client_config("alice", "correct horse"), rng(2)),
    );
    pair.start();
    pair.drive();
    let response = pair
        .wire
        .iter()
        .find(|(s, p)| !*s && p.protocol == Protocol::CHAP && p.code == 2)
        .map(|(_, p)| p.clone())
        .unwrap();
    let success = pair
        .wire
        .iter()
        .find(|(s, p)| *s && p.protocol == Protocol::CHAP && p.code == 3)
        .map(|(_, p)| p.clone())
        .unwrap();
    let mut answers = |protocol: Protocol, info: &[u8]| {
        pair.server.handle_frame(pair.now, protocol, info);
        std::iter::from_fn(|| pair.server.poll_transmit())
            .map(|f| parse_sent(&f))
            .collect::<Vec<_>>()
    };
    let again = answers(Protocol::CHAP, &packet(2, response.id, &response.data));
    assert_eq!(again, [success], "the same Success, nothing else");
    let stale = response.id.wrapping_sub(1);
    assert!(answers(Protocol::CHAP, &packet(2, stale, &response.data)).is_empty());
    assert!(
        answers(
            Protocol::PAP,
            &packet(1, 1, &[5, b'a', b'l', b'i', b'c', b'e', 0])
        )
        .is_empty()
    );
    assert!(
        pair.server_events
            .iter()
            .all(|e| !matches!(e, ServerEvent::Down { .. }))
    );
}
