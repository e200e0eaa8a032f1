//! Scenario tests: an in-memory client/server pair and a scripted raw peer, both driven by a
//! virtual clock.

mod lcp;
mod pair;
mod robustness;
mod timers;
mod windows;

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::Instant,
};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::{
    AddressAllocator, AuthPolicy, Client, ClientConfig, ClientEvent, Lookup, NtHash, Protocol,
    Server, ServerConfig, ServerEvent, Timers, UserLookup, decode_frame,
    packet::{Code, Packet, encode_packet},
};

pub(super) const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
pub(super) const DNS1: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 53);
pub(super) const DNS2: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);
pub(super) const POOL: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 8, 0, 10), Ipv4Addr::new(10, 8, 0, 11)];

/// What a test user is.
#[derive(Clone)]
pub(super) enum Account {
    Active(&'static str),
    Disabled,
    Expired,
    Throttled,
}

#[derive(Default)]
pub(super) struct Users(HashMap<&'static str, Account>);

impl Users {
    pub(super) fn with(mut self, name: &'static str, account: Account) -> Self {
        self.0.insert(name, account);
        self
    }
}

impl UserLookup for Users {
    fn lookup(&self, username: &str) -> Lookup {
        match self.0.get(username) {
            Some(Account::Active(password)) => Lookup::Found(NtHash::from_password(password)),
            Some(Account::Disabled) => Lookup::Disabled,
            Some(Account::Expired) => Lookup::Expired,
            Some(Account::Throttled) => Lookup::Throttled,
            None => Lookup::Unknown,
        }
    }
}

/// A pool whose state the test can inspect after the server is gone.
#[derive(Clone, Default)]
pub(super) struct Pool(Arc<Mutex<PoolState>>);

#[derive(Default)]
pub(super) struct PoolState {
    pub(super) free: Vec<Ipv4Addr>,
    pub(super) in_use: Vec<Ipv4Addr>,
    pub(super) allocations: usize,
}

impl Pool {
    pub(super) fn new(addresses: &[Ipv4Addr]) -> Self {
        let pool = Self::default();
        pool.0.lock().unwrap().free = addresses.iter().rev().copied().collect();
        pool
    }

    pub(super) fn in_use(&self) -> Vec<Ipv4Addr> {
        self.0.lock().unwrap().in_use.clone()
    }

    pub(super) fn allocations(&self) -> usize {
        self.0.lock().unwrap().allocations
    }
}

impl AddressAllocator for Pool {
    fn allocate(&mut self, _username: &str) -> Result<Ipv4Addr, crate::Refusal> {
        let mut state = self.0.lock().unwrap();
        let addr = state.free.pop().ok_or(crate::Refusal::AddressExhausted)?;
        state.in_use.push(addr);
        state.allocations += 1;
        Ok(addr)
    }

    fn release(&mut self, addr: Ipv4Addr) {
        let mut state = self.0.lock().unwrap();
        let index = state.in_use.iter().position(|a| *a == addr);
        let index = index.expect("released an address that was not in use");
        state.in_use.remove(index);
        state.free.push(addr);
    }
}

pub(super) fn server_config() -> ServerConfig {
    ServerConfig {
        auth: AuthPolicy::default(),
        server_name: "sstp-gw".to_owned(),
        local_ipv4: SERVER_IP,
        dns: [Some(DNS1), Some(DNS2)],
        mru: 1500,
        ipv6: false,
        timers: Timers::default(),
    }
}

pub(super) fn client_config(username: &str, password: &str) -> ClientConfig {
    ClientConfig {
        username: username.to_owned(),
        password: password.to_owned(),
        auth: AuthPolicy::default(),
        request_dns: true,
        ipv6: false,
        timers: Timers::default(),
        link: crate::LinkProfile::Minimal,
    }
}

pub(super) fn alice() -> Users {
    Users::default().with("alice", Account::Active("correct horse"))
}

pub(super) fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

pub(super) fn new_server(config: ServerConfig, users: Users, pool: &Pool) -> Server {
    Server::new(
        Arc::new(config),
        Arc::new(users),
        Box::new(pool.clone()),
        rng(1),
    )
}

/// A decoded control packet as seen on the wire, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) protocol: Protocol,
    pub(super) code: u8,
    pub(super) id: u8,
    pub(super) data: Vec<u8>,
}

pub(super) fn parse_sent(frame: &[u8]) -> Sent {
    let decoded = decode_frame(frame).unwrap();
    assert_eq!(
        &frame[..2],
        &[0xFF, 0x03],
        "we always send the uncompressed header"
    );
    let packet = Packet::parse(decoded.information).unwrap();
    Sent {
        protocol: decoded.protocol,
        code: packet.code.0,
        id: packet.id,
        data: packet.data.to_vec(),
    }
}

/// The information field of a control packet.
pub(super) fn packet(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packet(Code(code), id, data, &mut out);
    out
}

/// A client and a server wired back to back over a virtual clock.
pub(super) struct Pair {
    pub(super) server: Server,
    pub(super) client: Client,
    pub(super) now: Instant,
    pub(super) server_events: Vec<ServerEvent>,
    pub(super) client_events: Vec<ClientEvent>,
    /// Every control packet, in order, tagged with whether the server sent it.
    pub(super) wire: Vec<(bool, Sent)>,
}

impl Pair {
    pub(super) fn new(server: Server, client: Client) -> Self {
        Self {
            server,
            client,
            now: Instant::now(),
            server_events: Vec::new(),
            client_events: Vec::new(),
            wire: Vec::new(),
        }
    }

    pub(super) fn start(&mut self) {
        self.server.lower_up(self.now);
        self.client.lower_up(self.now);
    }

    /// Delivers frames both ways until neither side has anything to send.
    pub(super) fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(frame) = self.server.poll_transmit() {
                moved = true;
                let decoded = decode_frame(&frame).unwrap();
                self.wire.push((true, parse_sent(&frame)));
                self.client
                    .handle_frame(self.now, decoded.protocol, decoded.information);
            }
            while let Some(frame) = self.client.poll_transmit() {
                moved = true;
                let decoded = decode_frame(&frame).unwrap();
                self.wire.push((false, parse_sent(&frame)));
                self.server
                    .handle_frame(self.now, decoded.protocol, decoded.information);
            }
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
            if !moved {
                return;
            }
        }
        panic!("the peers never went quiet");
    }

    /// Drives, then advances the clock to each deadline in turn until nothing is pending.
    pub(super) fn run(&mut self) {
        self.drive();
        for _ in 0..1_000 {
            let next = [self.server.poll_timeout(), self.client.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { return };
            self.now = self.now.max(next);
            self.server.handle_timeout(self.now);
            self.client.handle_timeout(self.now);
            self.drive();
        }
        panic!("timers never stopped");
    }
}
