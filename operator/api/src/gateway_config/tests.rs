use std::net::Ipv4Addr;

use super::*;

const MINIMAL: &str = r#"{ "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24" }"#;

fn with(extra: &str) -> String {
    format!(r#"{{ "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", {extra} }}"#)
}

fn invalid_field(text: &str) -> String {
    match GatewayConfig::from_json(text) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn a_minimal_file_gets_every_default() {
    let config = GatewayConfig::from_json(MINIMAL).unwrap();
    assert_eq!(config.listen.sstp.port(), 443);
    assert_eq!(config.listen.http.port(), 80);
    assert_eq!(config.listen.admin.port(), 9090);
    assert!(config.nat);
    assert!(!config.proxy_protocol);
    assert_eq!(config.auth.methods, vec![AuthMethod::Mschapv2]);
    assert_eq!(
        config.tun,
        TunConfig {
            name: "sstp0".into(),
            mtu: 1400,
            offload: true,
            queues: 0,
        }
    );
    assert_eq!(
        config.tls,
        TlsConfig::SelfManaged {
            data_dir: DEFAULT_PKI_DIR.into()
        }
    );
    assert_eq!(
        config.users,
        UsersSource::File {
            path: DEFAULT_USERS_FILE.into()
        }
    );
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.gateway_address(), Ipv4Addr::new(10, 8, 0, 1));
}

#[test]
fn a_full_file_round_trips() {
    let text = with(
        r#""listen": {"sstp": "127.0.0.1:8443", "http": "127.0.0.1:8080", "admin": "127.0.0.1:9091"},
        "tls": {"files": {"certFile": "/tls/tls.crt", "keyFile": "/tls/tls.key", "caFile": "/ca/ca.crt"}},
        "dns": ["1.1.1.1", "9.9.9.9"], "routes": ["192.168.0.0/16"], "nat": false,
        "auth": {"methods": ["mschapv2", "pap"]},
        "limits": {"maxSessions": 10, "idleTimeoutSeconds": 600, "authFailures": {"maxFailures": 3}},
        "proxyProtocol": true, "trustedProxies": ["10.0.0.0/8", "2001:db8::/32"],
        "users": {"kubernetesSecret": {"name": "gw-users"}},
        "tun": {"name": "tun7", "mtu": 1380, "offload": false, "queues": 2}"#,
    );
    let config = GatewayConfig::from_json(&text).unwrap();
    assert_eq!(config.limits.max_sessions, 10);
    assert!(!config.tun.offload);
    assert_eq!(config.tun.queues, 2);
    assert_eq!(
        config.limits.max_sessions_per_user, 4,
        "unset limits keep their defaults"
    );
    assert_eq!(config.limits.auth_failures.window_seconds, 60);
    assert_eq!(
        config.limits.idle_timeout(),
        Some(std::time::Duration::from_secs(600))
    );
    let UsersSource::KubernetesSecret { key, namespace, .. } = &config.users else {
        panic!()
    };
    assert_eq!((key.as_str(), namespace), ("users.json", &None));
    assert_eq!(
        GatewayConfig::from_json(&config.to_json_pretty()).unwrap(),
        config
    );
}

#[test]
fn a_typo_in_a_key_names_the_key_line_and_column() {
    let text = "{\n  \"hostnames\": [\"a.example\"],\n  \"addressPool\": \"10.8.0.0/24\",\n  \"limits\": {\"maxSesions\": 3}\n}";
    let err = GatewayConfig::from_json(text).unwrap_err();
    let ConfigError::Syntax { position, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(position.line, 4);
    assert!(message.contains("unknown field `maxSesions`"), "{message}");
}

#[test]
fn two_tls_sources_at_once_are_refused() {
    let text = with(
        r#""tls": {"selfManaged": {"dataDir": "/x"}, "files": {"certFile": "a", "keyFile": "b"}}"#,
    );
    assert!(matches!(
        GatewayConfig::from_json(&text),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn missing_hostnames_or_pool_are_syntax_errors() {
    assert!(matches!(
        GatewayConfig::from_json(r#"{"addressPool": "10.8.0.0/24"}"#),
        Err(ConfigError::Syntax { .. })
    ));
    assert!(matches!(
        GatewayConfig::from_json(r#"{"hostnames": ["a"]}"#),
        Err(ConfigError::Syntax { .. })
    ));
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (
            r#""hostnames": [], "addressPool": "10.8.0.0/24""#,
            "hostnames",
        ),
        (
            r#""hostnames": ["ok.example", "bad name"], "addressPool": "10.8.0.0/24""#,
            "hostnames[1]",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.0/31""#,
            "addressPool",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.7/24""#,
            "addressPool",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.0/24", "proxyProtocol": true"#,
            "trustedProxies",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.0/24", "trustedProxies": ["10.0.0.0/8"]"#,
            "trustedProxies",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.0/24", "limits": {"maxPendingConnections": 0}"#,
            "limits.maxPendingConnections",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.0/24", "limits": {"listenBacklog": 0}"#,
            "limits.listenBacklog",
        ),
        (
            r#""hostnames": ["a.example"], "addressPool": "10.8.0.0/24", "limits": {"listenBacklog": 65536}"#,
            "limits.listenBacklog",
        ),
    ];
    for (body, field) in cases {
        assert_eq!(invalid_field(&format!("{{{body}}}")), field, "{body}");
    }
    let cases = [
        (r#""dns": ["1.1.1.1", "1.0.0.1", "8.8.8.8"]"#, "dns"),
        (r#""routes": ["192.168.1.1/16"]"#, "routes[0]"),
        (r#""auth": {"methods": []}"#, "auth.methods"),
        (r#""auth": {"methods": ["pap", "pap"]}"#, "auth.methods"),
        (r#""limits": {"maxSessions": 0}"#, "limits.maxSessions"),
        (
            r#""limits": {"idleTimeoutSeconds": 0}"#,
            "limits.idleTimeoutSeconds",
        ),
        (
            r#""limits": {"authFailures": {"blockSeconds": 0}}"#,
            "limits.authFailures.blockSeconds",
        ),
        (r#""tun": {"name": "a-very-long-ifname"}"#, "tun.name"),
        (r#""tun": {"name": "tun/0"}"#, "tun.name"),
        (r#""tun": {"mtu": 100}"#, "tun.mtu"),
        (r#""tun": {"mtu": 9000}"#, "tun.mtu"),
        (r#""tun": {"queues": 65}"#, "tun.queues"),
        (r#""listen": {"http": "0.0.0.0:9090"}"#, "listen"),
        (
            r#""users": {"kubernetesSecret": {"name": ""}}"#,
            "users.kubernetesSecret.name",
        ),
        (
            r#""tls": {"files": {"certFile": "", "keyFile": "k"}}"#,
            "tls.files.certFile",
        ),
    ];
    for (extra, field) in cases {
        assert_eq!(invalid_field(&with(extra)), field, "{extra}");
    }
}

#[test]
fn hostnames_may_be_ips_wildcards_or_fully_qualified() {
    let text = r#"{"hostnames": ["203.0.113.7", "*.vpn.example.com", "vpn.example.com.", "::1"],
                   "addressPool": "10.8.0.0/30"}"#;
    let config = GatewayConfig::from_json(text).unwrap();
    assert_eq!(config.gateway_address(), Ipv4Addr::new(10, 8, 0, 1));
}

#[test]
fn an_unknown_auth_method_is_refused() {
    let err = GatewayConfig::from_json(&with(r#""auth": {"methods": ["chap"]}"#)).unwrap_err();
    assert!(err.to_string().contains("unknown variant `chap`"), "{err}");
}

#[test]
fn the_schema_covers_nested_sections() {
    let schema = serde_json::to_string(&GatewayConfig::json_schema()).unwrap();
    for field in [
        "addressPool",
        "maxConnectionsPerSource",
        "selfManaged",
        "kubernetesSecret",
    ] {
        assert!(schema.contains(field), "{field} missing");
    }
}

#[test]
fn a_drain_never_outlasts_its_grace_period() {
    use std::time::Duration;
    let drain = |grace, delay| DrainConfig {
        grace_period_seconds: grace,
        disconnect_delay_seconds: delay,
    };
    // Standalone default: disconnect at once, 28 s for the sessions, 2 s to exit.
    assert_eq!(DrainConfig::default().disconnect_delay(), Duration::ZERO);
    assert_eq!(
        DrainConfig::default().disconnect_wait(),
        Duration::from_secs(28)
    );
    assert_eq!(drain(30, 2).disconnect_wait(), Duration::from_secs(26));
    // A delay past the grace period is cut to it; the sessions still get a second.
    assert_eq!(drain(10, 60).disconnect_delay(), Duration::from_secs(8));
    assert_eq!(drain(10, 60).disconnect_wait(), Duration::from_secs(1));
    assert_eq!(drain(0, 0).disconnect_wait(), Duration::from_secs(1));
    // Written without it, a config gets the default.
    let config =
        GatewayConfig::from_json(r#"{"hostnames": ["a"], "addressPool": "10.0.0.0/24"}"#).unwrap();
    assert_eq!(config.drain, DrainConfig::default());
}
