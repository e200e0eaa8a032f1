//! Semantic checks of a [`GatewayConfig`] that serde's types cannot express.

use std::{collections::HashSet, net::IpAddr};

use super::{ConfigError, GatewayConfig, Limits, MAX_TUN_QUEUES, TlsConfig, UsersSource};

impl GatewayConfig {
    /// Checks every field; the first problem found is returned with the field's JSON path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_listen()?;
        self.check_hostnames()?;
        self.check_network()?;
        check_limits(&self.limits)?;
        self.check_proxy()?;
        self.check_sources()?;
        self.check_tun()
    }

    fn check_listen(&self) -> Result<(), ConfigError> {
        let listen = &self.listen;
        let ports = [listen.sstp.port(), listen.http.port(), listen.admin.port()];
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        ensure(distinct.len() == ports.len(), "listen", || {
            format!("the sstp, http and admin ports must differ, found {ports:?}")
        })
    }

    fn check_hostnames(&self) -> Result<(), ConfigError> {
        ensure(!self.hostnames.is_empty(), "hostnames", || {
            "at least one hostname is needed".into()
        })?;
        for (index, name) in self.hostnames.iter().enumerate() {
            ensure(is_hostname(name), &format!("hostnames[{index}]"), || {
                format!("{name:?} is neither a DNS name nor an IP address")
            })?;
        }
        Ok(())
    }

    fn check_network(&self) -> Result<(), ConfigError> {
        let pool = self.address_pool;
        ensure(pool.prefix_len() <= MAX_POOL_PREFIX, "addressPool", || {
            format!(
                "{pool} is too small: a /{MAX_POOL_PREFIX} or larger holds the gateway and a client"
            )
        })?;
        ensure(pool.addr() == pool.network(), "addressPool", || {
            format!("{pool} has host bits set; did you mean {}?", pool.trunc())
        })?;
        ensure(self.dns.len() <= 2, "dns", || {
            "IPCP offers at most two DNS servers (primary and secondary, RFC 1877)".into()
        })?;
        for (index, route) in self.routes.iter().enumerate() {
            ensure(
                route.addr() == route.network(),
                &format!("routes[{index}]"),
                || format!("{route} has host bits set; did you mean {}?", route.trunc()),
            )?;
        }
        let mut seen = HashSet::new();
        for method in &self.auth.methods {
            ensure(seen.insert(method), "auth.methods", || {
                format!("{method:?} is listed twice")
            })?;
        }
        ensure(!self.auth.methods.is_empty(), "auth.methods", || {
            "at least one method is needed".into()
        })
    }

    fn check_proxy(&self) -> Result<(), ConfigError> {
        if self.proxy_protocol {
            ensure(!self.trusted_proxies.is_empty(), "trustedProxies", || {
                "proxyProtocol needs the load balancers' CIDRs: a PROXY header from anyone else \
                 would let a client claim any address"
                    .into()
            })
        } else {
            ensure(self.trusted_proxies.is_empty(), "trustedProxies", || {
                "trustedProxies has no effect without proxyProtocol".into()
            })
        }
    }

    fn check_sources(&self) -> Result<(), ConfigError> {
        match &self.tls {
            TlsConfig::SelfManaged { data_dir } => {
                ensure(
                    !data_dir.as_os_str().is_empty(),
                    "tls.selfManaged.dataDir",
                    empty,
                )?;
            }
            TlsConfig::Files(files) => {
                ensure(
                    !files.cert_file.as_os_str().is_empty(),
                    "tls.files.certFile",
                    empty,
                )?;
                ensure(
                    !files.key_file.as_os_str().is_empty(),
                    "tls.files.keyFile",
                    empty,
                )?;
            }
        }
        match &self.users {
            UsersSource::File { path } => {
                ensure(!path.as_os_str().is_empty(), "users.file.path", empty)
            }
            UsersSource::KubernetesSecret {
                name,
                key,
                namespace,
            } => {
                ensure(!name.is_empty(), "users.kubernetesSecret.name", empty)?;
                ensure(!key.is_empty(), "users.kubernetesSecret.key", empty)?;
                ensure(
                    namespace.as_ref().is_none_or(|ns| !ns.is_empty()),
                    "users.kubernetesSecret.namespace",
                    empty,
                )
            }
        }
    }

    fn check_tun(&self) -> Result<(), ConfigError> {
        let name = &self.tun.name;
        ensure(
            !name.is_empty()
                && name.len() <= MAX_IFNAME_BYTES
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':'),
            "tun.name",
            || {
                format!(
                    "{name:?} is not a Linux interface name (1-15 printable ASCII, no '/' or ':')"
                )
            },
        )?;
        let mtu = self.tun.mtu;
        ensure((MIN_MTU..=MAX_MTU).contains(&mtu), "tun.mtu", || {
            format!("{mtu} is outside {MIN_MTU}..={MAX_MTU}")
        })?;
        let queues = self.tun.queues;
        ensure(queues <= MAX_TUN_QUEUES, "tun.queues", || {
            format!("{queues} is more than {MAX_TUN_QUEUES} (0 means one per CPU)")
        })
    }
}

fn check_limits(limits: &Limits) -> Result<(), ConfigError> {
    let positive = [
        ("limits.maxSessions", u64::from(limits.max_sessions)),
        (
            "limits.maxPendingConnections",
            u64::from(limits.max_pending_connections),
        ),
        (
            "limits.writeStallTimeoutSeconds",
            limits.write_stall_timeout_seconds,
        ),
        (
            "limits.maxSessionsPerUser",
            u64::from(limits.max_sessions_per_user),
        ),
        (
            "limits.handshakeTimeoutSeconds",
            limits.handshake_timeout_seconds,
        ),
        (
            "limits.preambleTimeoutSeconds",
            limits.preamble_timeout_seconds,
        ),
        (
            "limits.negotiationTimeoutSeconds",
            limits.negotiation_timeout_seconds,
        ),
        (
            "limits.maxConnectionsPerSource",
            u64::from(limits.max_connections_per_source),
        ),
        (
            "limits.authFailures.maxFailures",
            u64::from(limits.auth_failures.max_failures),
        ),
        (
            "limits.authFailures.windowSeconds",
            limits.auth_failures.window_seconds,
        ),
        (
            "limits.authFailures.blockSeconds",
            limits.auth_failures.block_seconds,
        ),
        (
            "limits.idleTimeoutSeconds",
            limits.idle_timeout_seconds.unwrap_or(1),
        ),
    ];
    for (field, value) in positive {
        ensure(value > 0, field, || "must be at least 1".into())?;
    }
    let backlog = limits.listen_backlog;
    ensure(
        (1..=super::MAX_LISTEN_BACKLOG).contains(&backlog),
        "limits.listenBacklog",
        || format!("{backlog} is outside 1..={}", super::MAX_LISTEN_BACKLOG),
    )
}

/// A DNS name (optionally a leading `*.` wildcard), or an IP address.
fn is_hostname(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_DNS_NAME_BYTES
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_DNS_LABEL_BYTES
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn ensure(ok: bool, field: &str, problem: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field: field.to_owned(),
            problem: problem(),
        })
    }
}

fn empty() -> String {
    "must not be empty".into()
}

/// A /30 holds network, gateway, one client and broadcast.
const MAX_POOL_PREFIX: u8 = 30;
/// IFNAMSIZ (16) minus the terminating NUL.
const MAX_IFNAME_BYTES: usize = 15;
/// The IPv4 minimum datagram every host must accept (RFC 791).
const MIN_MTU: u16 = 576;
/// The largest MRU SSTP can carry (4091, MS-SSTP §3.1.5.2) minus the 4-byte PPP header.
const MAX_MTU: u16 = 4087;
/// RFC 1035 §2.3.4.
const MAX_DNS_NAME_BYTES: usize = 253;
/// RFC 1035 §2.3.4.
const MAX_DNS_LABEL_BYTES: usize = 63;
