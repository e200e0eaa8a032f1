//! `sstp-load`: a load generator for the SSTP gateway, built on the project's own client
//! (`sstp_gateway::client`).
//!
//! ```text
//! sstp-load setup      --target ADDR --ca-cert FILE --user U --password-file F --sessions N --rate R --duration D
//! sstp-load throughput ... --sink ADDR:PORT [--sessions N] [--duration D]
//! sstp-load idle       ... --gateway-pid PID [--sessions N] [--rate R] [--duration D]
//! sstp-load hold       ... [--sessions N] [--duration D] [--ready-file F] [--stop-file F]
//! sstp-load sink       --listen ADDR:PORT [--exit-after D]
//! sstp-load tcp        ... --server-netns NS --server-addr IP [--sessions N] [--direction up|down|both]
//! sstp-load ceiling    --server-netns NS --server-addr IP --cert F --key F --ca-cert F [--duration D]
//! ```
//! - `setup`: opens N sessions at R per second; reports sessions set up per second and the
//!   handshake latency (TCP connect to IPv4 up) percentiles.
//! - `throughput`: N tunnels each send UDP-in-IPv4 datagrams to the sink behind the gateway for
//!   D (upstream, counted by the sink), then ask the sink to send to them for D (downstream,
//!   counted here); reports goodput (IP bytes per second) both ways.
//! - `idle`: opens N sessions, lets them idle, and reports the gateway's RSS growth per session
//!   (`VmRSS` of `/proc/PID/status` before and after).
//! - `hold`: keeps N sessions up, redials each one when it ends, and reports how every call
//!   ended (the server's CALL_DISCONNECT or anything else), the longest time without a
//!   tunnel and the fewest sessions up at any moment: a rollout or drain seen from the clients.
//! - `sink`: the far end of `throughput`; runs in the network behind the gateway.
//! - `tcp`: kernel TCP (iperf3) through N tunnels at once, each client's TUN device in a
//!   network namespace of its own; reports goodput and TCP retransmits, up then down.
//! - `ceiling`: the machine's own limits in the same run, to give the tunnel figures as ratios:
//!   one rustls stream over loopback with the gateway's TLS configuration, a TUN round trip,
//!   TCP over the veth behind the gateway.
//!
//! `tcp` and `ceiling` need root (namespaces, TUN) and Debian's `iperf3`, `ip` and `ss`.
//!
//! Everything is bounded: session counts, rates, durations and every wait. The last line of
//! each mode is `RESULT key=value ...` for scripts.

mod ceiling;
mod hold;
mod iperf;
mod modes;
mod netns;
mod sink;
mod stats;
mod tcp;
mod wire;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sstp-load", about = "Load generator for sstp-gateway")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Sessions set up per second and handshake latency.
    Setup(Common),
    /// Bulk goodput through one or many tunnels (needs `sstp-load sink` behind the gateway).
    Throughput {
        #[command(flatten)]
        common: Common,
        /// The sink's address (behind the gateway).
        #[arg(long)]
        sink: SocketAddr,
        /// UDP payload bytes per datagram (IP packet = payload + 28; must fit the tunnel MTU).
        #[arg(long, default_value_t = 1372)]
        payload: u16,
    },
    /// Memory per idle session on the gateway.
    Idle {
        #[command(flatten)]
        common: Common,
        /// The gateway's process id (its /proc/PID/status VmRSS is read).
        #[arg(long)]
        gateway_pid: u32,
    },
    /// Sessions held and redialed as they end (how a rollout or drain looks to clients).
    Hold {
        #[command(flatten)]
        common: Common,
        /// Dials per session before it is given up (each bounded by the setup timeout).
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1000))]
        redial_attempts: u32,
        /// Written (with the number up) once every session was up once.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Stop (disconnect everything and report) as soon as this file exists, or after
        /// `--duration`, whichever comes first.
        #[arg(long)]
        stop_file: Option<PathBuf>,
    },
    /// Kernel TCP (iperf3) through the tunnels, each client's TUN in its own namespace.
    Tcp {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: tcp::TcpArgs,
    },
    /// The machine's own ceilings: rustls loopback, TUN round trip, TCP over the veth.
    Ceiling(ceiling::CeilingArgs),
    /// The receiving end of `throughput`.
    Sink {
        /// Address to listen on (UDP).
        #[arg(long)]
        listen: SocketAddr,
        /// Exit after this long (e.g. `300s`).
        #[arg(long, value_parser = parse_duration, default_value = "600s")]
        exit_after: Duration,
    },
}

/// Flags every client mode takes.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// The gateway's SSTP (TLS) address.
    #[arg(long)]
    pub(crate) target: SocketAddr,
    /// The CA certificate (PEM) that signed the gateway's certificate.
    #[arg(long)]
    pub(crate) ca_cert: PathBuf,
    /// The name the certificate is checked against.
    #[arg(long, default_value = "localhost")]
    pub(crate) server_name: String,
    /// User name.
    #[arg(long)]
    pub(crate) user: String,
    /// File holding the password (first line).
    #[arg(long)]
    pub(crate) password_file: PathBuf,
    /// Sessions to open.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) sessions: u32,
    /// New sessions per second (`R` or `R/s`).
    #[arg(long, default_value = "50", value_parser = parse_rate)]
    pub(crate) rate: f64,
    /// How long to send (throughput) or hold the sessions (setup, idle), e.g. `10s`.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub(crate) duration: Duration,
    /// Spread connections over this many loopback source addresses (127.0.0.1, .2, ...), for
    /// the gateway's per-source connection cap.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub(crate) source_addresses: u8,
    /// Behave like a real client: `sstpc`, `windows10` or `windows11` (SSTP/PPP quirks, TLS
    /// versions and suites, and for Windows the DHCPINFORM after IPCP). Without it, the
    /// project's plain client (what the published numbers were measured with).
    #[arg(long)]
    pub(crate) profile: Option<sstp_proto::ClientProfile>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Mode::Sink { listen, exit_after } => sink::run(listen, exit_after),
        mode => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(async move {
                match mode {
                    Mode::Setup(common) => modes::setup(&common).await,
                    Mode::Throughput {
                        common,
                        sink,
                        payload,
                    } => modes::throughput(&common, sink, payload).await,
                    Mode::Idle {
                        common,
                        gateway_pid,
                    } => modes::idle(&common, gateway_pid).await,
                    Mode::Hold {
                        common,
                        redial_attempts,
                        ready_file,
                        stop_file,
                    } => {
                        hold::hold(&common, redial_attempts, ready_file.as_deref(), stop_file).await
                    }
                    Mode::Tcp { common, args } => tcp::tcp(&common, &args).await,
                    Mode::Ceiling(args) => ceiling::ceiling(&args).await,
                    Mode::Sink { .. } => Ok(()),
                }
            })
        }
    }
}

/// `10`, `10/s` or `2.5/s`: sessions per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    let rate: f64 = number.parse().map_err(|_| format!("not a rate: {text}"))?;
    if rate > 0.0 && rate <= 100_000.0 {
        Ok(rate)
    } else {
        Err(format!("rate must be in (0, 100000]: {text}"))
    }
}

/// `500ms`, `10s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("not a duration: {text}");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(bad()),
    };
    if (0.0..=3600.0).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!("duration must be at most an hour: {text}"))
    }
}
