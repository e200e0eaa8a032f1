//! Limits and user attributes: per-user sessions, static addresses, disable and expiry, idle
//! timeout, connection caps (total, per source, per PROXY-protocol source).
//! Run as root: `cargo test -p sstp-gateway --test limits`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::{USERS, in_netns, metric, ping, replace_file, runtime, start, users_document};
use sstp_gateway::client::Client;

/// Connects and expects the call to fail (refused at TCP/TLS or closed during setup).
async fn refused(options: sstp_gateway::client::ClientOptions) {
    match Client::connect(options).await {
        Err(_) => {}
        Ok(mut client) => {
            let result = tokio::time::timeout(Duration::from_secs(10), client.wait_up())
                .await
                .expect("refusal in time");
            assert!(result.is_err(), "connected: {result:?}");
        }
    }
}

#[test]
fn a_users_max_sessions_refuses_the_extra_session_and_counts_it() {
    in_netns("max_per_user", || {
        runtime().block_on(async {
            let h = start("maxperuser", |_| {}).await;
            let reloads = r#"sstp_users_reload_total{result="success"}"#;
            let before = metric(&h.scrape().await, reloads);
            let mut doc = users_document(&USERS);
            doc.users.get_mut("alice").unwrap().max_sessions = Some(1);
            replace_file(&h.users_file, doc.to_json_pretty().as_bytes());
            common::wait_for_metric_at_least(&h, reloads, before + 1.0).await;
            let (mut first, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            refused(h.options(USERS[0].0, USERS[0].1)).await;
            let text = h.scrape().await;
            assert_eq!(
                metric(&text, r#"sstp_auth_failures_total{reason="session_limit"}"#),
                1.0
            );
            ping(&mut first, addr, h.gateway_ip(), 1, b"first session").await;
        });
    });
}

#[test]
fn a_static_address_goes_to_its_user_and_never_to_anyone_else() {
    in_netns("static_address", || {
        runtime().block_on(async {
            let h = start("static", |_| {}).await;
            let fixed = Ipv4Addr::new(10, 77, 0, 2);
            let mut doc = users_document(&USERS);
            doc.users.get_mut("alice").unwrap().static_address = Some(fixed);
            replace_file(&h.users_file, doc.to_json_pretty().as_bytes());
            common::wait_for_metric(&h, r#"sstp_address_pool_addresses{state="reserved"}"#, 1.0)
                .await;
            // 10.77.0.2 is the first dynamic candidate: the others must skip it.
            let mut others = Vec::new();
            for _ in 0..3 {
                let (client, addr) = h.connect(USERS[2].0, USERS[2].1).await;
                assert_ne!(addr, fixed);
                others.push(client);
            }
            let (mut alice, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            assert_eq!(addr, fixed);
            ping(&mut alice, addr, h.gateway_ip(), 2, b"static").await;
        });
    });
}

#[test]
fn disabling_a_user_and_reaching_expires_at_end_sessions_and_refuse_logins() {
    in_netns("disable_expire", || {
        runtime().block_on(async {
            let h = start("disexp", |_| {}).await;
            let (mut alice, _) = h.connect(USERS[0].0, USERS[0].1).await;
            let (mut bob, _) = h.connect(USERS[1].0, USERS[1].1).await;
            let mut doc = users_document(&USERS);
            doc.users.get_mut("alice").unwrap().disabled = true;
            let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
            doc.users.get_mut("bob").unwrap().expires_at = Some(soon);
            replace_file(&h.users_file, doc.to_json_pretty().as_bytes());
            tokio::time::timeout(Duration::from_secs(2), alice.closed())
                .await
                .expect("disabled user's session ended within 2 s");
            tokio::time::timeout(Duration::from_secs(5), bob.closed())
                .await
                .expect("expired user's session ended within 2 s of expiry");
            refused(h.options(USERS[0].0, USERS[0].1)).await;
            refused(h.options(USERS[1].0, USERS[1].1)).await;
            let text = h.scrape().await;
            assert_eq!(
                metric(&text, r#"sstp_auth_failures_total{reason="disabled"}"#),
                1.0
            );
            assert_eq!(
                metric(&text, r#"sstp_auth_failures_total{reason="expired"}"#),
                1.0
            );
        });
    });
}

#[test]
fn an_idle_session_is_ended_after_the_idle_timeout() {
    in_netns("idle", || {
        runtime().block_on(async {
            let h = start("idle", |c| c.limits.idle_timeout_seconds = Some(1)).await;
            let (mut client, _) = h.connect(USERS[0].0, USERS[0].1).await;
            tokio::time::timeout(Duration::from_secs(10), client.closed())
                .await
                .expect("idle session ended");
            common::wait_for_metric(&h, "sstp_sessions_active", 0.0).await;
        });
    });
}

#[test]
fn connection_caps_refuse_extra_connections_and_count_them() {
    in_netns("caps", || {
        runtime().block_on(async {
            let h = start("caps", |c| {
                c.limits.max_sessions = 3;
                c.limits.max_connections_per_source = 2;
            })
            .await;
            let local = "127.0.0.1".parse().unwrap();
            let other = "127.0.0.2".parse().unwrap();
            let opts = |source| common::from_source(h.options(USERS[2].0, USERS[2].1), source);
            let (_a, _) = {
                let mut c = Client::connect(opts(local)).await.unwrap();
                let addr = c.wait_up().await.unwrap();
                (c, addr)
            };
            let mut b = Client::connect(opts(local)).await.unwrap();
            b.wait_up().await.unwrap();
            refused(opts(local)).await;
            let mut c = Client::connect(opts(other)).await.unwrap();
            c.wait_up().await.unwrap();
            refused(opts(other)).await;
            let text = h.scrape().await;
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="per_source_limit"}"#
                ),
                1.0
            );
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="max_sessions"}"#
                ),
                1.0
            );
        });
    });
}

#[test]
fn with_proxy_protocol_the_header_source_is_the_client_address() {
    in_netns("proxy", || {
        runtime().block_on(async {
            let h = start("proxy", |c| {
                c.proxy_protocol = true;
                c.limits.max_connections_per_source = 1;
            })
            .await;
            let with_header = |header: &[u8]| {
                let mut options = h.options(USERS[2].0, USERS[2].1);
                options.proxy_header = Some(header.to_vec());
                options
            };
            let v1 = b"PROXY TCP4 192.0.2.1 10.0.0.1 40000 443\r\n";
            let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
            v2.extend_from_slice(&[192, 0, 2, 2, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
            let mut first = Client::connect(with_header(v1)).await.unwrap();
            let addr = first.wait_up().await.unwrap();
            let mut second = Client::connect(with_header(&v2)).await.unwrap();
            second.wait_up().await.unwrap();
            // Same client address as the first (per the header), over the cap of 1.
            refused(with_header(v1)).await;
            assert_eq!(
                metric(
                    &h.scrape().await,
                    r#"sstp_connections_rejected_total{reason="per_source_limit"}"#
                ),
                1.0
            );
            ping(&mut first, addr, h.gateway_ip(), 4, b"behind a balancer").await;
        });
    });
}
