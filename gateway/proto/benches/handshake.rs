//! One whole in-memory handshake: HTTP, SSTP connect, LCP, MS-CHAPv2, crypto binding, IPCP.

use std::{net::Ipv4Addr, sync::Arc, time::Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sstp_ppp::{AddressAllocator, AuthPolicy, Lookup, NtHash, UserLookup};
use sstp_proto::{
    CertHashes, ClientConfig, ClientConnection, ClientEvent, ServerConfig, ServerConnection,
};

struct OneUser(NtHash);

impl UserLookup for OneUser {
    fn lookup(&self, _username: &str) -> Lookup {
        Lookup::Found(self.0.clone())
    }
}

struct OneAddress;

impl AddressAllocator for OneAddress {
    fn allocate(&mut self, _username: &str) -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(10, 8, 0, 10))
    }

    fn release(&mut self, _addr: Ipv4Addr) {}
}

fn handshake(c: &mut Criterion) {
    let server_config = Arc::new(ServerConfig::new(Arc::new(sstp_ppp::ServerConfig {
        auth: AuthPolicy::default(),
        server_name: "bench".to_owned(),
        local_ipv4: Ipv4Addr::new(10, 8, 0, 1),
        dns: [Some(Ipv4Addr::new(10, 8, 0, 53)), None],
        mru: 1500,
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
    })));
    let client_config = ClientConfig::new(
        sstp_ppp::ClientConfig {
            username: "alice".to_owned(),
            password: "correct horse".to_owned(),
            auth: AuthPolicy::default(),
            request_dns: true,
            ipv6: false,
            timers: sstp_ppp::Timers::default(),
        },
        "vpn.example.com",
    );
    let users: Arc<dyn UserLookup> = Arc::new(OneUser(NtHash::from_password("correct horse")));
    let cert = CertHashes::from_der(b"bench certificate");
    c.bench_function("handshake_to_ipv4_up", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut server = ServerConnection::new(
                server_config.clone(),
                cert.clone(),
                users.clone(),
                Box::new(OneAddress),
                Box::new(ChaCha20Rng::seed_from_u64(1)),
                now,
            );
            let mut client = ClientConnection::new(
                client_config.clone(),
                cert.clone(),
                Box::new(ChaCha20Rng::seed_from_u64(2)),
                now,
            );
            let mut buf = Vec::with_capacity(4096);
            loop {
                buf.clear();
                client.poll_transmit(&mut buf);
                let client_sent = !buf.is_empty();
                server.handle_input(now, &buf);
                buf.clear();
                server.poll_transmit(&mut buf);
                let server_sent = !buf.is_empty();
                client.handle_input(now, &buf);
                while server.poll_event().is_some() {}
                let mut up = false;
                while let Some(event) = client.poll_event() {
                    up |= matches!(event, ClientEvent::Ipv4Up { .. });
                }
                assert!(client_sent || server_sent || up, "handshake stalled");
                if up {
                    break;
                }
            }
        });
    });
}

criterion_group!(benches, handshake);
criterion_main!(benches);
