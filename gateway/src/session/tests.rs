//! The session task over an in-memory pipe, against the project's client, on tokio's paused
//! clock: setup, the packet path, and every way a session ends (`sessions_total{result}`, the
//! idle timeout, a user kicked, shutdown), by a plain `cargo test` that needs no root, no
//! socket and no certificate. The same paths over TLS, TUN and a real sstpc are in
//! `gateway/tests/` and `tests/tests/gateway_sstpc.rs`.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use bytes::Bytes;
use sstp_api::{UserEntry, UsersDocument, users::NtHashHex};
use sstp_proto::{CertHashes, CloseReason};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{AuditConfig, Deadlines, SessionShared, SessionTable, run};

mod backpressure;
use crate::{
    admission::{AdmissionShared, SessionSlots},
    client::{CallState, Client, ClientError},
    clock::now,
    dataplane::{ClientPacket, TunWriters},
    ip_pool::IpPool,
    metrics::Metrics,
    router::{RouteOutcome, Router},
    throttle::{AuthThrottle, ThrottleLimits},
    users::{SessionRegistry, enforce},
};

const PASSWORD: &str = "alice-password-1";
const PREAMBLE_DEADLINE: Duration = Duration::from_secs(5);
const NEGOTIATION_DEADLINE: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything around the session tasks that a test looks at or pulls.
struct Gateway {
    shared: Arc<SessionShared>,
    users: watch::Sender<Arc<UsersDocument>>,
    shutdown: watch::Sender<bool>,
    /// What the sessions send to the TUN device.
    tun: mpsc::Receiver<ClientPacket>,
    hashes: CertHashes,
    next_id: u64,
}

fn users(names: &[&str]) -> UsersDocument {
    let mut document = UsersDocument::new();
    for name in names {
        let hash = NtHashHex::from_bytes(sstp_ppp::NtHash::from_password(PASSWORD).0);
        document
            .users
            .insert((*name).to_owned(), UserEntry::new(hash));
    }
    document
}

impl Gateway {
    /// A gateway for `alice`, holding at most `max_sessions`, with the idle timeout given. Its
    /// audit records carry `name` (see [`Logs`]).
    fn new(name: &str, max_sessions: u32, idle_timeout: Option<Duration>) -> Self {
        Logs::global();
        let metrics = Metrics::new();
        let pool = IpPool::new("10.9.0.0/24".parse().unwrap()).unwrap();
        let ppp = sstp_ppp::ServerConfig {
            auth: sstp_ppp::AuthPolicy::default(),
            server_name: "gateway".into(),
            local_ipv4: pool.gateway_address(),
            dns: [None, None],
            mru: 1500,
            ipv6: false,
            timers: sstp_ppp::Timers::default(),
        };
        let pool = Arc::new(Mutex::new(pool));
        let (users_tx, users_rx) = watch::channel(Arc::new(users(&["alice"])));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let (to_tun, tun) = mpsc::channel(64);
        let registry = SessionRegistry::new();
        let mut enforce_shutdown = shutdown.clone();
        tokio::spawn(enforce(
            users_rx.clone(),
            Arc::clone(&registry),
            Arc::clone(&pool),
            metrics.clone(),
            async move {
                let _ = enforce_shutdown.wait_for(|down| *down).await;
            },
        ));
        let shared = Arc::new(SessionShared {
            sstp: Arc::new(sstp_proto::ServerConfig::new(Arc::new(ppp))),
            users: users_rx.clone(),
            throttle: Arc::new(AuthThrottle::new(ThrottleLimits {
                max_failures: 5,
                window: Duration::from_secs(60),
                block: Duration::from_secs(60),
            })),
            admission: AdmissionShared {
                pool,
                users: users_rx,
                registry,
                slots: SessionSlots::new(max_sessions),
                max_sessions_per_user: 10,
                metrics: metrics.clone(),
            },
            router: Router::new(),
            to_tun: TunWriters::from(vec![to_tun]),
            metrics,
            deadlines: Deadlines {
                preamble: PREAMBLE_DEADLINE,
                negotiation: NEGOTIATION_DEADLINE,
                write_stall: Duration::from_secs(30),
            },
            idle_timeout,
            shutdown,
            audit: AuditConfig {
                user_names: true,
                gateway: name.into(),
            },
            sessions: SessionTable::new(),
        });
        Self {
            shared,
            users: users_tx,
            shutdown: shutdown_tx,
            tun,
            hashes: CertHashes::from_der(b"the certificate the client saw"),
            next_id: 0,
        }
    }

    /// A session task on one end of a pipe; the other end is the client's.
    fn accept(&mut self) -> (DuplexStream, JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.next_id += 1;
        let source = SocketAddr::from(([192, 0, 2, 1], 40000 + self.next_id as u16));
        let task = tokio::spawn(run(
            Arc::clone(&self.shared),
            server,
            self.hashes.clone(),
            source,
            now(),
            self.next_id,
            None,
        ));
        (client, task)
    }

    /// The project's client over a new pipe, logging in as `user` with `password`.
    fn dial(&mut self, user: &str, password: &str) -> (Client, JoinHandle<()>) {
        let (stream, task) = self.accept();
        let ppp = sstp_ppp::ClientConfig {
            username: user.into(),
            password: password.into(),
            auth: sstp_ppp::AuthPolicy::default(),
            request_dns: false,
            ipv6: false,
            timers: sstp_ppp::Timers::default(),
            link: sstp_ppp::LinkProfile::Minimal,
        };
        let sstp = sstp_proto::ClientConfig::new(ppp, "gateway");
        (Client::over_stream(stream, self.hashes.clone(), sstp), task)
    }

    /// A logged-in client and its tunnel address.
    async fn up(&mut self) -> (Client, JoinHandle<()>, Ipv4Addr) {
        let (mut client, task) = self.dial("alice", PASSWORD);
        let address = client.wait_up().await.unwrap();
        (client, task, address)
    }

    /// The value of one series, e.g. `sstp_sessions_total{result="established"}`.
    fn metric(&self, series: &str) -> u64 {
        self.sample(series).parse().unwrap()
    }

    /// The value of one series as exported, e.g. a counter of seconds.
    fn sample(&self, series: &str) -> String {
        let text = self.shared.metrics.render();
        let line = text
            .lines()
            .find(|line| {
                line.strip_prefix(series)
                    .is_some_and(|rest| rest.starts_with(' '))
            })
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().to_owned()
    }

    /// The `sstp_sessions_total` counts, by result, that are not zero.
    fn results(&self) -> Vec<(&'static str, u64)> {
        [
            "established",
            "auth_failed",
            "negotiation_failed",
            "timeout",
            "client_aborted",
        ]
        .into_iter()
        .map(|result| {
            (
                result,
                self.metric(&format!("sstp_sessions_total{{result=\"{result}\"}}")),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
    }
}

/// An IPv4 header (and 8 bytes of payload) from `source` to `destination`.
fn packet(source: Ipv4Addr, destination: Ipv4Addr) -> Bytes {
    let mut packet = vec![0u8; 28];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&28u16.to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&source.octets());
    packet[16..20].copy_from_slice(&destination.octets());
    let sum = sstp_ppp::ipv4::checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    Bytes::from(packet)
}

/// The audit records of every test in this binary: one global subscriber, installed once.
/// (A per-test `set_default` would race with the other test threads over tracing's global
/// callsite cache and now and then miss a record.) Each test's gateway has its own name, and
/// a test reads only the records that carry it.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

static LOGS: OnceLock<Logs> = OnceLock::new();

impl Logs {
    fn global() -> &'static Self {
        LOGS.get_or_init(|| {
            use tracing_subscriber::{filter::Targets, layer::SubscriberExt};
            let logs = Self::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(move || writer.clone()),
                )
                .with(Targets::new().with_target(super::audit::TARGET, tracing::Level::INFO));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test in this binary installs a subscriber");
            logs
        })
    }

    /// The `session_end` audit records of the gateway named `gateway`.
    fn session_ends(gateway: &str) -> Vec<String> {
        let logs = Self::global();
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let name = format!("gateway=\"{gateway}\"");
        text.lines()
            .filter(|line| line.contains("session_end") && line.contains(&name))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_comes_up_carries_its_own_packets_both_ways_and_closes_once() {
    let mut gateway = Gateway::new(
        "a_session_comes_up_carries_its_own_packets_both_ways_and_closes_once",
        10,
        None,
    );
    let (mut client, task, address) = gateway.up().await;
    assert_eq!(gateway.results(), [("established", 1)]);
    assert_eq!(gateway.metric("sstp_sessions_active"), 1);
    assert_eq!(gateway.shared.sessions.len(), 1);

    let elsewhere = Ipv4Addr::new(198, 51, 100, 7);
    client.send_ip(packet(address, elsewhere)).await.unwrap();
    let to_tun = gateway.tun.recv().await.unwrap();
    assert_eq!(to_tun.ip(), packet(address, elsewhere));
    // Another session's address (or anyone's) as the source never reaches the TUN device.
    client
        .send_ip(packet(Ipv4Addr::new(10, 9, 0, 99), elsewhere))
        .await
        .unwrap();
    client.send_ip(packet(address, elsewhere)).await.unwrap();
    assert_eq!(
        gateway.tun.recv().await.unwrap().ip(),
        packet(address, elsewhere)
    );
    assert_eq!(
        gateway.metric("sstp_client_packets_dropped_total{reason=\"foreign_source\"}"),
        1
    );

    let reply = packet(elsewhere, address);
    assert_eq!(
        gateway.shared.router.route(reply.clone()),
        RouteOutcome::Delivered
    );
    assert_eq!(client.recv_ip().await.unwrap(), reply);

    assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
    task.await.unwrap();
    assert_eq!(gateway.metric("sstp_sessions_active"), 0);
    assert_eq!(gateway.results(), [("established", 1)], "counted once");
    assert_eq!(
        gateway.metric("sstp_sessions_closed_total{reason=\"peer_disconnected\"}"),
        1
    );
    assert!(gateway.shared.sessions.is_empty());
    assert!(
        gateway.shared.router.is_empty(),
        "the route went with the session"
    );
}

#[tokio::test(start_paused = true)]
async fn silence_before_the_http_request_is_a_preamble_timeout_and_no_session() {
    let mut gateway = Gateway::new(
        "silence_before_the_http_request_is_a_preamble_timeout_and_no_session",
        10,
        None,
    );
    let (mut client, task) = gateway.accept();
    task.await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed without a word");
    assert_eq!(
        gateway.metric("sstp_connections_rejected_total{reason=\"preamble_timeout\"}"),
        1
    );
    assert_eq!(gateway.results(), [], "never a session");
}

#[tokio::test(start_paused = true)]
async fn a_request_then_silence_is_a_setup_timeout() {
    let mut gateway = Gateway::new("a_request_then_silence_is_a_setup_timeout", 10, None);
    let (mut client, task) = gateway.accept();
    client
        .write_all(
            b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n\
              Host: gateway\r\nContent-Length: 18446744073709551615\r\n\r\n",
        )
        .await
        .unwrap();
    // Read what the gateway says (the 200) while it waits for a CONNECT_REQUEST that never
    // comes, until it closes.
    let mut said = Vec::new();
    client.read_to_end(&mut said).await.unwrap();
    task.await.unwrap();
    assert!(
        said.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&said)
    );
    assert_eq!(gateway.results(), [("timeout", 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_is_an_auth_failure_and_the_right_one_still_gets_in() {
    let mut gateway = Gateway::new(
        "a_wrong_password_is_an_auth_failure_and_the_right_one_still_gets_in",
        10,
        None,
    );
    let (mut client, task) = gateway.dial("alice", "not-the-password");
    assert!(matches!(
        client.wait_up().await,
        Err(ClientError::AuthFailed(_))
    ));
    client.closed().await;
    task.await.unwrap();
    assert_eq!(gateway.results(), [("auth_failed", 1)]);
    assert_eq!(
        gateway.metric("sstp_auth_failures_total{reason=\"bad_credentials\"}"),
        1
    );
    let (_client, _task, _) = gateway.up().await;
    assert_eq!(gateway.results(), [("established", 1), ("auth_failed", 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_full_gateway_answers_busy_before_the_login_and_counts_a_rejection() {
    let mut gateway = Gateway::new(
        "a_full_gateway_answers_busy_before_the_login_and_counts_a_rejection",
        1,
        None,
    );
    let (_first, _first_task, _) = gateway.up().await;
    let (mut second, task) = gateway.dial("alice", PASSWORD);
    assert!(matches!(
        second.wait_up().await,
        Err(ClientError::Closed(_))
    ));
    task.await.unwrap();
    assert_eq!(
        gateway.metric("sstp_connections_rejected_total{reason=\"max_sessions\"}"),
        1
    );
    assert_eq!(
        gateway.results(),
        [("established", 1)],
        "the refused one is no session"
    );
}

#[tokio::test(start_paused = true)]
async fn traffic_keeps_a_session_up_and_idleness_ends_it_with_the_idle_reason() {
    let mut gateway = Gateway::new(
        "traffic_keeps_a_session_up_and_idleness_ends_it_with_the_idle_reason",
        10,
        Some(IDLE_TIMEOUT),
    );
    let (mut client, task, address) = gateway.up().await;
    let elsewhere = Ipv4Addr::new(198, 51, 100, 7);
    // Four idle timeouts' worth of time, a packet every half of one: the session stays.
    for _ in 0..8 {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        client.send_ip(packet(address, elsewhere)).await.unwrap();
        gateway.tun.recv().await.unwrap();
        assert!(matches!(client.state(), CallState::Up { .. }));
    }
    // Then nothing: the gateway ends the call, with CALL_DISCONNECT, not a reset.
    assert_eq!(client.closed().await, CloseReason::PeerDisconnected);
    task.await.unwrap();
    let ends =
        Logs::session_ends("traffic_keeps_a_session_up_and_idleness_ends_it_with_the_idle_reason");
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(ends[0].contains("idle_timeout"), "{}", ends[0]);
    assert_eq!(gateway.metric("sstp_sessions_active"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_session_answers_hellos_and_stays_up() {
    let mut gateway = Gateway::new("a_quiet_session_answers_hellos_and_stays_up", 10, None);
    let (client, _task, _) = gateway.up().await;
    // Ten minutes without a packet: hello every 60 s of silence (MS-SSTP §3.1.2.3), each
    // answered. Output after a quiet spell longer than the write-stall timeout must get the
    // whole timeout to leave, not be dropped as stalled at once.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(matches!(client.state(), CallState::Up { .. }));
    assert_eq!(gateway.metric("sstp_sessions_active"), 1);
    assert_eq!(
        gateway.metric("sstp_sessions_closed_total{reason=\"write_stalled\"}"),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_user_taken_out_of_the_document_is_disconnected() {
    let mut gateway = Gateway::new("a_user_taken_out_of_the_document_is_disconnected", 10, None);
    let (mut client, task, _) = gateway.up().await;
    gateway.users.send_replace(Arc::new(users(&["bob"])));
    assert_eq!(client.closed().await, CloseReason::PeerDisconnected);
    task.await.unwrap();
    let ends = Logs::session_ends("a_user_taken_out_of_the_document_is_disconnected");
    assert!(
        ends.len() == 1 && ends[0].contains("user_not_admitted"),
        "{ends:?}"
    );
    // And alice cannot come back.
    let (mut again, again_task) = gateway.dial("alice", PASSWORD);
    assert!(again.wait_up().await.is_err());
    again_task.await.unwrap();
    assert_eq!(gateway.results(), [("established", 1), ("auth_failed", 1)]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_disconnects_every_session_with_the_shutdown_reason() {
    let mut gateway = Gateway::new(
        "shutdown_disconnects_every_session_with_the_shutdown_reason",
        10,
        None,
    );
    let (mut first, first_task, _) = gateway.up().await;
    let (mut second, second_task, _) = gateway.up().await;
    gateway.shutdown.send_replace(true);
    assert_eq!(first.closed().await, CloseReason::PeerDisconnected);
    assert_eq!(second.closed().await, CloseReason::PeerDisconnected);
    first_task.await.unwrap();
    second_task.await.unwrap();
    let ends = Logs::session_ends("shutdown_disconnects_every_session_with_the_shutdown_reason");
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(
        ends.iter().all(|end| end.contains("gateway_shutdown")),
        "{ends:?}"
    );
    assert_eq!(gateway.metric("sstp_sessions_active"), 0);
    assert_eq!(gateway.results(), [("established", 2)]);
}
