//! The client against a scripted raw server: refused HTTP, NAKs, unusable offers, silence.

use std::time::{Duration, Instant};

use super::{cert, client_config, rng};
use crate::{
    AttributeId, ClientConnection, ClientEvent, CloseReason, ControlMessage, CryptoBindingRequest,
    Deframer, HashProtocolSet, Packet, Status, StatusInfo, http,
};

struct RawServer {
    client: ClientConnection,
    start: Instant,
    now: Instant,
    events: Vec<ClientEvent>,
    wire: Vec<u8>,
}

impl RawServer {
    fn new() -> Self {
        let start = Instant::now();
        let client = ClientConnection::new(
            client_config("alice", super::PASSWORD),
            cert(),
            rng(3),
            start,
        );
        let mut raw = Self {
            client,
            start,
            now: start,
            events: Vec::new(),
            wire: Vec::new(),
        };
        raw.collect();
        raw
    }

    fn after_http() -> Self {
        let mut raw = Self::new();
        let mut ok = Vec::new();
        http::write_ok_response(&mut ok);
        raw.send(&ok);
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.client.handle_input(self.now, bytes);
        self.collect();
    }

    fn send_control(&mut self, message: &ControlMessage) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.send(&bytes);
    }

    fn collect(&mut self) {
        self.client.poll_transmit(&mut self.wire);
        while let Some(event) = self.client.poll_event() {
            self.events.push(event);
        }
    }

    fn run_until_closed(&mut self) {
        while !self.client.is_closed() {
            let next = self
                .client
                .poll_timeout()
                .expect("a timer while not closed");
            self.now = next;
            self.client.handle_timeout(next);
            self.collect();
        }
    }

    fn control_written(&self) -> Vec<ControlMessage> {
        let end = self
            .wire
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        let mut messages = Vec::new();
        Deframer::new()
            .feed(&self.wire[end..], |f| {
                if let Ok(Packet::Control(m)) = Packet::decode(f.bytes) {
                    messages.push(m);
                }
            })
            .expect("the client frames correctly");
        messages
    }

    fn closed_reason(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|e| match e {
            ClientEvent::Closed { reason } => Some(reason),
            _ => None,
        })
    }
}

#[test]
fn the_client_opens_with_the_sstp_http_request() {
    let raw = RawServer::new();
    let request = String::from_utf8(raw.wire.clone()).unwrap();
    assert!(
        request.starts_with(
            "SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n"
        )
    );
    assert!(request.contains("\r\nSSTPCORRELATIONID: {8C4F2B9A-0F3C-4E5B-9D6A-1B2C3D4E5F60}\r\n"));
}

#[test]
fn an_http_error_from_the_server_closes_the_client() {
    let mut raw = RawServer::new();
    let mut response = Vec::new();
    http::Rejection::NotFound.write_response(&mut response);
    raw.send(&response);
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::HttpResponse(http::ResponseError::Status(404)))
    );
}

#[test]
fn the_client_retries_after_naks_and_gives_up_after_three() {
    let mut raw = RawServer::after_http();
    let nak = ControlMessage::CallConnectNak(vec![StatusInfo::new(
        AttributeId::ENCAPSULATED_PROTOCOL_ID,
        Status::VALUE_NOT_SUPPORTED,
    )]);
    for _ in 0..4 {
        raw.send_control(&nak);
    }
    let written = raw.control_written();
    let requests = written
        .iter()
        .filter(|m| matches!(m, ControlMessage::CallConnectRequest(_)))
        .count();
    assert_eq!(requests, 4, "the first request and three retries");
    assert_eq!(
        written.last(),
        Some(&ControlMessage::CallAbort(Some(StatusInfo::new(
            AttributeId::STATUS_INFO,
            Status::RETRY_COUNT_EXCEEDED
        ))))
    );
    raw.run_until_closed();
    assert_eq!(raw.closed_reason(), Some(&CloseReason::RetryCountExceeded));
}

#[test]
fn an_ack_without_a_usable_hash_protocol_is_aborted() {
    let mut raw = RawServer::after_http();
    raw.send_control(&ControlMessage::CallConnectAck(CryptoBindingRequest {
        hash_protocols: HashProtocolSet(0x04),
        nonce: [9; 32],
    }));
    assert_eq!(
        raw.control_written().last(),
        Some(&ControlMessage::CallAbort(Some(StatusInfo::new(
            AttributeId::CRYPTO_BINDING_REQ,
            Status::VALUE_NOT_SUPPORTED
        ))))
    );
    raw.run_until_closed();
    assert_eq!(
        raw.closed_reason(),
        Some(&CloseReason::NoCommonHashProtocol)
    );
}

#[test]
fn a_silent_server_times_the_client_out_after_60_seconds() {
    let mut raw = RawServer::after_http();
    raw.run_until_closed();
    assert_eq!(raw.closed_reason(), Some(&CloseReason::NegotiationTimeout));
    // 60 s of negotiation, then TIMER_VAL_ABORT_STATE_TIMER_1 waiting for an answer.
    assert_eq!(raw.now - raw.start, Duration::from_secs(63));
    assert_eq!(
        raw.control_written().last(),
        Some(&ControlMessage::CallAbort(Some(StatusInfo::new(
            AttributeId::NO_ERROR,
            Status::NEGOTIATION_TIMEOUT
        ))))
    );
}
