//! Assembly: turns a [`GatewayConfig`] into running listeners, sessions, data plane and
//! reloaders, and takes them down again in order. `sstp-gateway run` and `standalone` both end
//! here; the integration tests start it in-process.
//!
//! Shutdown order (`drain` in the config): readiness fails and the listener stops accepting ->
//! the disconnect delay (Services stop sending clients here; sessions carry traffic meanwhile)
//! -> every session sends CALL_DISCONNECT -> wait (bounded, so the exit stays inside the grace
//! period) for the session tasks -> stop the data plane (removes the TUN device) -> remove the
//! nftables table.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use sstp_api::{
    GatewayConfig,
    gateway_config::{AuthMethod, TlsConfig, UsersSource},
};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
    task::JoinHandle,
};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::{
    admin::{self, PublicFiles, Readiness, Site},
    admission::{AdmissionShared, SessionSlots},
    dataplane::Dataplane,
    ip_forward::{self, Forwarding},
    ip_pool::IpPool,
    k8s_source,
    listener::{self, ListenerSettings, ProxyPolicy},
    metrics::Metrics,
    nat::{NatSettings, NatTable},
    pending::PendingConnections,
    pki,
    router::Router,
    session::{AuditConfig, Deadlines, SessionShared, SessionTable},
    throttle::{AuthThrottle, ThrottleLimits},
    tls::{self, CertFiles, MaxTlsVersion, TlsSnapshot, TlsStore},
    tun::TunSettings,
    users::{self, SessionRegistry},
    users_file::{self, UsersPublisher},
};

/// `tun.queues`, with 0 meaning one per CPU this process may run on.
fn tun_queues(configured: u16) -> usize {
    match configured {
        0 => std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(usize::from(sstp_api::gateway_config::MAX_TUN_QUEUES)),
        n => usize::from(n),
    }
}

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    /// Bound address of the SSTP (TLS) listener.
    pub sstp_addr: SocketAddr,
    /// Bound address of the plain HTTP listener.
    pub http_addr: SocketAddr,
    /// Bound address of the admin listener.
    pub admin_addr: SocketAddr,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The session registry (authenticated sessions by user).
    pub registry: Arc<SessionRegistry>,
    /// The pool (for inspection by tests and the admin side).
    pub pool: Arc<Mutex<IpPool>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningGateway {
    /// Starts the orderly shutdown; [`RunningGateway::wait`] returns when it is done.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the gateway has shut down (after [`RunningGateway::shutdown`]).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the gateway task panicked")?
    }
}

/// Settings of the command line that the config file does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServeOptions {
    /// The highest TLS version offered.
    pub max_tls_version: MaxTlsVersion,
    /// Name users in the session audit records (`--audit-omit-user-names` turns it off).
    pub audit_user_names: bool,
}

/// Where the certificate and the files of the plain HTTP site come from.
fn certificate_files(config: &GatewayConfig) -> anyhow::Result<(CertFiles, PublicFiles)> {
    Ok(match &config.tls {
        TlsConfig::SelfManaged { data_dir } => {
            let pki = pki::ensure_standalone_pki(data_dir, &config.hostnames)
                .with_context(|| format!("cannot set up the PKI in {}", data_dir.display()))?;
            (
                CertFiles {
                    cert: pki.server_cert,
                    key: pki.server_key,
                },
                PublicFiles {
                    ca_cert: Some(pki.ca_cert),
                    crl: Some(pki.crl),
                },
            )
        }
        TlsConfig::Files(files) => (
            CertFiles {
                cert: files.cert_file.clone(),
                key: files.key_file.clone(),
            },
            PublicFiles {
                ca_cert: files.ca_file.clone(),
                crl: files.crl_file.clone(),
            },
        ),
    })
}

/// What DHCPINFORM is answered with: the configured routes via the gateway's tunnel address,
/// or `None` when no routes are configured.
fn dhcp_inform_config(config: &GatewayConfig) -> Option<Arc<sstp_ppp::dhcp_inform::InformConfig>> {
    use sstp_ppp::dhcp_inform::{ClasslessRoute, InformConfig};
    let server = config.gateway_address();
    let routes = config
        .routes
        .iter()
        .filter_map(|net| ClasslessRoute::new(net.network(), net.prefix_len(), server).ok())
        .collect();
    let inform = InformConfig {
        server,
        routes,
        domain: None,
        dns: config.dns.clone(),
    };
    inform.answers().then(|| Arc::new(inform))
}

/// The PPP and SSTP configuration from the gateway configuration.
fn protocol_config(config: &GatewayConfig) -> sstp_proto::ServerConfig {
    let ppp = sstp_ppp::ServerConfig {
        auth: sstp_ppp::AuthPolicy {
            mschapv2: config.auth.methods.contains(&AuthMethod::Mschapv2),
            pap: config.auth.methods.contains(&AuthMethod::Pap),
        },
        server_name: config.hostnames.first().cloned().unwrap_or_default(),
        local_ipv4: config.gateway_address(),
        dns: [config.dns.first().copied(), config.dns.get(1).copied()],
        mru: config.tun.mtu,
        // IPv4 first: IPv6CP gets a clean LCP Protocol-Reject until IPv6 is routed.
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
    };
    let mut sstp = sstp_proto::ServerConfig::new(Arc::new(ppp));
    sstp.timers.negotiation = config.limits.negotiation_timeout();
    sstp.dhcp_inform = dhcp_inform_config(config);
    sstp
}

/// Starts the users source named by the configuration, feeding `publisher`. A file is read
/// once before this returns, so the first client is not refused while the poller has not run.
async fn start_users_source(
    source: &UsersSource,
    publisher: UsersPublisher,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match source {
        UsersSource::File { path } => {
            // A missing or broken file is logged and counted; the poller keeps trying.
            let poller = users_file::load_then_watch(
                path.clone(),
                publisher,
                users_file::DEFAULT_POLL_INTERVAL,
                until(shutdown.clone()),
            )
            .await;
            tokio::spawn(poller);
            Ok(())
        }
        // The operator's pods watch their users Secret through the API: a disabled or deleted
        // user is gone within seconds, where a mounted Secret can lag a minute.
        UsersSource::KubernetesSecret {
            name,
            namespace,
            key,
        } => {
            k8s_source::spawn_users_secret_watch(
                name.clone(),
                namespace.clone(),
                key.clone(),
                publisher,
                until(shutdown.clone()),
            );
            Ok(())
        }
    }
}

/// Resolves when `shutdown` turns true (or its sender is gone).
pub async fn until(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

/// A listening socket on `addr` whose kernel queue of completed connections not yet accepted
/// holds `backlog` (tokio's `bind` fixes it at 128, std's value).
fn bind(addr: SocketAddr, backlog: u32, what: &str) -> anyhow::Result<TcpListener> {
    let context = || format!("cannot listen on {addr} ({what})");
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(context)?;
    // As std's and tokio's bind: a restarted gateway rebinds while old connections linger.
    socket.set_reuseaddr(true).with_context(context)?;
    socket.bind(addr).with_context(context)?;
    socket.listen(backlog).with_context(context)
}

/// Backlog of the plain HTTP and admin listeners: a few scrapers and CA downloads.
const SMALL_BACKLOG: u32 = 128;

#[cfg(test)]
mod tests;

/// Starts everything. Needs CAP_NET_ADMIN (TUN device, nftables).
pub async fn start(config: GatewayConfig, options: ServeOptions) -> anyhow::Result<RunningGateway> {
    let metrics = Metrics::new();
    // `drain`: the shutdown asked for (readiness off, no more accepting); `shutdown`: the
    // disconnect delay later, sessions and everything else stop.
    let (drain_tx, drain) = watch::channel(false);
    let (shutdown_tx, shutdown) = watch::channel(false);

    let (cert_files, public_files) = certificate_files(&config)?;
    let (snapshot, digest) =
        TlsSnapshot::load(&cert_files).context("cannot load the TLS certificate")?;
    let tls_store = TlsStore::with_max_version(snapshot, metrics.clone(), options.max_tls_version);
    tokio::spawn(tls::watch_files(
        Arc::clone(&tls_store),
        cert_files,
        digest,
        tls::DEFAULT_RELOAD_INTERVAL,
        until(shutdown.clone()),
    ));

    let (publisher, users_rx) = UsersPublisher::new(metrics.clone());
    let users_loaded = publisher.loaded();
    start_users_source(&config.users, publisher, &shutdown).await?;

    let pool = IpPool::new(config.address_pool).context("invalid address pool")?;
    let tun_settings = TunSettings {
        name: config.tun.name.clone(),
        address: pool.gateway_address(),
        pool: pool.network(),
        mtu: config.tun.mtu,
        offload: config.tun.offload,
        queues: tun_queues(config.tun.queues),
    };
    metrics.set_pool(pool.counts());
    let pool = Arc::new(Mutex::new(pool));
    let router = Router::new();
    let dataplane = Dataplane::start(&tun_settings, Arc::clone(&router), metrics.clone())
        .context("cannot create the TUN device (needs CAP_NET_ADMIN)")?;
    let forwarding = ipv4_forwarding(&metrics);
    let nat_table = NatTable::install(&NatSettings {
        id: config.tun.name.clone(),
        pool: config.address_pool,
        tun_name: config.tun.name.clone(),
        mtu: config.tun.mtu,
        masquerade: config.nat,
    })
    .context("cannot install the nftables table")?;

    let registry = SessionRegistry::new();
    let sessions = SessionTable::new();
    tokio::spawn(users::enforce(
        users_rx.clone(),
        Arc::clone(&registry),
        Arc::clone(&pool),
        metrics.clone(),
        until(shutdown.clone()),
    ));

    let limits = &config.limits;
    let throttle = AuthThrottle::new(ThrottleLimits {
        max_failures: limits.auth_failures.max_failures,
        window: Duration::from_secs(limits.auth_failures.window_seconds),
        block: Duration::from_secs(limits.auth_failures.block_seconds),
    });
    let slots = SessionSlots::new(limits.max_sessions);
    let shared = Arc::new(SessionShared {
        sstp: Arc::new(protocol_config(&config)),
        admission: AdmissionShared {
            pool: Arc::clone(&pool),
            users: users_rx.clone(),
            registry: Arc::clone(&registry),
            slots,
            max_sessions_per_user: limits.max_sessions_per_user,
            metrics: metrics.clone(),
        },
        users: users_rx,
        throttle: Arc::new(throttle),
        router,
        to_tun: dataplane.writers(),
        metrics: metrics.clone(),
        deadlines: Deadlines {
            preamble: limits.preamble_timeout(),
            negotiation: limits.negotiation_timeout(),
            write_stall: limits.write_stall_timeout(),
        },
        idle_timeout: limits.idle_timeout(),
        shutdown: shutdown.clone(),
        audit: AuditConfig {
            user_names: options.audit_user_names,
            gateway: AuditConfig::instance_name(),
        },
        sessions: Arc::clone(&sessions),
    });

    let sstp_listener = bind(config.listen.sstp, config.limits.listen_backlog, "SSTP")?;
    let http_listener = bind(config.listen.http, SMALL_BACKLOG, "HTTP")?;
    let admin_listener = bind(config.listen.admin, SMALL_BACKLOG, "admin")?;
    let (sstp_addr, http_addr, admin_addr) = (
        sstp_listener.local_addr()?,
        http_listener.local_addr()?,
        admin_listener.local_addr()?,
    );
    let readiness = Readiness::default();
    tokio::spawn(admin::serve(
        admin_listener,
        Site::Admin {
            metrics: metrics.clone(),
            sessions,
            readiness: readiness.clone(),
        },
        until(shutdown.clone()),
    ));
    tokio::spawn(admin::serve(
        http_listener,
        Site::Public(public_files),
        until(shutdown.clone()),
    ));
    let pending = PendingConnections::new(
        limits.max_pending_connections,
        limits.max_connections_per_source,
        metrics.clone(),
    );
    let tasks = TaskTracker::new();
    let accept = tokio::spawn(listener::serve(
        sstp_listener,
        ListenerSettings {
            proxy: ProxyPolicy {
                trusted: if config.proxy_protocol {
                    config.trusted_proxies.clone()
                } else {
                    Vec::new()
                },
            },
            handshake_timeout: limits.handshake_timeout(),
        },
        tls_store,
        shared,
        pending,
        tasks.clone(),
        drain.clone(),
    ));
    // Ready only once the users are known: a pod behind a Service that took clients before its
    // users Secret arrived would refuse every one of them. And only with IPv4 forwarding on:
    // without it every client logs in and then reaches nothing.
    {
        let readiness = readiness.clone();
        let shutdown = until(drain.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let ready = async {
                users_loaded.await;
                if !forwarding {
                    wait_for_ipv4_forwarding(&metrics).await;
                }
            };
            tokio::select! {
                () = ready => readiness.set(true),
                () = shutdown => {}
            }
        });
    }
    info!(%sstp_addr, %http_addr, %admin_addr, pool = %config.address_pool, nat = config.nat, "gateway serving");

    let drain_config = config.drain.clone();
    let task = tokio::spawn(async move {
        until(drain).await;
        readiness.set(false);
        let delay = drain_config.disconnect_delay();
        info!(
            connections = tasks.len(),
            disconnect_in = ?delay,
            "shutting down: not ready, no new connections"
        );
        let _ = accept.await;
        tokio::time::sleep(delay).await;
        info!(
            connections = tasks.len(),
            "shutting down: disconnecting every session"
        );
        let _ = shutdown_tx.send(true);
        tasks.close();
        let wait = drain_config.disconnect_wait();
        if tokio::time::timeout(wait, tasks.wait()).await.is_err() {
            warn!(
                connections = tasks.len(),
                waited = ?wait,
                "sessions still open at the end of the grace period; closing anyway"
            );
        }
        dataplane.stop().await;
        nat_table
            .remove()
            .context("cannot remove the nftables table")?;
        info!("shutdown complete");
        Ok(())
    });
    Ok(RunningGateway {
        sstp_addr,
        http_addr,
        admin_addr,
        metrics,
        registry,
        pool,
        shutdown: drain_tx,
        task,
    })
}

/// How often a gateway started without IPv4 forwarding looks again (someone may turn it on
/// from outside, e.g. `kubectl debug` with a privileged container).
const FORWARDING_RECHECK: Duration = Duration::from_secs(5);

/// Turns IPv4 forwarding on if it is off and this process may (standalone as root); in a pod it
/// is set from outside and only read here. Off is logged as an error that says what to set and
/// published as `sstp_ipv4_forwarding 0`; the gateway still serves TLS, the CA and metrics.
fn ipv4_forwarding(metrics: &Metrics) -> bool {
    let path = Path::new(ip_forward::IP_FORWARD_SYSCTL);
    let on = match ip_forward::ensure(path) {
        Ok(Forwarding::AlreadyOn) => true,
        Ok(Forwarding::TurnedOn) => {
            info!("turned on IPv4 forwarding (net.ipv4.ip_forward=1)");
            true
        }
        Err(err) => {
            let err = anyhow::Error::new(err);
            error!(
                error = format!("{err:#}"),
                "IPv4 forwarding is off: clients could log in but reach nothing beyond the \
                 gateway, so /readyz stays not ready until it is on; {}",
                ip_forward::HOW_TO_ENABLE
            );
            false
        }
    };
    metrics.set_ipv4_forwarding(on);
    on
}

/// Returns once IPv4 forwarding reads as on, looking every [`FORWARDING_RECHECK`].
async fn wait_for_ipv4_forwarding(metrics: &Metrics) {
    let path = Path::new(ip_forward::IP_FORWARD_SYSCTL);
    loop {
        tokio::time::sleep(FORWARDING_RECHECK).await;
        if matches!(ip_forward::is_enabled(path), Ok(true)) {
            info!("IPv4 forwarding is on now; ready");
            metrics.set_ipv4_forwarding(true);
            return;
        }
    }
}

/// The users file of a standalone data directory.
pub fn standalone_users_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("users.json")
}
