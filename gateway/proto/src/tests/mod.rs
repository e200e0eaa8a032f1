//! Scenario tests: the real `sstp-ppp` server and client behind our SSTP state machines,
//! joined by an in-memory [`pair::Pair`] with a virtual clock, plus a scripted raw peer
//! ([`raw::RawClient`]) for malformed input.

mod client_raw;
mod handshake;
mod ip_policy;
mod negative;
mod pair;
mod raw;
mod seed;
mod timers;
mod windows;

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sstp_ppp::{AddressAllocator, AuthPolicy, Lookup, NtHash, UserLookup};

use crate::{CertHashes, ClientConfig, ServerConfig};

pub(super) const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
pub(super) const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 10);
pub(super) const PASSWORD: &str = "correct horse";

/// Users by name and password.
pub(super) struct Users(HashMap<&'static str, &'static str>);

impl UserLookup for Users {
    fn lookup(&self, username: &str) -> Lookup {
        match self.0.get(username) {
            Some(password) => Lookup::Found(NtHash::from_password(password)),
            None => Lookup::Unknown,
        }
    }
}

/// A pool the test can inspect after the connection is gone.
#[derive(Clone, Default)]
pub(super) struct Pool(Arc<Mutex<Vec<Ipv4Addr>>>);

impl Pool {
    pub(super) fn in_use(&self) -> Vec<Ipv4Addr> {
        self.0.lock().unwrap().clone()
    }
}

impl AddressAllocator for Pool {
    fn allocate(&mut self, _username: &str) -> Result<Ipv4Addr, sstp_ppp::Refusal> {
        self.0.lock().unwrap().push(POOL_FIRST);
        Ok(POOL_FIRST)
    }

    fn release(&mut self, addr: Ipv4Addr) {
        self.0.lock().unwrap().retain(|a| *a != addr);
    }
}

pub(super) fn users() -> Arc<Users> {
    Arc::new(Users(HashMap::from([("alice", PASSWORD)])))
}

pub(super) fn server_config() -> ServerConfig {
    ServerConfig::new(Arc::new(sstp_ppp::ServerConfig {
        auth: AuthPolicy::default(),
        server_name: "sstp-gw".to_owned(),
        local_ipv4: SERVER_IP,
        dns: [Some(Ipv4Addr::new(10, 8, 0, 53)), None],
        mru: 1500,
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
    }))
}

pub(super) fn client_config(username: &str, password: &str) -> ClientConfig {
    let ppp = sstp_ppp::ClientConfig {
        username: username.to_owned(),
        password: password.to_owned(),
        auth: AuthPolicy::default(),
        request_dns: true,
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
        link: sstp_ppp::LinkProfile::Minimal,
    };
    let mut config = ClientConfig::new(ppp, "vpn.example.com");
    config.correlation_id = Some("{8C4F2B9A-0F3C-4E5B-9D6A-1B2C3D4E5F60}".to_owned());
    config
}

pub(super) fn cert() -> CertHashes {
    CertHashes::from_der(b"the server's leaf certificate, DER")
}

pub(super) fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

/// A minimal IPv4 packet (header only) from `src` to `dst`.
pub(super) fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
    let total = u16::try_from(20 + payload_len).unwrap();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.resize(20 + payload_len, 0x5a);
    p
}
