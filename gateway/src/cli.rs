//! The command line: `standalone`, `run`, `user ...` and `enable-ip-forward`. Every flag can also come from an
//! `SSTP_GATEWAY_*` environment variable. The command lines documented in the README and used
//! by the tests (`standalone --data-dir`, `run --config`, `user add --users-file NAME`) are
//! fixed.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;
use sstp_gateway::{server::ServeOptions, tls::MaxTlsVersion};

mod serve;
mod user;

/// SSTP VPN gateway: Windows' built-in VPN client over HTTPS, without RRAS.
#[derive(Debug, Parser)]
#[command(name = "sstp-gateway", version, about)]
pub(crate) struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `sstp_gateway=debug`.
    #[arg(long, global = true, env = "SSTP_GATEWAY_LOG", default_value = "info")]
    pub(crate) log: String,
    /// Log lines as text, or as one JSON object per line (every field a top-level key; the
    /// session audit records are those with `"target":"sstp_audit"`).
    #[arg(
        long,
        global = true,
        env = "SSTP_GATEWAY_LOG_FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve on one machine: creates a CA, a server certificate and an empty users file in
    /// DIR if absent, then serves (as root).
    Standalone(Box<StandaloneArgs>),
    /// Serve from a gateway config file (what the operator renders into `<gw>-config`).
    Run(RunArgs),
    /// Edit a users file (users.json): add, disable, enable, remove, list.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Turn on IPv4 forwarding (net.ipv4.ip_forward=1) in this network namespace and check it,
    /// then exit: what the operator's privileged init container runs (the image has no shell).
    EnableIpForward,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `timestamp LEVEL span: message field=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of both serving commands about the session audit records.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Leave the user name out of the session audit records (for deployments that must not
    /// log who connected).
    #[arg(long, env = "SSTP_GATEWAY_AUDIT_OMIT_USER_NAMES")]
    pub(crate) audit_omit_user_names: bool,
}

/// Flags of `standalone`.
#[derive(Debug, Args)]
pub(crate) struct StandaloneArgs {
    /// Directory for ca.crt, ca.key, server.crt, server.key, ca.crl and users.json.
    #[arg(long, env = "SSTP_GATEWAY_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
    /// SSTP (TLS) listen address.
    #[arg(long, env = "SSTP_GATEWAY_LISTEN", default_value = "0.0.0.0:443")]
    pub(crate) listen: SocketAddr,
    /// Plain HTTP listen address (`/sstp/ca.crt`, `/sstp/ca.crl`).
    #[arg(long, env = "SSTP_GATEWAY_HTTP_LISTEN", default_value = "0.0.0.0:80")]
    pub(crate) http_listen: SocketAddr,
    /// Admin listen address (`/metrics`, `/healthz`, `/readyz`).
    #[arg(
        long,
        env = "SSTP_GATEWAY_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub(crate) admin_listen: SocketAddr,
    /// Names clients dial (repeat or comma-separate); default: localhost and this host's name.
    /// The first one is the CRL distribution point host.
    #[arg(
        long = "hostname",
        env = "SSTP_GATEWAY_HOSTNAME",
        value_delimiter = ','
    )]
    pub(crate) hostnames: Vec<String>,
    /// Client address pool; its first address is the gateway's.
    #[arg(
        long,
        env = "SSTP_GATEWAY_ADDRESS_POOL",
        default_value = "10.77.0.0/24"
    )]
    pub(crate) address_pool: Ipv4Net,
    /// DNS servers offered to clients (at most two).
    #[arg(long, env = "SSTP_GATEWAY_DNS", value_delimiter = ',')]
    pub(crate) dns: Vec<Ipv4Addr>,
    /// Split-tunnel route for clients (repeat or comma-separate): answered to Windows'
    /// DHCPINFORM as options 249 and 121.
    #[arg(long = "route", env = "SSTP_GATEWAY_ROUTE", value_delimiter = ',')]
    pub(crate) routes: Vec<Ipv4Net>,
    /// Do not masquerade client traffic (route the pool instead).
    #[arg(long, env = "SSTP_GATEWAY_NO_NAT")]
    pub(crate) no_nat: bool,
    /// Users file; default DIR/users.json.
    #[arg(long, env = "SSTP_GATEWAY_USERS_FILE")]
    pub(crate) users_file: Option<PathBuf>,
    /// TUN device name (also names the nftables table `sstp_gateway_<name>`).
    #[arg(long, env = "SSTP_GATEWAY_TUN_NAME", default_value = "sstp0")]
    pub(crate) tun_name: String,
    /// Tunnel MTU (TCP MSS is clamped to MTU - 40).
    #[arg(long, env = "SSTP_GATEWAY_MTU", default_value_t = 1400)]
    pub(crate) mtu: u16,
    /// Run the TUN device without offload (by default the kernel hands over TCP super-segments
    /// and takes coalesced ones; where it refuses, the gateway falls back by itself).
    #[arg(long, env = "SSTP_GATEWAY_NO_TUN_OFFLOAD")]
    pub(crate) no_tun_offload: bool,
    /// TUN queues, each with a reader and a writer; 0: one per CPU (at most 64).
    #[arg(long, env = "SSTP_GATEWAY_TUN_QUEUES", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=64))]
    pub(crate) tun_queues: u16,
    /// Also offer PAP (the password crosses the TLS tunnel in clear).
    #[arg(long, env = "SSTP_GATEWAY_PAP")]
    pub(crate) pap: bool,
    /// Expect a PROXY protocol v1/v2 header before TLS from the --trusted-proxy ranges.
    #[arg(
        long,
        env = "SSTP_GATEWAY_PROXY_PROTOCOL",
        requires = "trusted_proxies"
    )]
    pub(crate) proxy_protocol: bool,
    /// A load balancer (CIDR) whose PROXY headers are believed; repeat or comma-separate.
    #[arg(
        long = "trusted-proxy",
        env = "SSTP_GATEWAY_TRUSTED_PROXIES",
        value_delimiter = ',',
        requires = "proxy_protocol"
    )]
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Concurrent authenticated sessions (then HTTP 503).
    #[arg(long, env = "SSTP_GATEWAY_MAX_SESSIONS", default_value_t = 1024)]
    pub(crate) max_sessions: u32,
    /// Connections not logged in yet; when full the oldest of the biggest source is dropped.
    #[arg(
        long,
        env = "SSTP_GATEWAY_MAX_PENDING_CONNECTIONS",
        default_value_t = 256
    )]
    pub(crate) max_pending_connections: u32,
    /// Connections the kernel completes on the SSTP port before they are accepted (the listen
    /// backlog; net.core.somaxconn caps it).
    #[arg(
        long,
        env = "SSTP_GATEWAY_LISTEN_BACKLOG",
        default_value_t = sstp_api::gateway_config::DEFAULT_LISTEN_BACKLOG
    )]
    pub(crate) listen_backlog: u32,
    /// Concurrent sessions per user (a user's maxSessions overrides it).
    #[arg(long, env = "SSTP_GATEWAY_MAX_SESSIONS_PER_USER", default_value_t = 4)]
    pub(crate) max_sessions_per_user: u32,
    /// Connections not logged in yet per client address (IPv6: per /64).
    #[arg(
        long,
        env = "SSTP_GATEWAY_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = 32
    )]
    pub(crate) max_connections_per_source: u32,
    /// Failed logins allowed per (user, source address) per minute before that pair is
    /// refused for a minute.
    #[arg(long, env = "SSTP_GATEWAY_MAX_AUTH_FAILURES", default_value_t = 10)]
    pub(crate) max_auth_failures: u32,
    /// Deadline for the TLS handshake, seconds.
    #[arg(long, env = "SSTP_GATEWAY_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub(crate) handshake_timeout: u64,
    /// Deadline for the HTTP preamble after TLS, seconds.
    #[arg(long, env = "SSTP_GATEWAY_PREAMBLE_TIMEOUT", default_value_t = 10)]
    pub(crate) preamble_timeout: u64,
    /// Deadline from the preamble to a working tunnel, seconds.
    #[arg(long, env = "SSTP_GATEWAY_NEGOTIATION_TIMEOUT", default_value_t = 30)]
    pub(crate) negotiation_timeout: u64,
    /// Drop a client that has read none of our output for this long, seconds.
    #[arg(long, env = "SSTP_GATEWAY_WRITE_STALL_TIMEOUT", default_value_t = 30)]
    pub(crate) write_stall_timeout: u64,
    /// On SIGTERM: exit within this long, seconds (sessions get CALL_DISCONNECT first).
    #[arg(long, env = "SSTP_GATEWAY_DRAIN_GRACE", default_value_t = 30)]
    pub(crate) drain_grace: u64,
    /// On SIGTERM: refuse new connections at once, disconnect the sessions this long after,
    /// seconds (behind a load balancer: the time it takes to stop sending clients here).
    #[arg(long, env = "SSTP_GATEWAY_DRAIN_DISCONNECT_DELAY", default_value_t = 0)]
    pub(crate) drain_disconnect_delay: u64,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) audit: AuditArgs,
}

/// TLS flags of both serving commands.
#[derive(Debug, Args)]
pub(crate) struct TlsArgs {
    /// Highest TLS version offered: 1.3 (1.2 and 1.3) or 1.2 (Linux sstpc 1.0.18 needs 1.2).
    #[arg(long, env = "SSTP_GATEWAY_MAX_TLS_VERSION", default_value = "1.3")]
    pub(crate) max_tls_version: MaxTlsVersion,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The gateway config file (JSON, schema in sstp-api `GatewayConfig`).
    #[arg(long, env = "SSTP_GATEWAY_CONFIG")]
    pub(crate) config: PathBuf,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) audit: AuditArgs,
}

/// Runs the chosen command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Standalone(args) => {
            let options = ServeOptions {
                max_tls_version: args.tls.max_tls_version,
                audit_user_names: !args.audit.audit_omit_user_names,
            };
            serve::serve(serve::standalone_config(&args)?, options, Some(&args))
        }
        Command::Run(args) => {
            let text = std::fs::read_to_string(&args.config)
                .with_context(|| format!("cannot read {}", args.config.display()))?;
            let config = sstp_api::GatewayConfig::from_json(&text).with_context(|| {
                format!("{} is not a valid gateway config", args.config.display())
            })?;
            let options = ServeOptions {
                max_tls_version: args.tls.max_tls_version,
                audit_user_names: !args.audit.audit_omit_user_names,
            };
            serve::serve(config, options, None)
        }
        Command::User(command) => user::run(command),
        Command::EnableIpForward => enable_ip_forward(),
    }
}

/// `enable-ip-forward`: nothing to write when it is on already (so it also succeeds unprivileged
/// on a node whose pods inherit forwarding).
fn enable_ip_forward() -> anyhow::Result<()> {
    use sstp_gateway::ip_forward::{self, Forwarding};
    let path = std::path::Path::new(ip_forward::IP_FORWARD_SYSCTL);
    let outcome = ip_forward::ensure(path).context("cannot turn on IPv4 forwarding")?;
    let how = match outcome {
        Forwarding::AlreadyOn => "it was on already",
        Forwarding::TurnedOn => "turned on",
    };
    println!("net.ipv4.ip_forward = 1 ({how})");
    Ok(())
}
