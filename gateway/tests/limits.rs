//! Limits and user attributes: per-user sessions, static addresses, disable and expiry, idle
//! timeout, connection caps (total, per source, per PROXY-protocol source).
//! Run as root: `cargo test -p sstp-gateway --test limits`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::{USERS, in_new_netns, metric, ping, replace_file, runtime, start, users_document};
use sstp_gateway::client::Client;
use sstp_proto::CloseReason;

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
    in_new_netns("max_per_user", || {
        runtime().block_on(async {
            let h = start("maxperuser", |_| {}).await;
            let reloads = r#"sstp_users_reload_total{result="success"}"#;
            let before = metric(&h.scrape().await, reloads);
            assert_eq!(
                before, 1.0,
                "the users file is loaded (and counted) once at start-up"
            );
            let mut doc = users_document(&USERS);
            doc.users.get_mut("alice").unwrap().max_sessions = Some(1);
            replace_file(&h.users_file, doc.to_json_pretty().as_bytes());
            common::wait_for_metric_at_least(&h, reloads, before + 1.0).await;
            let (mut first, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            // Told at authentication, not after a Success: what Windows shows as error 649.
            let message = auth_refusal(h.options(USERS[0].0, USERS[0].1)).await;
            assert_refusal(&message, "Too many sessions for this user");
            let text = h.scrape().await;
            assert_eq!(
                metric(&text, r#"sstp_auth_failures_total{reason="session_limit"}"#),
                1.0
            );
            ping(&mut first, addr, h.gateway_ip(), 1, b"first session").await;
        });
    });
}

/// Logs in and returns the server's authentication Failure message.
async fn auth_refusal(options: sstp_gateway::client::ClientOptions) -> String {
    let mut client = Client::connect(options).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.wait_up())
        .await
        .expect("refusal in time")
    {
        Err(sstp_gateway::client::ClientError::AuthFailed(message)) => message,
        other => panic!("expected an authentication Failure, got {other:?}"),
    }
}

/// An MS-CHAPv2 Failure (RFC 2759 §6) with ERROR_NO_DIALIN_PERMISSION and `text`.
fn assert_refusal(message: &str, text: &str) {
    assert!(message.starts_with("E=649 R=0 C="), "{message}");
    assert!(message.ends_with(&format!(" V=3 M={text}")), "{message}");
}

#[test]
fn an_exhausted_pool_is_refused_at_authentication_with_its_reason_and_counted() {
    in_new_netns("pool_refusal", || {
        runtime().block_on(async {
            // A /30: the gateway's address and one client address.
            let h = start("poolrefusal", |c| {
                c.address_pool = "10.77.0.0/30".parse().unwrap();
            })
            .await;
            let (mut first, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            let message = auth_refusal(h.options(USERS[1].0, USERS[1].1)).await;
            assert_refusal(&message, "No client address is free on this gateway");
            let text = h.scrape().await;
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_auth_failures_total{reason="address_exhausted"}"#
                ),
                1.0
            );
            // No Success went out, so nothing was established for the refused user.
            assert_eq!(
                metric(&text, r#"sstp_sessions_total{result="established"}"#),
                1.0
            );
            ping(&mut first, addr, h.gateway_ip(), 3, b"still served").await;
        });
    });
}

#[test]
fn a_static_address_goes_to_its_user_and_never_to_anyone_else() {
    in_new_netns("static_address", || {
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
    in_new_netns("disable_expire", || {
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

/// Sessions quiet for longer than the write-stall timeout, then ended by the idle timeout: each
/// gets its CALL_DISCONNECT. (The stall deadline once ran from the last moment with nothing to
/// write, so the disconnect met a deadline already past and the gateway dropped the client as
/// `write_stalled` about one time in two; six sessions make that all but certain to show.)
#[test]
fn idle_sessions_are_ended_after_the_idle_timeout_with_call_disconnect() {
    const SESSIONS: usize = 6;
    in_new_netns("idle", || {
        runtime().block_on(async {
            let h = start("idle", |c| {
                c.limits.idle_timeout_seconds = Some(4);
                c.limits.write_stall_timeout_seconds = 2;
            })
            .await;
            let mut clients = Vec::new();
            for _ in 0..SESSIONS {
                clients.push(h.connect(USERS[2].0, USERS[2].1).await.0);
            }
            for client in &mut clients {
                let reason = tokio::time::timeout(Duration::from_secs(30), client.closed())
                    .await
                    .expect("idle session ended");
                assert_eq!(reason, CloseReason::PeerDisconnected);
            }
            common::wait_for_metric(&h, "sstp_sessions_active", 0.0).await;
            let text = h.scrape().await;
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_sessions_closed_total{reason="write_stalled"}"#
                ),
                0.0
            );
        });
    });
}

/// Holds a TCP connection that never starts TLS (a pending connection) from `source`.
async fn idle_connection(
    to: std::net::SocketAddr,
    source: std::net::IpAddr,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the gateway closes `stream` within 2 s (EOF or reset).
async fn closed_by_gateway(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[test]
fn the_session_cap_answers_503_and_the_per_source_share_counts_only_pending_connections() {
    in_new_netns("caps", || {
        runtime().block_on(async {
            let h = start("caps", |c| {
                c.limits.max_sessions = 3;
                c.limits.max_connections_per_source = 2;
            })
            .await;
            let local = "127.0.0.1".parse().unwrap();
            let other = "127.0.0.2".parse().unwrap();
            let opts = |source| common::from_source(h.options(USERS[2].0, USERS[2].1), source);
            // Established sessions do not count against the per-source share of 2.
            let mut sessions = Vec::new();
            for _ in 0..3 {
                let mut c = Client::connect(opts(local)).await.unwrap();
                c.wait_up().await.unwrap();
                sessions.push(c);
            }
            // maxSessions reached: the HTTP request is answered 503.
            let mut full = Client::connect(opts(other)).await.unwrap();
            let err = full.wait_up().await.unwrap_err();
            assert_eq!(err.to_string(), "the call ended: http_response", "{err:?}");
            assert!(format!("{err:?}").contains("Status(503)"), "{err:?}");
            // The refused connection held one of 127.0.0.2's pending places until the gateway's
            // side of it ended, which on a busy machine can come after the client saw the 503.
            common::wait_for_metric(&h, "sstp_connections_pending", 0.0).await;
            // Two connections that never log in fill 127.0.0.2's share; a third is closed.
            let _a = idle_connection(h.gateway.sstp_addr, other).await;
            let _b = idle_connection(h.gateway.sstp_addr, other).await;
            let mut third = idle_connection(h.gateway.sstp_addr, other).await;
            assert!(closed_by_gateway(&mut third).await);
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
            assert_eq!(metric(&text, "sstp_connections_pending"), 2.0);
            // A session ends: there is room again.
            drop(sessions.pop());
            let mut again = None;
            for _ in 0..50 {
                let mut c = Client::connect(opts(local)).await.unwrap();
                if c.wait_up().await.is_ok() {
                    again = Some(c);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(again.is_some(), "a freed place is taken again");
        });
    });
}

/// A PROXY v1 header naming `client` as the source.
fn v1_header(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 10.0.0.1 40000 443\r\n").into_bytes()
}

#[test]
fn proxy_headers_are_honoured_only_from_trusted_proxies_and_key_the_limits_and_the_throttle() {
    in_new_netns("proxy", || {
        runtime().block_on(async {
            let h = start("proxy", |c| {
                c.proxy_protocol = true;
                c.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
                c.limits.max_connections_per_source = 1;
                c.limits.auth_failures.max_failures = 3;
            })
            .await;
            let balancer = "127.0.0.2".parse().unwrap();
            let stranger = "127.0.0.1".parse().unwrap();
            let via = |source, header: Option<Vec<u8>>, password: &str| {
                let mut options = common::from_source(h.options(USERS[2].0, password), source);
                options.proxy_header = header;
                options
            };
            // From the trusted balancer: v1 and v2 headers are honoured.
            let mut first =
                Client::connect(via(balancer, Some(v1_header("192.0.2.1")), USERS[2].1))
                    .await
                    .unwrap();
            let addr = first.wait_up().await.unwrap();
            let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
            v2.extend_from_slice(&[192, 0, 2, 2, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
            let mut second = Client::connect(via(balancer, Some(v2), USERS[2].1))
                .await
                .unwrap();
            second.wait_up().await.unwrap();
            ping(&mut first, addr, h.gateway_ip(), 4, b"behind a balancer").await;

            // The per-source share is the header's client: one pending connection from
            // 192.0.2.9 (header sent, no TLS) fills it; the next one claiming it is closed.
            let pending = tokio::net::TcpSocket::new_v4().unwrap();
            pending
                .bind(std::net::SocketAddr::new(balancer, 0))
                .unwrap();
            let mut pending = pending.connect(h.gateway.sstp_addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut pending, &v1_header("192.0.2.9"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            refused(via(balancer, Some(v1_header("192.0.2.9")), USERS[2].1)).await;
            assert_eq!(
                metric(
                    &h.scrape().await,
                    r#"sstp_connections_rejected_total{reason="per_source_limit"}"#
                ),
                1.0
            );
            drop(pending);
            // With a share of one, each attempt waits until the last one's connection is gone.
            let settled = || common::wait_for_metric(&h, "sstp_connections_pending", 0.0);
            settled().await;

            // The throttle is keyed on the header's client: three wrong passwords from
            // 192.0.2.3 block it, the right password from there is refused, another client is not.
            for _ in 0..3 {
                refused(via(balancer, Some(v1_header("192.0.2.3")), "wrong")).await;
                settled().await;
            }
            refused(via(balancer, Some(v1_header("192.0.2.3")), USERS[2].1)).await;
            settled().await;
            let mut other =
                Client::connect(via(balancer, Some(v1_header("192.0.2.4")), USERS[2].1))
                    .await
                    .unwrap();
            other.wait_up().await.unwrap();
            let text = h.scrape().await;
            assert_eq!(
                metric(&text, r#"sstp_auth_failures_total{reason="throttled"}"#),
                1.0
            );

            // A peer outside trustedProxies that sends headers is refused, whatever it claims,
            // so cycling claimed addresses gets no guess past the throttle of its real address.
            for n in 10..20 {
                refused(via(
                    stranger,
                    Some(v1_header(&format!("192.0.2.{n}"))),
                    "wrong",
                ))
                .await;
                settled().await;
            }
            assert_eq!(
                metric(
                    &h.scrape().await,
                    r#"sstp_connections_rejected_total{reason="untrusted_proxy_header"}"#
                ),
                10.0
            );
            // The same peer without a header is a direct client at its own address: its wrong
            // passwords are throttled there.
            for _ in 0..3 {
                refused(via(stranger, None, "wrong")).await;
                settled().await;
            }
            refused(via(stranger, None, USERS[2].1)).await;
            assert_eq!(
                metric(
                    &h.scrape().await,
                    r#"sstp_auth_failures_total{reason="throttled"}"#
                ),
                2.0
            );
        });
    });
}
