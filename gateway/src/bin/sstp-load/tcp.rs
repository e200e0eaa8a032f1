//! `tcp`: kernel TCP end to end through the tunnels, what users run. Each tunnel's client is
//! joined to a TUN device in a network namespace of its own, whose only route is that device;
//! an iperf3 client there talks to an iperf3 server behind the gateway, one stream per tunnel,
//! all tunnels at once, upstream (client sends) then downstream (`-R`).
//!
//! ```text
//! namespace sstpload-P-k: iperf3 -c ──TCP──► TUN slPtk ──► this process (SSTP client k)
//!     ──TLS──► gateway ──► its TUN ──► host routing ──► the server namespace: iperf3 -s
//! ```
//!
//! The TUN device is created here and then moved into its namespace: its descriptor keeps
//! working, so this process stays in its own namespace (where the gateway is reachable) while
//! the device lives in the client's.

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    Common,
    iperf::{self, Report, Servers, Way},
    modes::{self, Session},
    netns::Netns,
};

/// Received-IP queue of each client: a TCP window in flight (the default 1,024 packets would
/// drop at the client, and the drop would be charged to the gateway as retransmits).
const CLIENT_RX_QUEUE: usize = 4096;

/// Transmit queue of each client's TUN device, in packets (see [`attach`]).
const CLIENT_TXQUEUELEN: &str = "4096";

/// Which ways to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Direction {
    /// The clients send (to the network behind the gateway).
    Up,
    /// The clients receive.
    Down,
    /// Up, then down.
    Both,
}

/// The `tcp` mode's own flags.
#[derive(Debug, clap::Args)]
pub(crate) struct TcpArgs {
    /// The network namespace behind the gateway where the iperf3 servers run.
    #[arg(long)]
    pub(crate) server_netns: String,
    /// The servers' address in it (reachable through the tunnels).
    #[arg(long)]
    pub(crate) server_addr: Ipv4Addr,
    /// The first server port; tunnel k uses port + k.
    #[arg(long, default_value_t = 5201)]
    pub(crate) port: u16,
    /// MTU of each client's TUN device (at most the tunnel's: 1400 unless the gateway's --mtu
    /// says otherwise).
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u16).range(576..=1500))]
    pub(crate) mtu: u16,
    /// Which ways to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub(crate) direction: Direction,
}

/// One session joined to its TUN device in its namespace.
struct Tunnel {
    netns: Netns,
    device: String,
    stop: CancellationToken,
    bridge: tokio::task::JoinHandle<Session>,
}

pub(crate) async fn tcp(common: &Common, args: &TcpArgs) -> anyhow::Result<()> {
    let count = u16::try_from(common.sessions)
        .ok()
        .filter(|n| args.port.checked_add(*n).is_some())
        .context("--port + --sessions must stay below 65536")?;
    let ports = args.port..args.port + count;
    let _servers = Servers::start(Some(&args.server_netns), args.server_addr, ports).await?;

    let mut options = modes::client_options(common)?;
    options.rx_queue = CLIENT_RX_QUEUE;
    let opened = modes::open_sessions_with(common, options).await?;
    modes::print_errors(&opened.errors);
    if opened.sessions.is_empty() {
        bail!("no session came up");
    }
    let tag = std::process::id() % 100_000;
    let mut tunnels = Vec::with_capacity(opened.sessions.len());
    for (k, session) in opened.sessions.into_iter().enumerate() {
        tunnels.push(attach(session, tag, k, args.mtu).await?);
    }
    let n = tunnels.len();
    println!(
        "tunnels            {n} (one iperf3 stream each, TUN MTU {})",
        args.mtu
    );

    let ways: &[Way] = match args.direction {
        Direction::Up => &[Way::Send],
        Direction::Down => &[Way::Receive],
        Direction::Both => &[Way::Send, Way::Receive],
    };
    let mut fields = format!("mode=tcp tunnels={n}");
    for &way in ways {
        let dropped_before = client_tun_drops(&tunnels).await?;
        let (total, errors) = streams(&tunnels, args, common.duration, way).await;
        let client_drops = client_tun_drops(&tunnels).await? - dropped_before;
        let name = match way {
            Way::Send => "up",
            Way::Receive => "down",
        };
        let mbit_s = total.mbit_per_s();
        println!(
            "{name:<18} {mbit_s:.1} Mbit/s, {} bytes over {:.1} s, {} retransmitted segments, {client_drops} packets dropped at the clients' TUN devices",
            total.bytes, total.seconds, total.retransmits
        );
        modes::print_errors(&errors);
        let failed: u32 = errors.values().sum();
        fields.push_str(&format!(
            " {name}_mbit_s={mbit_s:.1} {name}_bytes={} {name}_retransmits={} {name}_client_tun_drops={client_drops} {name}_failed={failed}",
            total.bytes, total.retransmits
        ));
    }

    let mut sessions = Vec::with_capacity(n);
    let mut namespaces = Vec::with_capacity(n);
    for tunnel in tunnels {
        tunnel.stop.cancel();
        sessions.push(tunnel.bridge.await.context("a bridge task failed")?);
        namespaces.push(tunnel.netns);
    }
    modes::close_all(sessions).await;
    drop(namespaces);
    println!("RESULT {fields}");
    Ok(())
}

/// Runs one iperf3 stream per tunnel, all at once; returns their sum and why any failed.
async fn streams(
    tunnels: &[Tunnel],
    args: &TcpArgs,
    duration: Duration,
    way: Way,
) -> (Report, BTreeMap<String, u32>) {
    let mut clients = JoinSet::new();
    for (k, tunnel) in tunnels.iter().enumerate() {
        let netns = tunnel.netns.name().to_owned();
        let server = args.server_addr;
        let port = args.port + u16::try_from(k).unwrap_or(0);
        clients
            .spawn(async move { iperf::client(Some(&netns), server, port, duration, way).await });
    }
    let mut total = Report::default();
    let mut errors = BTreeMap::new();
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(Ok(report)) => total.add(report),
            Ok(Err(err)) => *errors.entry(format!("{err:#}")).or_default() += 1,
            Err(err) => *errors.entry(err.to_string()).or_default() += 1,
        }
    }
    (total, errors)
}

/// What the clients' kernels dropped at their TUN devices so far (this tool read too slowly):
/// retransmits those explain are the load tool's, not the gateway's.
async fn client_tun_drops(tunnels: &[Tunnel]) -> anyhow::Result<u64> {
    let mut total = 0;
    for tunnel in tunnels {
        total += tunnel.netns.tx_dropped(&tunnel.device).await?;
    }
    Ok(total)
}

/// Creates namespace `sstpload-TAG-K` and TUN device `slTAGtK`, moves the device in, gives it
/// the session's address and the default route, and starts the bridge.
async fn attach(session: Session, tag: u32, k: usize, mtu: u16) -> anyhow::Result<Tunnel> {
    let netns = Netns::create(format!("sstpload-{tag}-{k}")).await?;
    let name = format!("sl{tag}t{k}");
    let device = netns.new_tun(&name, mtu).await?;
    let address = format!("{}/32", session.local);
    netns
        .exec("ip", &["addr", "add", &address, "dev", &name])
        .await?;
    // The kernel's default TUN queue (500 packets) overflows whenever this process is not
    // scheduled for a few milliseconds, and the loss would be counted against the gateway.
    netns
        .exec(
            "ip",
            &["link", "set", &name, "txqueuelen", CLIENT_TXQUEUELEN, "up"],
        )
        .await?;
    netns
        .exec("ip", &["route", "add", "default", "dev", &name])
        .await?;
    let stop = CancellationToken::new();
    let bridge = tokio::spawn(bridge(session, device, stop.clone()));
    Ok(Tunnel {
        netns,
        device: name,
        stop,
        bridge,
    })
}

/// Moves packets between the TUN device and the session until `stop`, the device fails or the
/// call ends; gives the session back.
async fn bridge(
    mut session: Session,
    device: tun_rs::AsyncDevice,
    stop: CancellationToken,
) -> Session {
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            read = device.recv(&mut buf) => match read {
                Ok(n) => {
                    // Waits while the client's queue is full: backpressure toward the kernel.
                    let packet = Bytes::copy_from_slice(&buf[..n]);
                    if session.client.send_ip(packet).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            },
            packet = session.client.recv_ip() => match packet {
                // A refused write is a dropped packet, as on a NIC; TCP sees it.
                Some(packet) => {
                    let _ = device.send(&packet).await;
                }
                None => break,
            },
            () = stop.cancelled() => break,
        }
    }
    session
}
