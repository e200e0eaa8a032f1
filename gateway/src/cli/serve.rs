//! `standalone` and `run`: build the config, start the gateway, wait for SIGTERM/SIGINT, shut
//! down in order.

use std::path::Path;

use anyhow::Context;
use sstp_api::{
    GatewayConfig, UsersDocument,
    gateway_config::{
        AuthConfig, AuthFailureThrottle, AuthMethod, DrainConfig, Limits, ListenConfig, TlsConfig,
        TunConfig, UsersSource,
    },
};
use sstp_gateway::{
    server::{self, ServeOptions},
    shutdown::ShutdownSignals,
};
use tracing::info;

use super::StandaloneArgs;

/// The standalone gateway's config; creates DIR and an empty users file if absent.
pub(super) fn standalone_config(args: &StandaloneArgs) -> anyhow::Result<GatewayConfig> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let users_file = args
        .users_file
        .clone()
        .unwrap_or_else(|| server::standalone_users_file(&args.data_dir));
    if !users_file.exists() {
        super::user::write_atomically(&users_file, &UsersDocument::new())?;
    }
    let hostnames = if args.hostnames.is_empty() {
        default_hostnames()
    } else {
        args.hostnames.clone()
    };
    let mut methods = vec![AuthMethod::Mschapv2];
    if args.pap {
        methods.push(AuthMethod::Pap);
    }
    Ok(GatewayConfig {
        listen: ListenConfig {
            sstp: args.listen,
            http: args.http_listen,
            admin: args.admin_listen,
        },
        hostnames,
        tls: TlsConfig::SelfManaged {
            data_dir: args.data_dir.clone(),
        },
        address_pool: args.address_pool,
        dns: args.dns.clone(),
        routes: args.routes.clone(),
        nat: !args.no_nat,
        auth: AuthConfig { methods },
        limits: Limits {
            max_sessions: args.max_sessions,
            max_pending_connections: args.max_pending_connections,
            max_sessions_per_user: args.max_sessions_per_user,
            idle_timeout_seconds: None,
            handshake_timeout_seconds: args.handshake_timeout,
            preamble_timeout_seconds: args.preamble_timeout,
            negotiation_timeout_seconds: args.negotiation_timeout,
            max_connections_per_source: args.max_connections_per_source,
            write_stall_timeout_seconds: args.write_stall_timeout,
            auth_failures: AuthFailureThrottle {
                max_failures: args.max_auth_failures,
                window_seconds: 60,
                block_seconds: 60,
            },
            listen_backlog: args.listen_backlog,
        },
        proxy_protocol: args.proxy_protocol,
        trusted_proxies: args.trusted_proxies.clone(),
        users: UsersSource::File { path: users_file },
        tun: TunConfig {
            name: args.tun_name.clone(),
            mtu: args.mtu,
            offload: !args.no_tun_offload,
            queues: args.tun_queues,
        },
        drain: DrainConfig {
            grace_period_seconds: args.drain_grace,
            disconnect_delay_seconds: args.drain_disconnect_delay,
        },
    })
}

/// localhost and this machine's host name.
fn default_hostnames() -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && name != "localhost" {
            names.push(name.to_owned());
        }
    }
    names
}

/// Serves until SIGTERM or SIGINT, then shuts down in order and returns.
pub(super) fn serve(
    config: GatewayConfig,
    options: ServeOptions,
    standalone: Option<&StandaloneArgs>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let mut signals = ShutdownSignals::install().context("cannot handle SIGTERM/SIGINT")?;
        let gateway = server::start(config.clone(), options).await?;
        if let Some(args) = standalone {
            print_standalone_help(args, &config, gateway.sstp_addr);
        }
        let name = signals.recv().await;
        info!(signal = name, "shutting down");
        gateway.shutdown();
        gateway.wait().await
    })
}

fn print_standalone_help(
    args: &StandaloneArgs,
    config: &GatewayConfig,
    sstp: std::net::SocketAddr,
) {
    let users = match &config.users {
        UsersSource::File { path } => path.display().to_string(),
        UsersSource::KubernetesSecret { name, .. } => name.clone(),
    };
    let ca = args.data_dir.join("ca.crt");
    let host = config.hostnames.first().map_or("localhost", String::as_str);
    println!("sstp-gateway is serving SSTP on {sstp}");
    println!(
        "  CA certificate (import on clients as a trusted root): {}",
        display(&ca)
    );
    println!("    also served at http://{host}/sstp/ca.crt");
    println!("  add a user:  sstp-gateway user add --users-file {users} NAME");
}

fn display(path: &Path) -> String {
    path.canonicalize()
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}
