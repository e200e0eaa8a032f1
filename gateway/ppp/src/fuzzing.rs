//! Bodies of the cargo-fuzz targets under `gateway/fuzz` (and of the corpus replay test).
//! Each must never panic, whatever the bytes.

use std::{convert::Infallible, net::Ipv4Addr, sync::Arc, time::Instant};

use rand_core::TryRng;

use crate::{
    AddressAllocator, AuthPolicy, Lookup, NtHash, Protocol, Server, ServerConfig, Timers,
    UserLookup, decode_frame, encode_frame,
    packet::{Code, encode_packet, parse_options},
};

/// Decodes `data` as a PPP frame, checks the re-encoded frame decodes the same, and feeds
/// control frames to a server whose LCP is negotiating.
pub fn ppp_frame(data: &[u8]) {
    let Ok(frame) = decode_frame(data) else {
        return;
    };
    let mut encoded = Vec::new();
    encode_frame(frame.protocol, frame.information, &mut encoded);
    assert_eq!(decode_frame(&encoded).ok(), Some(frame), "frame round trip");
    if frame.protocol.is_network_data() {
        return;
    }
    let now = Instant::now();
    let mut server = server();
    server.lower_up(now);
    server.handle_frame(now, frame.protocol, frame.information);
    drain(&mut server);
}

/// Parses `data` as an LCP option list and sends it to a server as the options of a peer's
/// LCP Configure-Request, then as IPCP options after a real login.
pub fn lcp_options(data: &[u8]) {
    let _ = parse_options(data);
    let mut request = Vec::new();
    encode_packet(Code::CONFIGURE_REQUEST, 1, data, &mut request);
    let now = Instant::now();
    let mut server = server();
    server.lower_up(now);
    server.handle_frame(now, Protocol::LCP, &request);
    drain(&mut server);
    server.handle_frame(now, Protocol::IPCP, &request);
    server.handle_frame(now, Protocol::IPV6CP, &request);
    drain(&mut server);
}

fn server() -> Server {
    let config = ServerConfig {
        auth: AuthPolicy {
            mschapv2: true,
            pap: true,
        },
        server_name: "fuzz".to_owned(),
        local_ipv4: Ipv4Addr::new(10, 0, 0, 1),
        dns: [Some(Ipv4Addr::new(10, 0, 0, 53)), None],
        mru: 1400,
        ipv6: true,
        timers: Timers::default(),
    };
    Server::new(
        Arc::new(config),
        Arc::new(OneUser),
        Box::new(OneAddress(true)),
        Box::new(XorShift(0x9E37_79B9_7F4A_7C15)),
    )
}

fn drain(server: &mut Server) {
    while server.poll_transmit().is_some() {}
    while server.poll_event().is_some() {}
}

struct OneUser;

impl UserLookup for OneUser {
    fn lookup(&self, username: &str) -> Lookup {
        match username {
            "user" => Lookup::Found(NtHash::from_password("password")),
            _ => Lookup::Unknown,
        }
    }
}

struct OneAddress(bool);

impl AddressAllocator for OneAddress {
    fn allocate(&mut self, _username: &str) -> Option<Ipv4Addr> {
        std::mem::take(&mut self.0).then_some(Ipv4Addr::new(10, 0, 0, 2))
    }

    fn release(&mut self, _addr: Ipv4Addr) {
        self.0 = true;
    }
}

/// A fixed-seed generator: fuzzing needs reproducibility, not secrecy.
struct XorShift(u64);

impl TryRng for XorShift {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Ok(self.0)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
