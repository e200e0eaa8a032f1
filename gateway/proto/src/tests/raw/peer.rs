//! The scripted raw peer: bytes in, the server's events and every byte it wrote out, on a
//! virtual clock.

use std::{sync::Arc, time::Instant};

use super::super::{Pool, cert, rng, server_config, users};
use crate::{
    AttributeId, CloseReason, ControlMessage, Deframer, MessageType, Packet, ServerConnection,
    ServerEvent, Status, StatusInfo, http,
};

pub(super) struct RawClient {
    pub(super) server: ServerConnection,
    pub(super) start: Instant,
    pub(super) now: Instant,
    pub(super) events: Vec<ServerEvent>,
    /// Everything the server wrote.
    pub(super) wire: Vec<u8>,
}

pub(super) const CONNECT_REQUEST: [u8; 14] = [0x10, 0x01, 0x00, 0x0e, 0, 1, 0, 1, 0, 1, 0, 6, 0, 1];

impl RawClient {
    pub(super) fn new() -> Self {
        let start = Instant::now();
        let server = ServerConnection::new(
            Arc::new(server_config()),
            cert(),
            users(),
            Box::new(Pool::default()),
            rng(7),
            start,
        );
        Self {
            server,
            start,
            now: start,
            events: Vec::new(),
            wire: Vec::new(),
        }
    }

    /// A server past the HTTP preamble.
    pub(super) fn after_http() -> Self {
        let mut raw = Self::new();
        let mut request = Vec::new();
        http::write_request(&mut request, "vpn.example.com", None);
        raw.send(&request);
        raw
    }

    /// A server that acknowledged CALL_CONNECT_REQUEST (and started LCP).
    pub(super) fn after_connect_request() -> Self {
        let mut raw = Self::after_http();
        raw.send(&CONNECT_REQUEST);
        raw
    }

    pub(super) fn send(&mut self, bytes: &[u8]) {
        self.server.handle_input(self.now, bytes);
        self.collect();
    }

    pub(super) fn collect(&mut self) {
        self.server.poll_transmit(&mut self.wire);
        while let Some(event) = self.server.poll_event() {
            self.events.push(event);
        }
    }

    /// Advances to the next deadline.
    pub(super) fn step(&mut self) -> bool {
        let Some(next) = self.server.poll_timeout() else {
            return false;
        };
        self.now = next;
        self.server.handle_timeout(next);
        self.collect();
        true
    }

    pub(super) fn run_until_closed(&mut self) {
        while !self.server.is_closed() {
            assert!(self.step(), "no timer left but not closed");
        }
    }

    /// The HTTP head the server wrote, and the control messages after it.
    pub(super) fn written(&self) -> (String, Vec<ControlMessage>) {
        let end = self
            .wire
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        let head = String::from_utf8_lossy(&self.wire[..end]).into_owned();
        let mut messages = Vec::new();
        Deframer::new()
            .feed(&self.wire[end..], |f| {
                if let Ok(Packet::Control(m)) = Packet::decode(f.bytes) {
                    messages.push(m);
                }
            })
            .expect("the server frames correctly");
        (head, messages)
    }

    pub(super) fn control_written(&self) -> Vec<ControlMessage> {
        self.written().1
    }

    pub(super) fn closed_reason(&self) -> Option<&CloseReason> {
        let closed: Vec<_> = self
            .events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Closed { reason } => Some(reason),
                _ => None,
            })
            .collect();
        assert!(
            closed.len() <= 1,
            "Closed reported more than once: {closed:?}"
        );
        closed.first().copied()
    }
}

pub(super) fn control(message_type: MessageType, attributes: &[u8], count: u16) -> Vec<u8> {
    let len = u16::try_from(8 + attributes.len()).unwrap();
    let mut p = vec![0x10, 0x01];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&message_type.0.to_be_bytes());
    p.extend_from_slice(&count.to_be_bytes());
    p.extend_from_slice(attributes);
    p
}

pub(super) fn status(attribute: AttributeId, status: Status) -> StatusInfo {
    StatusInfo::new(attribute, status)
}

pub(super) fn abort(attribute: AttributeId, s: Status) -> ControlMessage {
    ControlMessage::CallAbort(Some(status(attribute, s)))
}

pub(super) fn is_connect_ack(m: &ControlMessage) -> bool {
    matches!(m, ControlMessage::CallConnectAck(_))
}
