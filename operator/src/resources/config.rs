//! ConfigMap `<gw>-config`: the gateway configuration file (`config.json`, schema in
//! `sstp_api::gateway_config`) rendered from the gateway's spec.

use k8s_openapi::api::core::v1::ConfigMap;
use sstp_api::{
    SstpGateway,
    gateway::AuthMethodName,
    gateway_config::{
        AuthConfig, AuthMethod, DrainConfig, GatewayConfig, Limits, ListenConfig, TlsConfig,
        TlsFiles, TunConfig, UsersSource,
    },
};

use super::Owner;
use crate::{Error, Result};

/// Where the pod mounts ConfigMap `<gw>-config`.
pub const CONFIG_DIR: &str = "/etc/sstp-gateway/config";
/// The file name of the configuration inside the ConfigMap and the mount.
pub const CONFIG_FILE: &str = "config.json";
/// Where the pod mounts Secret `<gw>-tls`.
pub const TLS_DIR: &str = "/etc/sstp-gateway/tls";
/// Keys of the TLS Secret (the `kubernetes.io/tls` ones plus the CA certificate and CRL).
pub mod tls_keys {
    /// Full chain, leaf first (PEM).
    pub const CERT: &str = "tls.crt";
    /// Leaf key (PEM).
    pub const KEY: &str = "tls.key";
    /// CA certificate clients import (PEM), served at `/sstp/ca.crt`.
    pub const CA: &str = "ca.crt";
    /// CRL (DER), served at `/sstp/ca.crl`.
    pub const CRL: &str = "ca.crl";
}
/// Key of the users document in Secret `<gw>-users`.
pub const USERS_KEY: &str = "users.json";

/// Which optional files the TLS Secret carries (decided by the certificate mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsExtras {
    /// `ca.crt` is present.
    pub ca: bool,
    /// `ca.crl` is present.
    pub crl: bool,
}

/// The gateway configuration for `gateway`, validated by the same code the gateway runs.
pub fn gateway_config(
    gateway: &SstpGateway,
    owner: &Owner,
    extras: TlsExtras,
) -> Result<GatewayConfig> {
    let spec = &gateway.spec;
    let invalid = |problem: String| Error::Render {
        what: "gateway config",
        problem,
    };
    let address_pool = spec
        .address_pool
        .parse()
        .map_err(|err| invalid(format!("addressPool: {err}")))?;
    let dns = parse_all(&spec.dns, "dns").map_err(invalid)?;
    let routes = parse_all(&spec.routes, "routes").map_err(invalid)?;
    let path = |file: &str| format!("{TLS_DIR}/{file}").into();
    let config = GatewayConfig {
        listen: ListenConfig::default(),
        hostnames: spec.hostnames.clone(),
        tls: TlsConfig::Files(TlsFiles {
            cert_file: path(tls_keys::CERT),
            key_file: path(tls_keys::KEY),
            ca_file: extras.ca.then(|| path(tls_keys::CA)),
            crl_file: extras.crl.then(|| path(tls_keys::CRL)),
        }),
        address_pool,
        dns,
        routes,
        nat: spec.nat,
        auth: AuthConfig {
            methods: spec
                .auth
                .methods
                .iter()
                .map(|method| match method {
                    AuthMethodName::Mschapv2 => AuthMethod::Mschapv2,
                    AuthMethodName::Pap => AuthMethod::Pap,
                })
                .collect(),
        },
        limits: limits(gateway),
        proxy_protocol: spec.proxy_protocol,
        trusted_proxies: parse_all(&spec.trusted_proxies, "trustedProxies").map_err(invalid)?,
        users: UsersSource::KubernetesSecret {
            name: owner.names.users.clone(),
            namespace: Some(owner.namespace.clone()),
            key: USERS_KEY.to_owned(),
        },
        tun: TunConfig::default(),
        drain: DrainConfig {
            grace_period_seconds: u64::try_from(spec.drain.grace_period_seconds())
                .unwrap_or(DrainConfig::DEFAULT_GRACE_PERIOD_SECONDS),
            disconnect_delay_seconds: u64::try_from(spec.drain.disconnect_delay_seconds())
                .unwrap_or(0),
        },
    };
    config.validate().map_err(|err| invalid(err.to_string()))?;
    Ok(config)
}

/// ConfigMap `<gw>-config` holding `config.json`.
pub fn config_map(owner: &Owner, config: &GatewayConfig) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(&owner.names.config),
        data: Some([(CONFIG_FILE.to_owned(), config.to_json_pretty())].into()),
        ..ConfigMap::default()
    }
}

fn limits(gateway: &SstpGateway) -> Limits {
    let spec = &gateway.spec.limits;
    let mut limits = Limits::default();
    let positive_u32 = |value: Option<i32>| value.and_then(|v| u32::try_from(v).ok());
    let positive_u64 = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok());
    if let Some(max) = positive_u32(spec.max_sessions) {
        limits.max_sessions = max;
    }
    if let Some(max) = positive_u32(spec.max_pending_connections) {
        limits.max_pending_connections = max;
    }
    if let Some(max) = positive_u32(spec.max_connections_per_source) {
        limits.max_connections_per_source = max;
    }
    if let Some(max) = positive_u32(spec.max_sessions_per_user) {
        limits.max_sessions_per_user = max;
    }
    limits.idle_timeout_seconds = positive_u64(spec.idle_timeout_seconds);
    if let Some(max) = positive_u32(spec.auth_failure_limit) {
        limits.auth_failures.max_failures = max;
    }
    if let Some(window) = positive_u64(spec.auth_failure_window_seconds) {
        limits.auth_failures.window_seconds = window;
    }
    if let Some(block) = positive_u64(spec.auth_failure_block_seconds) {
        limits.auth_failures.block_seconds = block;
    }
    if let Some(backlog) = positive_u32(spec.listen_backlog) {
        limits.listen_backlog = backlog;
    }
    limits
}

fn parse_all<T: std::str::FromStr>(items: &[String], field: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.parse()
                .map_err(|err| format!("{field}[{index}] {item:?}: {err}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn the_rendered_config_parses_back_and_points_at_the_mounted_secret_files() {
        let gateway = fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.9.0.0/24",
            "dns": ["1.1.1.1"], "routes": ["192.168.0.0/16"], "nat": false,
            "auth": {"methods": ["mschapv2", "pap"]},
            "limits": {"maxSessions": 7, "idleTimeoutSeconds": 60, "listenBacklog": 8192}
        }));
        let owner = Owner::of(&gateway).unwrap();
        let config = gateway_config(
            &gateway,
            &owner,
            TlsExtras {
                ca: true,
                crl: true,
            },
        )
        .unwrap();
        let map = config_map(&owner, &config);
        let text = &map.data.unwrap()[CONFIG_FILE];
        let parsed = GatewayConfig::from_json(text).unwrap();
        assert_eq!(parsed, config);
        assert_eq!(parsed.limits.max_sessions, 7);
        assert_eq!(parsed.limits.listen_backlog, 8192);
        assert_eq!(
            parsed.auth.methods,
            vec![AuthMethod::Mschapv2, AuthMethod::Pap]
        );
        assert!(!parsed.nat);
        let TlsConfig::Files(files) = parsed.tls else {
            panic!("files expected")
        };
        assert_eq!(
            files.cert_file.to_str(),
            Some("/etc/sstp-gateway/tls/tls.crt")
        );
        assert_eq!(
            files.crl_file.unwrap().to_str(),
            Some("/etc/sstp-gateway/tls/ca.crl")
        );
        assert_eq!(
            parsed.users,
            UsersSource::KubernetesSecret {
                name: "gw-users".into(),
                namespace: Some("ns".into()),
                key: "users.json".into()
            }
        );
    }

    #[test]
    fn the_drain_settings_reach_the_gateway_and_the_pod_with_their_defaults() {
        let extras = TlsExtras {
            ca: false,
            crl: false,
        };
        let gateway = fixtures::minimal();
        let owner = Owner::of(&gateway).unwrap();
        let config = gateway_config(&gateway, &owner, extras).unwrap();
        assert_eq!(
            config.drain,
            DrainConfig {
                grace_period_seconds: 30,
                disconnect_delay_seconds: 2
            }
        );
        let pod = super::super::deployment::deployment(
            &gateway,
            &owner,
            &super::super::deployment::PodInputs {
                default_image: "img",
                default_pull_policy: None,
                config_json: "{}",
            },
        )
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(30));

        let gateway = fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.9.0.0/24",
            "drain": {"gracePeriodSeconds": 120, "disconnectDelaySeconds": 10}
        }));
        let owner = Owner::of(&gateway).unwrap();
        let config = gateway_config(&gateway, &owner, extras).unwrap();
        assert_eq!(config.drain.grace_period_seconds, 120);
        assert_eq!(
            config.drain.disconnect_delay(),
            std::time::Duration::from_secs(10)
        );
        // The sessions get what is left, less the exit's own margin.
        assert_eq!(
            config.drain.disconnect_wait(),
            std::time::Duration::from_secs(108)
        );
    }

    #[test]
    fn without_ca_files_the_config_names_none() {
        let gateway = fixtures::minimal();
        let owner = Owner::of(&gateway).unwrap();
        let config = gateway_config(
            &gateway,
            &owner,
            TlsExtras {
                ca: false,
                crl: false,
            },
        )
        .unwrap();
        let TlsConfig::Files(files) = config.tls else {
            panic!("files expected")
        };
        assert_eq!((files.ca_file, files.crl_file), (None, None));
    }
}
