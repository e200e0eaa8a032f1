//! The data plane between real kernels: the gateway's TUN device in one network namespace, and
//! a client's TUN device in another, joined by a bridge task that stands where a session's TLS
//! stream would (the SSTP part is tested with real clients elsewhere; this is about what the
//! device, offload and the queues do to packets). Kernel TCP, ICMP and UDP at both ends.

use std::{
    net::Ipv4Addr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{io::AsyncBufReadExt, process::Command, sync::mpsc, time::timeout};

use super::*;
use crate::test_packets::udp_packet;
use sstp_e2e::thread_netns::{in_new_netns, run};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
const MTU: u16 = 1400;
/// Each way, per transfer.
const TRANSFER_BYTES: usize = 16 << 20;
const DEADLINE: Duration = Duration::from_secs(120);

/// One end of a TCP transfer: `connect N HOST PORT` or `listen N HOST` (prints its port once
/// listening). Sends N random bytes while it reads the other end's, then prints the SHA-256 of
/// what it sent, of what it read, and how many bytes it read.
const TCP_END: &str = r#"
import hashlib, os, socket, sys, threading
role, n, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if role == "listen":
    l = socket.create_server((host, 0)); print(l.getsockname()[1], flush=True)
    s, _ = l.accept(); s.settimeout(60)
else:
    s = socket.create_connection((host, int(sys.argv[4])), timeout=60)
data = os.urandom(n)
t = threading.Thread(target=s.sendall, args=(data,)); t.start()
h, got = hashlib.sha256(), 0
while got < n:
    b = s.recv(1 << 20)
    if not b: break
    h.update(b); got += len(b)
t.join()
print(hashlib.sha256(data).hexdigest(), h.hexdigest(), got, flush=True)
"#;

/// Receives numbered datagrams until two quiet seconds; prints how many arrived and how many
/// arrived after a later-numbered one. Prints "ready" once bound.
const UDP_RECEIVER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(2); print("ready", flush=True)
count, late, last = 0, 0, -1
try:
    while True:
        n = struct.unpack("!I", s.recv(2048)[:4])[0]
        count += 1
        if n < last: late += 1
        last = max(last, n)
except socket.timeout:
    pass
print(count, late, flush=True)
"#;

/// Sends `count` datagrams of 1,000 bytes numbered from 0, paced in bursts so that the
/// receiver's socket does not overflow.
const UDP_SENDER: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range(int(sys.argv[3])):
    s.sendto(struct.pack("!I", n) + bytes(996), (sys.argv[1], int(sys.argv[2])))
    if n % 200 == 199: time.sleep(0.002)
"#;

/// A client namespace with a TUN device at [`CLIENT`], bridged to the data plane as the session
/// `session` would be.
struct Client {
    netns: String,
    largest_to_client: Arc<AtomicUsize>,
    bridge: tokio::task::JoinHandle<()>,
    _route: crate::router::RouteGuard,
}

impl Client {
    async fn attach(router: &Arc<Router>, writers: &TunWriters, session: u64) -> Self {
        // Tests run at once, each with its own client namespace.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let netns = format!(
            "sstpdp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let name = format!("dpc{}", std::process::id() % 100_000);
        let device = tun_rs::DeviceBuilder::new()
            .name(&name)
            .mtu(MTU)
            .build_async()
            .expect("the client's TUN device");
        run(&["ip", "netns", "add", &netns]);
        run(&["ip", "link", "set", "dev", &name, "netns", &netns]);
        let client = format!("{CLIENT}/24");
        for argv in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &client, "dev", &name],
            vec!["ip", "link", "set", "dev", &name, "up"],
        ] {
            run(&[&["ip", "netns", "exec", &netns][..], &argv[..]].concat());
        }
        let (to_client, mut from_router) = mpsc::channel::<Bytes>(1024);
        let route = router.register(CLIENT, to_client).expect("the route");
        let to_tun = writers.for_session(session);
        let largest_to_client = Arc::new(AtomicUsize::new(0));
        let largest = Arc::clone(&largest_to_client);
        let bridge = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                tokio::select! {
                    Some(packet) = from_router.recv() => {
                        largest.fetch_max(packet.len(), Ordering::Relaxed);
                        let _ = device.send(&packet).await;
                    }
                    read = device.recv(&mut buf) => match read {
                        Ok(n) => {
                            if to_tun.send(ClientPacket::new(&buf[..n])).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                }
            }
        });
        Self {
            netns,
            largest_to_client,
            bridge,
            _route: route,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, program]);
        command.kill_on_drop(true);
        command
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.bridge.abort();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn settings(offload: bool, queues: usize) -> TunSettings {
    TunSettings {
        name: format!("dpg{}", std::process::id() % 100_000),
        address: GATEWAY,
        pool: "10.98.0.0/24".parse().expect("a pool"),
        mtu: MTU,
        offload,
        queues,
    }
}

/// Runs `body` with a data plane (as `settings` say) in a fresh namespace, on a two-worker
/// runtime as the gateway has on this machine.
fn with_dataplane<F, Fut>(test: &'static str, offload: bool, queues: usize, body: F)
where
    F: FnOnce(Dataplane, Arc<Router>, Metrics) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    in_new_netns(test, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let router = Router::new();
            let metrics = Metrics::new();
            let dataplane = Dataplane::start(
                &settings(offload, queues),
                Arc::clone(&router),
                metrics.clone(),
            )
            .expect("the data plane");
            assert_eq!(dataplane.offload(), offload, "offload as asked");
            assert_eq!(dataplane.writers().len(), queues);
            timeout(DEADLINE, body(dataplane, router, metrics))
                .await
                .expect("the test's work ends in time");
        });
    });
}

/// The three hashes of a transfer line, and the byte count.
fn transfer_line(line: &str) -> (String, String, usize) {
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{line:?}");
    (
        fields[0].to_owned(),
        fields[1].to_owned(),
        fields[2].parse().expect("a count"),
    )
}

/// A TCP transfer of [`TRANSFER_BYTES`] each way at once, server behind the gateway, client in
/// its namespace: both sides must read exactly what the other sent.
async fn tcp_both_ways(client: &Client) {
    let bytes = TRANSFER_BYTES.to_string();
    let mut server = Command::new("python3")
        .args(["-c", TCP_END, "listen", &bytes, &GATEWAY.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut lines = tokio::io::BufReader::new(server.stdout.take().expect("its stdout")).lines();
    let port = lines
        .next_line()
        .await
        .expect("the server's port")
        .expect("a line");
    let out = client
        .command("python3")
        .args([
            "-c",
            TCP_END,
            "connect",
            &bytes,
            &GATEWAY.to_string(),
            &port,
        ])
        .output()
        .await
        .expect("the client runs");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (client_sent, client_read, client_count) =
        transfer_line(&String::from_utf8_lossy(&out.stdout));
    let (server_sent, server_read, server_count) =
        transfer_line(&lines.next_line().await.expect("read").expect("a line"));
    assert_eq!(client_count, TRANSFER_BYTES, "the whole download arrived");
    assert_eq!(server_count, TRANSFER_BYTES, "the whole upload arrived");
    assert_eq!(client_read, server_sent, "the download arrived intact");
    assert_eq!(server_read, client_sent, "the upload arrived intact");
}

/// Pings the gateway from the client with `extra` options; every echo must come back.
async fn ping(client: &Client, extra: &[&str]) {
    let out = client
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "5"])
        .args(extra)
        .arg(GATEWAY.to_string())
        .output()
        .await
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0% packet loss"),
        "ping {extra:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if extra.contains(&"-R") {
        // The echo carried the record-route option there and back.
        assert!(text.contains("RR:"), "no recorded route: {text}");
    }
}

fn transfers_icmp_fragments_and_options(offload: bool, test: &'static str) {
    with_dataplane(
        test,
        offload,
        2,
        move |dataplane, router, _metrics| async move {
            let client = Client::attach(&router, &dataplane.writers(), 0).await;
            tcp_both_ways(&client).await;
            ping(&client, &[]).await;
            // 3,000 bytes of ICMP: fragmented by the client's kernel on the way in and by the
            // gateway's on the way back.
            ping(&client, &["-s", "3000"]).await;
            // IPv4 options (record route) both ways.
            ping(&client, &["-R"]).await;
            let largest = client.largest_to_client.load(Ordering::Relaxed);
            assert!(
                largest <= usize::from(MTU),
                "a {largest}-byte packet reached the client (MTU {MTU})"
            );
            drop(client);
            dataplane.stop().await;
        },
    );
}

#[test]
fn with_offload_tcp_icmp_fragments_and_options_pass_intact_and_no_packet_exceeds_the_mtu() {
    transfers_icmp_fragments_and_options(
        true,
        "dataplane::with_offload_tcp_icmp_fragments_and_options_pass_intact_and_no_packet_exceeds_the_mtu",
    );
}

#[test]
fn without_offload_tcp_icmp_fragments_and_options_pass_intact_and_no_packet_exceeds_the_mtu() {
    transfers_icmp_fragments_and_options(
        false,
        "dataplane::without_offload_tcp_icmp_fragments_and_options_pass_intact_and_no_packet_exceeds_the_mtu",
    );
}

/// Numbered datagrams each way through one session on a two-queue device: none may arrive
/// after a later-numbered one. Would fail if a session's packets were spread over the writers
/// (each writer's batch lands whole) or a flow over the readers.
#[test]
fn a_sessions_packets_stay_in_order_across_two_queues() {
    with_dataplane(
        "dataplane::a_sessions_packets_stay_in_order_across_two_queues",
        true,
        2,
        |dataplane, router, _metrics| async move {
            let client = Client::attach(&router, &dataplane.writers(), 1).await;
            const COUNT: &str = "20000";
            // Upload: client -> gateway.
            let mut receiver = Command::new("python3")
                .args(["-c", UDP_RECEIVER, &GATEWAY.to_string(), "9001"])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the receiver starts");
            let up = udp_run(&mut receiver, async {
                client
                    .command("python3")
                    .args(["-c", UDP_SENDER, &GATEWAY.to_string(), "9001", COUNT])
                    .status()
                    .await
                    .expect("the sender runs")
            })
            .await;
            // Download: gateway -> client.
            let mut receiver = client
                .command("python3")
                .args(["-c", UDP_RECEIVER, &CLIENT.to_string(), "9002"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("the receiver starts");
            let down = udp_run(&mut receiver, async {
                Command::new("python3")
                    .args(["-c", UDP_SENDER, &CLIENT.to_string(), "9002", COUNT])
                    .status()
                    .await
                    .expect("the sender runs")
            })
            .await;
            for (direction, (count, late)) in [("up", up), ("down", down)] {
                assert_eq!(
                    late, 0,
                    "{direction}: {late} of {count} datagrams out of order"
                );
                assert!(
                    count >= 10_000,
                    "{direction}: only {count} of {COUNT} arrived: too few to tell"
                );
            }
            drop(client);
            dataplane.stop().await;
        },
    );
}

/// Waits for the receiver to be ready, runs the sender, and returns the receiver's counts.
async fn udp_run(
    receiver: &mut tokio::process::Child,
    sender: impl Future<Output = std::process::ExitStatus>,
) -> (u64, u64) {
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().expect("its stdout")).lines();
    assert_eq!(
        lines.next_line().await.expect("read").as_deref(),
        Some("ready")
    );
    assert!(sender.await.success(), "the sender failed");
    let line = lines.next_line().await.expect("read").expect("the counts");
    let (count, late) = line.split_once(' ').expect("two numbers");
    (
        count.parse().expect("a count"),
        late.parse().expect("a count"),
    )
}

/// Four sessions on a two-queue device: each queue writes for its sessions and reads their
/// replies, and each reply reaches the session it is for.
#[test]
fn sessions_spread_across_the_queues_and_get_their_replies() {
    with_dataplane(
        "dataplane::sessions_spread_across_the_queues_and_get_their_replies",
        true,
        2,
        |dataplane, router, metrics| async move {
            let socket = tokio::net::UdpSocket::bind((GATEWAY, 0))
                .await
                .expect("a socket");
            let port = socket.local_addr().expect("its address").port();
            let writers = dataplane.writers();
            let mut sessions = Vec::new();
            for id in 0..4u8 {
                let address = Ipv4Addr::new(10, 98, 0, 10 + id);
                let (tx, rx) = mpsc::channel(64);
                let route = router.register(address, tx).expect("the route");
                sessions.push((address, rx, route));
                let to_tun = writers.for_session(u64::from(id));
                for source_port in 0..4u16 {
                    let packet = udp_packet(address, GATEWAY, 5000 + source_port, port, &[id]);
                    to_tun
                        .send(ClientPacket::new(&packet))
                        .await
                        .expect("queued");
                }
            }
            let mut buf = [0u8; 16];
            for _ in 0..16 {
                let (n, from) = socket.recv_from(&mut buf).await.expect("a datagram");
                socket.send_to(&buf[..n], from).await.expect("the reply");
            }
            for (address, rx, _route) in &mut sessions {
                for _ in 0..4 {
                    let reply = rx.recv().await.expect("a reply for this session");
                    assert_eq!(reply[16..20], address.octets(), "for {address}");
                }
            }
            for queue in 0..2 {
                for direction in Direction::ALL {
                    let packets = metrics.tun_queue_packets(queue, direction).get();
                    assert!(
                        packets >= 8,
                        "queue {queue} {direction:?}: {packets} packets, not its two sessions' 8"
                    );
                }
            }
            drop(sessions);
            dataplane.stop().await;
        },
    );
}
