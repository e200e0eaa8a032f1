//! One whole in-memory handshake (HTTP, SSTP connect, LCP, MS-CHAPv2, crypto binding, IPCP),
//! and the per-packet cost of the connected data path through a `ServerConnection`.

use std::{net::Ipv4Addr, sync::Arc, time::Instant};

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
    fn allocate(&mut self, _username: &str) -> Result<Ipv4Addr, sstp_ppp::Refusal> {
        Ok(Ipv4Addr::new(10, 8, 0, 10))
    }

    fn release(&mut self, _addr: Ipv4Addr) {}
}

struct Setup {
    server_config: Arc<ServerConfig>,
    client_config: ClientConfig,
    users: Arc<dyn UserLookup>,
    cert: CertHashes,
}

fn setup() -> Setup {
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
            link: sstp_ppp::LinkProfile::Minimal,
        },
        "vpn.example.com",
    );
    let users: Arc<dyn UserLookup> = Arc::new(OneUser(NtHash::from_password("correct horse")));
    let cert = CertHashes::from_der(b"bench certificate");
    Setup {
        server_config,
        client_config,
        users,
        cert,
    }
}

/// Runs a fresh pair until the client has IPv4 up.
fn connect(s: &Setup, now: Instant) -> (ServerConnection, ClientConnection) {
    let mut server = ServerConnection::new(
        s.server_config.clone(),
        s.cert.clone(),
        s.users.clone(),
        Box::new(OneAddress),
        Box::new(ChaCha20Rng::seed_from_u64(1)),
        now,
    );
    let mut client = ClientConnection::new(
        s.client_config.clone(),
        s.cert.clone(),
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
            return (server, client);
        }
    }
}

fn handshake(c: &mut Criterion) {
    let s = setup();
    c.bench_function("handshake_to_ipv4_up", |b| {
        b.iter(|| connect(&s, Instant::now()))
    });
}

/// The server's receive path for one 1400-byte IP packet: deframe, decode PPP, queue, the
/// packet policy, poll_ip.
fn server_rx(c: &mut Criterion) {
    let s = setup();
    let now = Instant::now();
    let (mut server, mut client) = connect(&s, now);
    // From the client's own address, or the server's packet policy drops it (ip_policy.rs).
    let mut packet = vec![0x45; 1396];
    let peer = server.peer_ipv4().expect("IPv4 is up");
    packet[12..16].copy_from_slice(&peer.octets());
    client.send_ip(&packet).expect("connected");
    let mut wire = Vec::new();
    client.poll_transmit(&mut wire);
    let mut group = c.benchmark_group("server_rx_1400");
    group.throughput(Throughput::Bytes(1400));
    group.bench_function("handle_input_and_poll_ip", |b| {
        b.iter(|| {
            server.handle_input(now, black_box(&wire));
            let mut bytes = 0;
            while let Some(ip) = server.poll_ip() {
                bytes += ip.len();
            }
            black_box(bytes)
        });
    });
    let mut out = Vec::with_capacity(4096);
    group.bench_function("send_ip_and_poll_transmit", |b| {
        b.iter(|| {
            server.send_ip(black_box(&packet)).expect("connected");
            out.clear();
            server.poll_transmit(&mut out);
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, handshake, server_rx);
criterion_main!(benches);
