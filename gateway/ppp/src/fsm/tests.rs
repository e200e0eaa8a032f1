use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::{
    decode_frame,
    packet::{ConfigOption, encode_packet},
};

/// Acks everything unless told to Nak, and records what the automaton asked of it.
#[derive(Debug, Default)]
struct TestPolicy {
    nak_everything: bool,
    reject_if_disagree_seen: Vec<bool>,
}

impl OptionPolicy for TestPolicy {
    fn reset(&mut self, _rng: &mut dyn Rng) {}

    fn request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x01, 0x04, 0x05, 0xDC]);
    }

    fn check_request(
        &mut self,
        _options: &[ConfigOption<'_>],
        reject_if_disagree: bool,
        _rng: &mut dyn Rng,
    ) -> Verdict {
        self.reject_if_disagree_seen.push(reject_if_disagree);
        match (self.nak_everything, reject_if_disagree) {
            (false, _) => Verdict::Ack,
            (true, false) => Verdict::Nak(vec![0x01, 0x04, 0x05, 0xDC]),
            (true, true) => Verdict::Reject(vec![0x01, 0x04, 0x05, 0xDC]),
        }
    }

    fn nakked(
        &mut self,
        _options: &[ConfigOption<'_>],
        _rng: &mut dyn Rng,
    ) -> Result<(), NotConverging> {
        Ok(())
    }

    fn rejected(&mut self, _options: &[ConfigOption<'_>]) -> Result<(), NotConverging> {
        Ok(())
    }
}

struct Harness {
    fsm: Fsm<TestPolicy>,
    out: Outbox,
    rng: ChaCha20Rng,
    now: Instant,
}

impl Harness {
    fn new() -> Self {
        Self {
            fsm: Fsm::new(Protocol::IPCP, Timers::default(), TestPolicy::default()),
            out: Outbox::default(),
            rng: ChaCha20Rng::seed_from_u64(3),
            now: Instant::now(),
        }
    }

    fn timeout(&mut self) -> Option<LayerEvent> {
        let mut cx = Ctx {
            now: self.now,
            out: &mut self.out,
            rng: &mut self.rng,
        };
        self.fsm.handle_timeout(&mut cx)
    }

    fn close(&mut self) -> Option<LayerEvent> {
        let mut cx = Ctx {
            now: self.now,
            out: &mut self.out,
            rng: &mut self.rng,
        };
        self.fsm.close(&mut cx)
    }

    /// Sends the automaton a packet and returns its layer event.
    fn receive(&mut self, code: Code, id: u8, data: &[u8]) -> Option<LayerEvent> {
        let mut raw = Vec::new();
        encode_packet(code, id, data, &mut raw);
        let mut cx = Ctx {
            now: self.now,
            out: &mut self.out,
            rng: &mut self.rng,
        };
        self.fsm.handle_packet_raw(&mut cx, &raw)
    }

    /// Codes and identifiers of everything sent since the last call.
    fn sent(&mut self) -> Vec<(u8, u8)> {
        std::iter::from_fn(|| self.out.pop())
            .map(|frame| {
                let info = decode_frame(&frame).unwrap().information.to_vec();
                let packet = Packet::parse(&info).unwrap();
                (packet.code.0, packet.id)
            })
            .collect()
    }

    fn start(&mut self) -> u8 {
        let mut cx = Ctx {
            now: self.now,
            out: &mut self.out,
            rng: &mut self.rng,
        };
        assert_eq!(self.fsm.open(&mut cx), Some(LayerEvent::Started));
        assert_eq!(self.fsm.up(&mut cx), None);
        let sent = self.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 1);
        sent[0].1
    }

    fn opened(&mut self) {
        let id = self.start();
        assert_eq!(
            self.receive(Code::CONFIGURE_ACK, id, &[1, 4, 5, 0xDC]),
            None
        );
        assert_eq!(self.fsm.state(), State::AckRcvd);
        assert_eq!(
            self.receive(Code::CONFIGURE_REQUEST, 9, &[]),
            Some(LayerEvent::Up)
        );
        assert_eq!(self.sent(), [(2, 9)]);
        assert!(self.fsm.is_opened());
        assert_eq!(self.fsm.poll_timeout(), None);
    }
}

#[test]
fn our_ack_then_their_request_opens_the_layer() {
    Harness::new().opened();
}

#[test]
fn their_request_then_our_ack_opens_the_layer_from_ack_sent() {
    let mut h = Harness::new();
    let id = h.start();
    assert_eq!(h.receive(Code::CONFIGURE_REQUEST, 4, &[]), None);
    assert_eq!(h.fsm.state(), State::AckSent);
    assert_eq!(
        h.receive(Code::CONFIGURE_ACK, id, &[1, 4, 5, 0xDC]),
        Some(LayerEvent::Up)
    );
}

#[test]
fn packets_before_the_lower_layer_is_up_are_ignored() {
    let mut h = Harness::new();
    assert_eq!(h.receive(Code::CONFIGURE_REQUEST, 4, &[]), None);
    assert!(h.sent().is_empty());
    assert_eq!(h.fsm.state(), State::Initial);
}

#[test]
fn peer_terminate_in_opened_acks_and_finishes_after_one_restart_period() {
    let mut h = Harness::new();
    h.opened();
    assert_eq!(
        h.receive(Code::TERMINATE_REQUEST, 7, &[]),
        Some(LayerEvent::Down)
    );
    assert_eq!(h.sent(), [(6, 7)]);
    assert_eq!(h.fsm.state(), State::Stopping);
    let deadline = h.fsm.poll_timeout().unwrap();
    assert_eq!(deadline - h.now, Duration::from_secs(3));
    h.now = deadline;
    assert_eq!(h.timeout(), Some(LayerEvent::Finished));
    assert_eq!(h.fsm.failure(), Some(Failure::PeerTerminated));
    assert_eq!(h.fsm.state(), State::Stopped);
}

#[test]
fn close_sends_max_terminate_requests_then_finishes() {
    let mut h = Harness::new();
    h.opened();
    assert_eq!(h.close(), Some(LayerEvent::Down));
    let mut terminates = h.sent().len();
    loop {
        h.now = h.fsm.poll_timeout().unwrap();
        let event = h.timeout();
        terminates += h.sent().len();
        if event == Some(LayerEvent::Finished) {
            break;
        }
    }
    assert_eq!(terminates, 2);
    assert_eq!(h.fsm.state(), State::Closed);
    assert_eq!(h.fsm.failure(), None, "a local close is not a failure");
}

#[test]
fn terminate_ack_while_closing_finishes_at_once() {
    let mut h = Harness::new();
    h.opened();
    let _ = h.close();
    let [(5, id)] = h.sent()[..] else {
        panic!("expected one Terminate-Request");
    };
    assert_eq!(
        h.receive(Code::TERMINATE_ACK, id, &[]),
        Some(LayerEvent::Finished)
    );
    assert_eq!(h.fsm.poll_timeout(), None);
}

#[test]
fn code_reject_of_a_configure_code_is_fatal_and_of_others_is_not() {
    let mut h = Harness::new();
    h.opened();
    assert_eq!(h.receive(Code::CODE_REJECT, 1, &[42, 1, 0, 4]), None);
    assert!(h.fsm.is_opened());
    assert_eq!(
        h.receive(Code::CODE_REJECT, 2, &[1, 1, 0, 4]),
        Some(LayerEvent::Down)
    );
    assert_eq!(h.fsm.failure(), Some(Failure::Rejected));
    assert_eq!(h.fsm.state(), State::Stopping);
}

#[test]
fn unknown_codes_are_code_rejected() {
    let mut h = Harness::new();
    h.opened();
    assert_eq!(h.receive(Code(9), 5, &[1, 2]), None);
    assert_eq!(h.sent()[0].0, 7);
}

#[test]
fn after_max_failure_naks_the_policy_is_told_to_reject() {
    let mut h = Harness::new();
    h.fsm.policy.nak_everything = true;
    let _ = h.start();
    for id in 0..7 {
        let _ = h.receive(Code::CONFIGURE_REQUEST, id, &[]);
    }
    assert_eq!(
        h.fsm.policy.reject_if_disagree_seen,
        [false, false, false, false, false, true, true]
    );
}

#[test]
fn configure_request_on_an_open_link_restarts_negotiation() {
    let mut h = Harness::new();
    h.opened();
    assert_eq!(
        h.receive(Code::CONFIGURE_REQUEST, 3, &[]),
        Some(LayerEvent::Down)
    );
    let sent: Vec<u8> = h.sent().iter().map(|(code, _)| *code).collect();
    assert_eq!(sent, [1, 2], "scr then sca");
    assert_eq!(h.fsm.state(), State::AckSent);
}

#[test]
fn lower_layer_down_in_opened_reports_this_layer_down() {
    let mut h = Harness::new();
    h.opened();
    assert_eq!(h.fsm.down(), Some(LayerEvent::Down));
    assert_eq!(h.fsm.state(), State::Starting);
}
