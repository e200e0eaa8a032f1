//! `ceiling`: what this machine can do without the gateway, measured in the same run as the
//! tunnel figures so that each of those can be given as a ratio:
//! - TLS: one rustls stream over loopback, the gateway's server configuration (its certificate
//!   files, [`TlsSnapshot`]) against the load tool's client configuration, fixed-size writes
//!   (1,400 bytes: one tunnel packet per record, what the SSTP path does at best without
//!   batching);
//! - TCP over the veth: iperf3 from this namespace to the one behind the gateway, both ways
//!   (the path the tunnels end on, without them);
//! - TUN: 1,400-byte packets written to a TUN device whose kernel forwards them back out of the
//!   same device, read back (the two kernel crossings every tunnel packet makes at the gateway).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use rustls::pki_types::ServerName;
use sstp_gateway::{
    client::tls_config_with_ca,
    tls::{CertFiles, TlsSnapshot},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::{
    iperf::{self, Servers, Way},
    netns::Netns,
    stats::mbit_per_s,
    wire,
};

/// The `ceiling` mode's flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CeilingArgs {
    /// The network namespace at the far end of the veth (where the tunnels' traffic goes).
    #[arg(long)]
    pub(crate) server_netns: String,
    /// Its address on the veth.
    #[arg(long)]
    pub(crate) server_addr: Ipv4Addr,
    /// The iperf3 server's port there.
    #[arg(long, default_value_t = 5199)]
    pub(crate) port: u16,
    /// The gateway's certificate chain (PEM), for its TLS configuration.
    #[arg(long)]
    pub(crate) cert: PathBuf,
    /// The gateway's private key (PEM).
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// The CA that signed the certificate.
    #[arg(long)]
    pub(crate) ca_cert: PathBuf,
    /// The name the certificate is checked against.
    #[arg(long, default_value = "localhost")]
    pub(crate) server_name: String,
    /// Bytes per TLS write.
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub(crate) write_bytes: u32,
    /// How long each measurement runs.
    #[arg(long, value_parser = crate::parse_duration, default_value = "5s")]
    pub(crate) duration: Duration,
}

pub(crate) async fn ceiling(args: &CeilingArgs) -> anyhow::Result<()> {
    let tls = tls_loopback(args).await.context("TLS loopback")?;
    println!(
        "rustls loopback    {:.1} Mbit/s, one stream, {}-byte writes",
        tls, args.write_bytes
    );
    let (tun, tun_written) = tun_round_trip(args.duration)
        .await
        .context("TUN round trip")?;
    println!("TUN round trip     {tun:.1} Mbit/s read back ({tun_written:.1} Mbit/s written)");
    let _server = Servers::start(Some(&args.server_netns), args.server_addr, [args.port]).await?;
    let up = iperf::client(None, args.server_addr, args.port, args.duration, Way::Send).await?;
    let down = iperf::client(
        None,
        args.server_addr,
        args.port,
        args.duration,
        Way::Receive,
    )
    .await?;
    let (up_mbit, down_mbit) = (up.mbit_per_s(), down.mbit_per_s());
    println!(
        "TCP over the veth  up {up_mbit:.1} Mbit/s ({} retransmits), down {down_mbit:.1} Mbit/s ({} retransmits)",
        up.retransmits, down.retransmits
    );
    println!(
        "RESULT mode=ceiling tls_mbit_s={tls:.1} tls_write_bytes={} tun_mbit_s={tun:.1} tun_write_mbit_s={tun_written:.1} veth_up_mbit_s={up_mbit:.1} veth_up_retransmits={} veth_down_mbit_s={down_mbit:.1} veth_down_retransmits={}",
        args.write_bytes, up.retransmits, down.retransmits
    );
    Ok(())
}

/// One TLS stream over loopback for `args.duration`; Mbit/s of plaintext the server read.
async fn tls_loopback(args: &CeilingArgs) -> anyhow::Result<f64> {
    let files = CertFiles {
        cert: args.cert.clone(),
        key: args.key.clone(),
    };
    let (snapshot, _) = TlsSnapshot::load(&files).context("the gateway's certificate")?;
    let acceptor = TlsAcceptor::from(snapshot.config.clone());
    let ca = read(&args.ca_cert)?;
    let connector = TlsConnector::from(tls_config_with_ca(&ca).context("invalid CA")?);
    let server_name = ServerName::try_from(args.server_name.clone())
        .with_context(|| format!("invalid server name {}", args.server_name))?;

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?; // as the gateway's listener does
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut total, mut first) = (0u64, None);
        loop {
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            total += n as u64;
        }
        let span = first.map_or(Duration::ZERO, |f: Instant| f.elapsed());
        Ok::<_, std::io::Error>((total, span))
    });
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(server_name, tcp).await?;
    let chunk = vec![0x5a_u8; args.write_bytes as usize];
    let deadline = Instant::now() + args.duration;
    while Instant::now() < deadline {
        for _ in 0..64 {
            tls.write_all(&chunk).await?;
        }
    }
    tls.shutdown().await?;
    let (total, span) = server.await.context("the TLS server task")??;
    Ok(mbit_per_s(total, span.as_secs_f64()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes 1,400-byte IPv4/UDP packets into a TUN device in a namespace of its own that
/// forwards them back out of the same device, and reads them; returns (read back, written)
/// in Mbit/s.
async fn tun_round_trip(duration: Duration) -> anyhow::Result<(f64, f64)> {
    const PACKET: usize = 1400;
    let tag = std::process::id() % 100_000;
    let netns = Netns::create(format!("sstpload-{tag}-tun")).await?;
    let name = format!("sl{tag}c");
    let device = Arc::new(netns.new_tun(&name, 1500).await?);
    netns
        .exec("ip", &["addr", "add", "10.255.255.1/24", "dev", &name])
        .await?;
    netns.exec("ip", &["link", "set", &name, "up"]).await?;
    // Forward what is written back out of the device, without redirects or the source check.
    for setting in [
        "net.ipv4.ip_forward=1".to_owned(),
        "net.ipv4.conf.all.send_redirects=0".to_owned(),
        format!("net.ipv4.conf.{name}.send_redirects=0"),
        "net.ipv4.conf.all.rp_filter=0".to_owned(),
        format!("net.ipv4.conf.{name}.rp_filter=0"),
    ] {
        netns.exec("sysctl", &["-qw", &setting]).await?;
    }
    let body = vec![0u8; PACKET - wire::IPV4_HEADER - wire::UDP_HEADER];
    let packet = wire::udp_packet(
        Ipv4Addr::new(10, 255, 255, 2),
        Ipv4Addr::new(10, 255, 255, 3),
        9,
        &body,
    );
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (device, written) = (device.clone(), written.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                for _ in 0..64 {
                    if device.send(&packet).await.is_err() {
                        return;
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let started = Instant::now();
    let end = tokio::time::Instant::now() + duration;
    let mut buf = vec![0u8; 2048];
    let mut read_back = 0u64;
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, device.recv(&mut buf)).await {
        if n == PACKET {
            read_back += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    writer.await.context("the TUN writer task")?;
    drop(device);
    drop(netns);
    let bits = |packets: u64| (packets * PACKET as u64) as f64 * 8.0 / elapsed / 1e6;
    Ok((bits(read_back), bits(written.load(Ordering::Relaxed))))
}
