//! An in-memory client/server pair with a virtual clock. Bytes move between the two
//! connections whole, as TLS would deliver them; time only moves when both sides are idle, to
//! the earliest deadline either one asks for.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{Pool, cert, client_config, rng, server_config, users};
use crate::{
    ClientConfig, ClientConnection, ClientEvent, ControlMessage, Deframer, Packet, ServerConfig,
    ServerConnection, ServerEvent,
};

/// Rewrites one whole SSTP packet on its way from client to server.
pub(super) type Tamper = Box<dyn FnMut(&mut Vec<u8>)>;

pub(super) struct Pair {
    pub(super) server: ServerConnection,
    pub(super) client: ClientConnection,
    pub(super) pool: Pool,
    pub(super) start: Instant,
    pub(super) now: Instant,
    pub(super) server_events: Vec<ServerEvent>,
    pub(super) client_events: Vec<ClientEvent>,
    /// IP packets each side received.
    pub(super) server_ip: Vec<Vec<u8>>,
    pub(super) client_ip: Vec<Vec<u8>>,
    /// Control messages each side put on the wire, in order.
    pub(super) server_sent: Vec<ControlMessage>,
    pub(super) client_sent: Vec<ControlMessage>,
    /// When set, the client's bytes never reach the server (a dead peer).
    pub(super) client_muted: bool,
    pub(super) tamper: Option<Tamper>,
    c2s: Tap,
    s2c: Tap,
}

impl Pair {
    pub(super) fn new() -> Self {
        Self::with(client_config("alice", super::PASSWORD), server_config())
    }

    pub(super) fn with(client: ClientConfig, server: ServerConfig) -> Self {
        Self::with_cert(client, server, cert())
    }

    /// `client_cert` is what the client believes the server's certificate is.
    pub(super) fn with_cert(
        client: ClientConfig,
        server: ServerConfig,
        client_cert: crate::CertHashes,
    ) -> Self {
        let start = Instant::now();
        let pool = Pool::default();
        let server = ServerConnection::new(
            Arc::new(server),
            cert(),
            users(),
            Box::new(pool.clone()),
            rng(1),
            start,
        );
        let client = ClientConnection::new(client, client_cert, rng(2), start);
        Self {
            server,
            client,
            pool,
            start,
            now: start,
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_ip: Vec::new(),
            client_ip: Vec::new(),
            server_sent: Vec::new(),
            client_sent: Vec::new(),
            client_muted: false,
            tamper: None,
            c2s: Tap::default(),
            s2c: Tap::default(),
        }
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub(super) fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let mut bytes = Vec::new();
            self.client.poll_transmit(&mut bytes);
            if !bytes.is_empty() {
                moved = true;
                let bytes = self
                    .c2s
                    .pass(bytes, &mut self.client_sent, self.tamper.as_mut());
                if !self.client_muted {
                    self.server.handle_input(self.now, &bytes);
                }
            }
            let mut bytes = Vec::new();
            self.server.poll_transmit(&mut bytes);
            if !bytes.is_empty() {
                moved = true;
                let bytes = self.s2c.pass(bytes, &mut self.server_sent, None);
                self.client.handle_input(self.now, &bytes);
            }
            self.drain();
            if !moved {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    fn drain(&mut self) {
        while let Some(event) = self.server.poll_event() {
            self.server_events.push(event);
        }
        while let Some(event) = self.client.poll_event() {
            self.client_events.push(event);
        }
        while let Some(packet) = self.server.poll_ip() {
            self.server_ip.push(packet.to_vec());
        }
        while let Some(packet) = self.client.poll_ip() {
            self.client_ip.push(packet.to_vec());
        }
    }

    /// Advances the clock to the earliest deadline and fires it. False when neither side has
    /// a timer running.
    pub(super) fn step(&mut self) -> bool {
        self.pump();
        let next = [self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        self.server.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        self.pump();
        true
    }

    /// Fires every timer up to `duration` from now, then sets the clock there.
    pub(super) fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.pump();
        while [self.server.poll_timeout(), self.client.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .is_some_and(|t| t <= until)
        {
            self.step();
        }
        self.now = until;
        self.pump();
    }

    /// Runs until `done` holds, failing the test after ten virtual minutes.
    pub(super) fn run_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        self.pump();
        while !done(self) {
            assert!(
                self.elapsed() < Duration::from_secs(600) && self.step(),
                "never reached: {what}\nserver: {:?}\nclient: {:?}\nserver sent: {:?}",
                self.server_events,
                self.client_events,
                self.server_sent
            );
        }
    }

    /// Runs until both sides reported `Closed`.
    pub(super) fn run_until_closed(&mut self) {
        self.run_until("both sides closed", |p| {
            p.server.is_closed() && p.client.is_closed()
        });
    }

    /// Runs the whole way to a connected call with IPv4 up on both sides.
    pub(super) fn connect(&mut self) {
        self.run_until("call connected with IPv4 up", |p| {
            p.server_events
                .iter()
                .any(|e| matches!(e, ServerEvent::Ipv4Up { .. }))
                && p.server_events
                    .iter()
                    .any(|e| matches!(e, ServerEvent::Connected { .. }))
                && p.client_events
                    .iter()
                    .any(|e| matches!(e, ClientEvent::Ipv4Up { .. }))
        });
    }

    pub(super) fn server_closed_reason(&self) -> Option<&crate::CloseReason> {
        self.server_events.iter().find_map(|e| match e {
            ServerEvent::Closed { reason } => Some(reason),
            _ => None,
        })
    }

    pub(super) fn client_closed_reason(&self) -> Option<&crate::CloseReason> {
        self.client_events.iter().find_map(|e| match e {
            ClientEvent::Closed { reason } => Some(reason),
            _ => None,
        })
    }
}

/// Watches one direction: skips the HTTP head, records control messages, applies tampering.
#[derive(Default)]
struct Tap {
    past_http: bool,
    deframer: Deframer,
}

impl Tap {
    fn pass(
        &mut self,
        bytes: Vec<u8>,
        sent: &mut Vec<ControlMessage>,
        mut tamper: Option<&mut Tamper>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        if !self.past_http {
            let end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("HTTP head first")
                + 4;
            out.extend_from_slice(&bytes[..end]);
            rest = &bytes[end..];
            self.past_http = true;
        }
        // Connections always hand out whole packets, so nothing stays in the deframer.
        let mut packets = Vec::new();
        self.deframer
            .feed(rest, |f| packets.push(f.bytes.to_vec()))
            .expect("valid framing");
        for mut packet in packets {
            if let Ok(Packet::Control(message)) = Packet::decode(&packet) {
                sent.push(message);
            }
            if let Some(tamper) = tamper.as_mut() {
                tamper(&mut packet);
            }
            out.extend_from_slice(&packet);
        }
        out
    }
}
