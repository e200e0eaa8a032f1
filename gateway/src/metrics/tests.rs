use std::time::Duration;

use super::*;

fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn every_metric_of_the_design_is_exported_with_the_prefix() {
    let text = Metrics::new().render();
    for name in [
        "sstp_sessions_active",
        "sstp_sessions_total",
        "sstp_auth_failures_total",
        "sstp_bytes_total",
        "sstp_packets_total",
        "sstp_handshake_duration_seconds_bucket",
        "sstp_address_pool_addresses",
        "sstp_users_loaded",
        "sstp_users_reload_total",
        "sstp_certificate_expiry_timestamp_seconds",
        "sstp_connections_rejected_total",
        "sstp_tun_packets_dropped_total",
        "sstp_ipv4_forwarding",
    ] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} missing from\n{text}"
        );
    }
}

#[test]
fn labelled_series_exist_at_zero_before_anything_happens() {
    let text = Metrics::new().render();
    assert_eq!(
        line_value(&text, r#"sstp_sessions_total{result="timeout"}"#),
        Some(0.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_auth_failures_total{reason="expired"}"#),
        Some(0.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_address_pool_addresses{state="reserved"}"#),
        Some(0.0)
    );
    assert_eq!(
        line_value(
            &text,
            r#"sstp_tun_packets_dropped_total{reason="no_route"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn session_lifecycle_moves_the_gauge_counter_and_histogram() {
    let metrics = Metrics::new();
    metrics.session_established(Duration::from_millis(300));
    metrics.session_established(Duration::from_secs(3));
    metrics.session_closed();
    metrics.session_failed(SessionResult::AuthFailed);
    metrics.auth_failure(AuthFailureReason::BadCredentials);
    metrics.traffic(Direction::ToClient, 2, 3000);
    let text = metrics.render();
    assert_eq!(line_value(&text, "sstp_sessions_active"), Some(1.0));
    assert_eq!(
        line_value(&text, r#"sstp_sessions_total{result="established"}"#),
        Some(2.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_sessions_total{result="auth_failed"}"#),
        Some(1.0)
    );
    assert_eq!(
        line_value(
            &text,
            r#"sstp_auth_failures_total{reason="bad_credentials"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_bytes_total{direction="to_client"}"#),
        Some(3000.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_packets_total{direction="to_client"}"#),
        Some(2.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_handshake_duration_seconds_bucket{le="0.5"}"#),
        Some(1.0)
    );
    assert_eq!(
        line_value(&text, "sstp_handshake_duration_seconds_count"),
        Some(2.0)
    );
}

#[test]
fn pool_users_and_certificate_gauges_show_the_last_value() {
    let metrics = Metrics::new();
    metrics.set_pool(PoolCounts {
        free: 250,
        allocated: 3,
        reserved: 1,
    });
    metrics.users_reloaded(ReloadResult::Success, Some(7));
    metrics.users_reloaded(ReloadResult::Error, None);
    metrics.set_certificate_expiry(1_900_000_000);
    metrics.connection_rejected(RejectReason::PerSourceLimit);
    metrics.tun_packet_dropped(DropReason::QueueFull);
    let text = metrics.render();
    assert_eq!(
        line_value(&text, r#"sstp_address_pool_addresses{state="free"}"#),
        Some(250.0)
    );
    assert_eq!(
        line_value(&text, r#"sstp_address_pool_addresses{state="allocated"}"#),
        Some(3.0)
    );
    assert_eq!(
        line_value(&text, "sstp_users_loaded"),
        Some(7.0),
        "an error keeps the last count"
    );
    assert_eq!(
        line_value(&text, r#"sstp_users_reload_total{result="error"}"#),
        Some(1.0)
    );
    assert_eq!(
        line_value(&text, "sstp_certificate_expiry_timestamp_seconds"),
        Some(1.9e9)
    );
    assert_eq!(
        line_value(
            &text,
            r#"sstp_connections_rejected_total{reason="per_source_limit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        line_value(
            &text,
            r#"sstp_tun_packets_dropped_total{reason="queue_full"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn client_packet_drops_by_reason_and_tun_write_waits_count_from_zero() {
    let metrics = Metrics::new();
    let before = metrics.render();
    let foreign = r#"sstp_client_packets_dropped_total{reason="foreign_source"}"#;
    assert_eq!(
        line_value(&before, foreign),
        Some(0.0),
        "{foreign} starts at zero"
    );
    assert_eq!(
        line_value(&before, "sstp_tun_write_wait_seconds_total"),
        Some(0.0)
    );
    metrics.client_packets_dropped(ClientDropReason::ForeignSource, 1);
    metrics.tun_write_waited(Duration::from_millis(1500));
    metrics.tun_write_waited(Duration::from_millis(500));
    let text = metrics.render();
    assert_eq!(
        line_value(&text, "sstp_tun_write_wait_seconds_total"),
        Some(2.0)
    );
    assert_eq!(
        line_value(
            &text,
            r#"sstp_client_packets_dropped_total{reason="foreign_source"}"#
        ),
        Some(1.0)
    );
}
