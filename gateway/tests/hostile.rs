//! Hostile clients against the real gateway binary, in a network namespace of the test's own:
//! clients that flood and never read (before and after login), and thousands of idle TCP
//! connections and stalled TLS handshakes while a real user logs in once a second. Memory is
//! the gateway process's resident set, read from /proc.
//! Run as root: `cargo test -p sstp-gateway --test hostile -- --nocapture` (prints the figures).
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Reaper, TestDir, client_options, http_get, in_new_netns, metric, ping, runtime};
use rustls::pki_types::ServerName;
use sstp_gateway::client::{Client, tls_config_with_ca};
use sstp_proto::{CertHashes, ClientConnection, ClientEvent, ControlMessage};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{TlsConnector, client::TlsStream};

const BIN: &str = env!("CARGO_BIN_EXE_sstp-gateway");
const SSTP: &str = "127.0.0.1:8443";
const ADMIN: &str = "127.0.0.1:9090";
const USER: (&str, &str) = ("alice", "alice-password");
const FLOODER: (&str, &str) = ("mallory", "mallory-password");
/// The gateway's own tunnel address (first of 10.77.0.0/24).
const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// The gateway binary serving `run --config` with `limits`; killed when dropped.
struct Gateway {
    // Declared first so the process is killed before its directory is removed.
    _reaper: Reaper,
    _dir: TestDir,
    pid: u32,
    ca: Vec<u8>,
}

impl Gateway {
    fn start(test: &str, limits: &str) -> Self {
        let dir = TestDir::new(test);
        let users = dir.0.join("users.json");
        std::fs::write(
            &users,
            common::users_document(&[USER, FLOODER]).to_json_pretty(),
        )
        .unwrap();
        let pki: PathBuf = dir.0.join("pki");
        let config = format!(
            r#"{{
  "listen": {{ "sstp": "{SSTP}", "http": "127.0.0.1:8080", "admin": "{ADMIN}" }},
  "hostnames": ["localhost"], "addressPool": "10.77.0.0/24", "nat": false,
  "tls": {{ "selfManaged": {{ "dataDir": "{}" }} }},
  "users": {{ "file": {{ "path": "{}" }} }},
  "limits": {limits}
}}"#,
            pki.display(),
            users.display()
        );
        let path = dir.0.join("config.json");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let reaper = Reaper(Some(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::exists(pki.join("ca.crt")).unwrap() {
            assert!(Instant::now() < deadline, "no CA written");
            std::thread::sleep(Duration::from_millis(50));
        }
        let ca = std::fs::read(pki.join("ca.crt")).unwrap();
        Self {
            _reaper: reaper,
            _dir: dir,
            pid,
            ca,
        }
    }

    async fn ready(&self) {
        let admin = ADMIN.parse().unwrap();
        let start = Instant::now();
        while !(TcpStream::connect(admin).await.is_ok()
            && http_get(admin, "/readyz").await.starts_with("ready"))
        {
            assert!(start.elapsed() < Duration::from_secs(30), "never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident set of the gateway process, KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid).expect("the gateway runs")
    }

    async fn scrape(&self) -> String {
        http_get(ADMIN.parse().unwrap(), "/metrics").await
    }

    /// A real user logs in from `source`, pings through the tunnel and hangs up.
    async fn user_session(&self, source: Option<IpAddr>, id: u16) -> Result<(), String> {
        let mut options = client_options(SSTP.parse().unwrap(), &self.ca, USER.0, USER.1);
        options.bind = source;
        let attempt = async {
            let mut client = Client::connect(options).await.map_err(|e| e.to_string())?;
            let addr = client.wait_up().await.map_err(|e| e.to_string())?;
            ping(&mut client, addr, GATEWAY_IP, id, b"legitimate user").await;
            client.disconnect().await;
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(20), attempt)
            .await
            .unwrap_or_else(|_| Err("no tunnel within 20 s".into()))
    }
}

/// `VmRSS` of process `pid` from /proc, KiB; `None` once it is gone.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn tcp_from(source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(SSTP.parse().unwrap()).await
}

async fn tls(ca: &[u8]) -> (TlsStream<TcpStream>, CertHashes) {
    let tcp = tcp_from(None).await.unwrap();
    let connector = TlsConnector::from(tls_config_with_ca(ca).unwrap());
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    (stream, CertHashes::from_der(leaf.as_ref()))
}

/// One SSTP data packet carrying an LCP packet (RFC 1661 §5) in an uncompressed PPP frame.
fn lcp_packet(code: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let lcp_len = u16::try_from(4 + data.len()).unwrap();
    let total = u16::try_from(4 + 4 + 4 + data.len()).unwrap();
    let mut out = vec![0x10, 0x00];
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0xFF, 0x03, 0xC0, 0x21, code, id]);
    out.extend_from_slice(&lcp_len.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads SSTP packets after the HTTP response until `done` says so for one of them; returns
/// the LCP packets (code, id, data) seen.
async fn read_lcp_until(
    stream: &mut TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
    mut done: impl FnMut(u8, u8, &[u8]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
            && buf.starts_with(b"HTTP/")
        {
            buf.drain(..end + 4);
        }
        while buf.len() >= 4 && !buf.starts_with(b"HTTP/") {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]) & 0x0FFF);
            if buf.len() < len {
                break;
            }
            let packet: Vec<u8> = buf.drain(..len).collect();
            let is_lcp = packet[1] & 1 == 0
                && packet.len() >= 12
                && packet[4..8] == [0xFF, 0x03, 0xC0, 0x21];
            if is_lcp && done(packet[8], packet[9], &packet[12..]) {
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk))
            .await
            .expect("the gateway answered in time")
            .unwrap();
        assert!(n > 0, "the gateway closed during LCP");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// HTTP, CALL_CONNECT_REQUEST and LCP up to Opened, never authenticating.
async fn lcp_opened(ca: &[u8]) -> TlsStream<TcpStream> {
    let (mut stream, _) = tls(ca).await;
    let mut out = Vec::new();
    sstp_proto::http::write_request(&mut out, "localhost", None);
    out.extend_from_slice(&[0x10, 0x01, 0x00, 0x0e, 0, 1, 0, 1, 0, 1, 0, 6, 0, 1]);
    out.extend_from_slice(&lcp_packet(1, 1, &[]));
    stream.write_all(&out).await.unwrap();
    let (mut acked, mut ours_acked) = (false, false);
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    read_lcp_until(&mut stream, &mut buf, |code, id, data| {
        match code {
            1 => {
                replies.extend_from_slice(&lcp_packet(2, id, data));
                acked = true;
            }
            2 if id == 1 => ours_acked = true,
            _ => {}
        }
        acked && ours_acked
    })
    .await;
    stream.write_all(&replies).await.unwrap();
    stream
}

/// Logs in with the project's state machine over a raw stream, up to IPv4; then the caller
/// takes over the stream.
async fn logged_in(ca: &[u8]) -> (TlsStream<TcpStream>, ClientConnection, Ipv4Addr) {
    let (mut stream, hashes) = tls(ca).await;
    let ppp = sstp_ppp::ClientConfig {
        username: FLOODER.0.into(),
        password: FLOODER.1.into(),
        auth: sstp_ppp::AuthPolicy::default(),
        request_dns: false,
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
        link: sstp_ppp::LinkProfile::default(),
    };
    let mut conn = ClientConnection::new(
        sstp_proto::ClientConfig::new(ppp, "localhost"),
        hashes,
        Box::new(rand::make_rng::<rand::rngs::StdRng>()),
        std::time::Instant::now(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut up, mut connected) = (None, false);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                ClientEvent::Ipv4Up { local, .. } => up = Some(local),
                ClientEvent::Connected { .. } => connected = true,
                ClientEvent::Closed { reason } => panic!("login failed: {reason:?}"),
                _ => {}
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
        stream.write_all(&out).await.unwrap();
        if let (Some(local), true) = (up, connected) {
            return (stream, conn, local);
        }
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk))
            .await
            .expect("login in time")
            .unwrap();
        assert!(n > 0, "the gateway closed during login");
        conn.handle_input(std::time::Instant::now(), &chunk[..n]);
    }
}

/// What a flood achieved.
#[derive(Debug)]
struct Flood {
    peak_rss_kib: u64,
    sent_mib: f64,
    cut_off_after: Option<Duration>,
}

/// Writes `batch` as fast as the gateway takes it, never reading, for at most `limit`,
/// sampling the gateway's memory; stops when the gateway cuts the connection. Meanwhile a real
/// user logs in (and must succeed).
async fn flood(
    gateway: &Gateway,
    mut stream: TlsStream<TcpStream>,
    batch: Vec<u8>,
    limit: Duration,
) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let pid = gateway.pid;
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let started = Instant::now();
    let mut sent = 0usize;
    let writer = async {
        // `write` is cancel-safe (all or nothing of what it reports), so the stream stays
        // aligned on packet boundaries however often a stalled write is given up.
        let mut offset = 0;
        while started.elapsed() < limit {
            // A write that waits this long is held back by the gateway: keep trying, as an
            // attacker would, until it gives up on us.
            match tokio::time::timeout(Duration::from_millis(200), stream.write(&batch[offset..]))
                .await
            {
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(n)) => {
                    sent += n;
                    offset = (offset + n) % batch.len();
                }
                Err(_) => {}
            }
        }
        None
    };
    let user = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        gateway.user_session(None, 7).await
    };
    let (cut_off_after, user) = tokio::join!(writer, user);
    stop.store(true, Ordering::Relaxed);
    let peak_rss_kib = sampler.join().unwrap();
    user.expect("a real user logs in during the flood");
    Flood {
        peak_rss_kib,
        sent_mib: sent as f64 / (1 << 20) as f64,
        cut_off_after,
    }
}

/// Repeats `packet` to about 16 KiB.
fn batch_of(packet: &[u8]) -> Vec<u8> {
    packet.repeat(16 * 1024 / packet.len())
}

/// The memory a flooding client may make the gateway hold, beyond its resting size. The
/// per-connection bound is about 0.1 MiB before login and 2 MiB after (gateway/README.md,
/// "Hostile clients"); the rest is allocator slack and the real user's session.
const FLOOD_RSS_CAP_KIB: u64 = 32 * 1024;

#[test]
fn clients_that_flood_and_never_read_hold_bounded_memory_and_are_cut_off() {
    in_new_netns("hostile_flood", || {
        let gateway = Gateway::start(
            "hostile-flood",
            r#"{ "negotiationTimeoutSeconds": 6, "writeStallTimeoutSeconds": 3 }"#,
        );
        runtime().block_on(async {
            gateway.ready().await;
            gateway.user_session(None, 1).await.unwrap();
            let resting = gateway.rss_kib();
            let limit = Duration::from_secs(30);

            // Before login: LCP Echo-Requests (RFC 1661 §5.8), each answered with a Reply.
            let stream = lcp_opened(&gateway.ca).await;
            let echo = lcp_packet(9, 1, &[0, 0, 0, 0]);
            let before = flood(&gateway, stream, batch_of(&echo), limit).await;

            // After login: SSTP ECHO_REQUESTs (§3.1.2.3), each answered with a response.
            let (stream, _conn, _) = logged_in(&gateway.ca).await;
            let mut echo = Vec::new();
            ControlMessage::EchoRequest.encode(&mut echo);
            let sstp_echo = flood(&gateway, stream, batch_of(&echo), limit).await;

            // After login: IP packets (ICMP echo to the gateway, answered by its kernel).
            let (stream, mut conn, local) = logged_in(&gateway.ca).await;
            let ping = common::echo_request(local, GATEWAY_IP, 9, 1, &[0x55; 1000]);
            conn.send_ip(&ping).unwrap();
            let mut ip = Vec::new();
            conn.poll_transmit(&mut ip);
            let ip_flood = flood(&gateway, stream, batch_of(&ip), limit).await;

            let text = gateway.scrape().await;
            for (what, f) in [
                ("LCP echo before login", &before),
                ("SSTP echo after login", &sstp_echo),
                ("IP packets after login", &ip_flood),
            ] {
                println!(
                    "hostile: {what}: gateway RSS {} KiB resting, {} KiB peak (+{} KiB); \
                     {:.1} MiB sent; cut off after {:?}",
                    resting,
                    f.peak_rss_kib,
                    f.peak_rss_kib.saturating_sub(resting),
                    f.sent_mib,
                    f.cut_off_after
                );
                assert!(
                    f.peak_rss_kib < resting + FLOOD_RSS_CAP_KIB,
                    "{what}: RSS grew from {resting} to {} KiB",
                    f.peak_rss_kib
                );
                assert!(f.cut_off_after.is_some(), "{what}: never cut off");
            }
            assert!(
                metric(
                    &text,
                    r#"sstp_sessions_closed_total{reason="write_stalled"}"#
                ) >= 2.0,
                "{text}"
            );
            // The gateway still serves.
            gateway.user_session(None, 2).await.unwrap();
        });
    });
}

/// Raises this process's descriptor limit for thousands of attacking sockets.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// One attacking connection, reopened whenever the gateway drops it: idle TCP, or a TLS
/// ClientHello cut in half.
async fn attacker(
    source: IpAddr,
    half_hello: Option<Arc<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU32>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut tcp) = tcp_from(Some(source)).await {
            opened.fetch_add(1, Ordering::Relaxed);
            if let Some(hello) = &half_hello {
                let _ = tcp.write_all(hello).await;
            }
            // Until the gateway drops us (EOF or reset) or the test ends.
            let mut byte = [0u8; 1];
            let _ = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut byte)).await;
        }
        // Reconnect at once, bounded only so the test's own CPU stays sane.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[test]
fn idle_and_stalled_connections_from_many_sources_never_keep_a_user_out() {
    in_new_netns("hostile_pending", || {
        raise_nofile();
        // The gateway's defaults: 256 pending, 32 per source, 10 s handshake deadline.
        let gateway = Gateway::start("hostile-pending", "{}");
        runtime().block_on(async {
            gateway.ready().await;
            let mut hello = Vec::new();
            let mut client = rustls::ClientConnection::new(
                tls_config_with_ca(&gateway.ca).unwrap(),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap();
            client.write_tls(&mut hello).unwrap();
            hello.truncate(hello.len() / 2);
            let hello = Arc::new(hello);

            let stop = Arc::new(AtomicBool::new(false));
            let opened = Arc::new(AtomicU32::new(0));
            let mut attackers = Vec::new();
            for source in 1..=50u8 {
                let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, source));
                for n in 0..50 {
                    // 40 idle TCP connections and 10 stalled TLS handshakes per source.
                    let hello = (n >= 40).then(|| Arc::clone(&hello));
                    attackers.push(tokio::spawn(attacker(
                        ip,
                        hello,
                        Arc::clone(&stop),
                        Arc::clone(&opened),
                    )));
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;

            const ATTEMPTS: u32 = 100;
            let mut failures = Vec::new();
            let start = tokio::time::Instant::now();
            for attempt in 0..ATTEMPTS {
                tokio::time::sleep_until(start + Duration::from_secs(u64::from(attempt))).await;
                if let Err(err) = gateway.user_session(None, 100 + attempt as u16).await {
                    failures.push(err);
                }
            }
            let text = gateway.scrape().await;
            stop.store(true, Ordering::Relaxed);
            for task in attackers {
                task.abort();
            }
            let succeeded = ATTEMPTS - failures.len() as u32;
            println!(
                "hostile: {succeeded}/{ATTEMPTS} logins succeeded under {} attacking connections \
                 (2,000 idle TCP + 500 stalled TLS from 50 sources at a time); gateway: \
                 {} evicted, {} refused per source, {} pending now; failures: {failures:?}",
                opened.load(Ordering::Relaxed),
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="pending_evicted"}"#
                ),
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="per_source_limit"}"#
                ),
                metric(&text, "sstp_connections_pending"),
            );
            assert!(
                succeeded * 100 >= ATTEMPTS * 99,
                "{succeeded}/{ATTEMPTS}: {failures:?}"
            );
            assert!(
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="pending_evicted"}"#
                ) > 0.0
            );
        });
    });
}
