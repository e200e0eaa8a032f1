//! Shared harness of the gateway's integration tests: a fresh network namespace per test, an
//! in-process gateway on loopback with a real TUN device, the project's own client, ICMP echo
//! through the tunnel, and a `/metrics` scraper.
//!
//! Traffic check: each client sends ICMP echo requests from its tunnel address to the gateway's
//! own tunnel address. They leave the session into the TUN device, the kernel of the test's
//! namespace answers them, and the replies come back through the TUN reader, the router and the
//! session. A reply with the right identifier, sequence and payload proves the whole data path
//! both ways for that session, with the kernel as an independent responder.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use sstp_api::{
    GatewayConfig, UserEntry, UsersDocument,
    gateway_config::{TlsConfig, UsersSource},
    users::NtHashHex,
};
use sstp_gateway::{
    client::{Client, ClientOptions, tls_config_with_ca},
    server::{self, RunningGateway},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// Each test binary includes this module and uses some of these.
#[allow(unused_imports)]
pub use sstp_e2e::{
    reaper::Reaper,
    thread_netns::{in_new_netns, run},
};

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sstp-gw-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tokio runtime built on the (namespaced) calling thread; its workers inherit the namespace.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The users every test gets: (name, password).
pub const USERS: [(&str, &str); 3] = [
    ("alice", "alice-password-1"),
    ("bob", "bob-password-2"),
    ("load", "load-password-3"),
];

/// A users document with `users`, optionally some disabled.
pub fn users_document(users: &[(&str, &str)]) -> UsersDocument {
    let mut doc = UsersDocument::new();
    for (name, password) in users {
        let hash = NtHashHex::from_bytes(sstp_ppp::NtHash::from_password(password).0);
        doc.users.insert((*name).to_owned(), UserEntry::new(hash));
    }
    doc
}

/// Replaces a file atomically (temp + rename), as editors and the CLI do.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A started in-process gateway.
#[derive(Debug)]
pub struct Harness {
    pub dir: TestDir,
    pub gateway: RunningGateway,
    pub ca_pem: Vec<u8>,
    pub users_file: PathBuf,
}

/// The test configuration: loopback, ephemeral ports, standalone PKI in the test dir, short
/// deadlines, limits high enough for one source address to open hundreds of sessions.
pub fn test_config(dir: &Path) -> GatewayConfig {
    let mut config =
        GatewayConfig::from_json(r#"{"hostnames": ["localhost"], "addressPool": "10.77.0.0/24"}"#)
            .unwrap();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.sstp = any;
    config.listen.http = any;
    config.listen.admin = any;
    config.tls = TlsConfig::SelfManaged {
        data_dir: dir.join("pki"),
    };
    config.nat = false;
    config.users = UsersSource::File {
        path: dir.join("users.json"),
    };
    let limits = &mut config.limits;
    limits.handshake_timeout_seconds = 2;
    limits.preamble_timeout_seconds = 2;
    limits.negotiation_timeout_seconds = 3;
    limits.max_connections_per_source = 1000;
    limits.max_sessions_per_user = 1000;
    limits.auth_failures.max_failures = 10;
    limits.auth_failures.window_seconds = 60;
    limits.auth_failures.block_seconds = 60;
    config
}

/// Starts a gateway with [`test_config`] (changed by `tweak`) and [`USERS`], and waits until the
/// users are loaded.
pub async fn start(test: &str, tweak: impl FnOnce(&mut GatewayConfig)) -> Harness {
    let dir = TestDir::new(test);
    let users_file = dir.0.join("users.json");
    std::fs::write(&users_file, users_document(&USERS).to_json_pretty()).unwrap();
    let mut config = test_config(&dir.0);
    tweak(&mut config);
    let ca_path = match &config.tls {
        TlsConfig::SelfManaged { data_dir } => data_dir.join("ca.crt"),
        TlsConfig::Files(files) => files.ca_file.clone().unwrap(),
    };
    let gateway = server::start(config, server::ServeOptions::default())
        .await
        .unwrap();
    let ca_pem = std::fs::read(ca_path).unwrap();
    let harness = Harness {
        dir,
        gateway,
        ca_pem,
        users_file,
    };
    wait_for_metric(&harness, "sstp_users_loaded", USERS.len() as f64).await;
    harness
}

impl Harness {
    /// Client options for `user` with `password`, connecting from 127.0.0.1.
    pub fn options(&self, user: &str, password: &str) -> ClientOptions {
        client_options(self.gateway.sstp_addr, &self.ca_pem, user, password)
    }

    /// Connects `user` and waits for the tunnel.
    pub async fn connect(&self, user: &str, password: &str) -> (Client, Ipv4Addr) {
        let mut client = Client::connect(self.options(user, password)).await.unwrap();
        let addr = tokio::time::timeout(Duration::from_secs(15), client.wait_up())
            .await
            .expect("tunnel up in time")
            .unwrap();
        (client, addr)
    }

    /// The `/metrics` text.
    pub async fn scrape(&self) -> String {
        http_get(self.gateway.admin_addr, "/metrics").await
    }

    /// The gateway's own tunnel address.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 1)
    }
}

/// Client options for `user` with `password` against `server`, trusting `ca_pem`.
pub fn client_options(
    server: SocketAddr,
    ca_pem: &[u8],
    user: &str,
    password: &str,
) -> ClientOptions {
    let ppp = sstp_ppp::ClientConfig {
        username: user.to_owned(),
        password: password.to_owned(),
        auth: sstp_ppp::AuthPolicy::default(),
        request_dns: false,
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
        link: sstp_ppp::LinkProfile::Minimal,
    };
    ClientOptions::new(
        server,
        ServerName::try_from("localhost").unwrap(),
        tls_config_with_ca(ca_pem).unwrap(),
        sstp_proto::ClientConfig::new(ppp, "localhost"),
    )
}

/// A plain HTTP/1.0 GET; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of one series in a Prometheus text exposition (`name{labels}` exactly as
/// rendered), or 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Waits (bounded, 10 s) until a series reaches `value`.
pub async fn wait_for_metric(h: &Harness, series: &str, value: f64) {
    let mut last = 0.0;
    for _ in 0..100 {
        last = metric(&h.scrape().await, series);
        if last == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} stayed at {last}, wanted {value}");
}

/// Waits (bounded, 10 s) until a series is at least `value`; returns it.
pub async fn wait_for_metric_at_least(h: &Harness, series: &str, value: f64) -> f64 {
    let mut last = 0.0;
    for _ in 0..100 {
        last = metric(&h.scrape().await, series);
        if last >= value {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} stayed at {last}, wanted at least {value}");
}

/// An IPv4 ICMP echo request (RFC 792).
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Bytes {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = sstp_ppp::ipv4::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = u16::try_from(20 + icmp.len()).unwrap();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = sstp_ppp::ipv4::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&icmp);
    Bytes::from(ip)
}

/// Whether `packet` is the echo reply to (`id`, `seq`, `payload`) addressed to `to`.
fn is_reply(packet: &[u8], to: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> bool {
    packet.len() >= 28
        && packet[0] == 0x45
        && packet[9] == 1
        && packet[16..20] == to.octets()
        && packet[20] == 0
        && packet[24..26] == id.to_be_bytes()
        && packet[26..28] == seq.to_be_bytes()
        && &packet[28..] == payload
}

/// Pings `dst` through the tunnel from `local`; panics unless the right reply comes back
/// (three tries, 3 s each).
pub async fn ping(client: &mut Client, local: Ipv4Addr, dst: Ipv4Addr, id: u16, payload: &[u8]) {
    for seq in 1..=3u16 {
        client
            .send_ip(echo_request(local, dst, id, seq, payload))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, client.recv_ip()).await {
            if is_reply(&packet, local, id, seq, payload) {
                return;
            }
        }
    }
    panic!("no echo reply for {local} (id {id})");
}

/// Connect options from another loopback source address.
pub fn from_source(mut options: ClientOptions, source: IpAddr) -> ClientOptions {
    options.bind = Some(source);
    options
}

/// Shared handle type for tests that share a harness between tasks.
pub type Shared = Arc<Harness>;
