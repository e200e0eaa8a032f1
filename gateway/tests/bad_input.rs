//! Bad input on the SSTP port, one test each: every case must be refused, show up in a metric
//! with its reason, and leave a good session (opened first, pinged last) untouched.
//! Run as root: `cargo test -p sstp-gateway --test bad_input`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{future::Future, sync::Arc, time::Duration};

use common::{Harness, USERS, in_new_netns, metric, ping, runtime, start};
use rustls::pki_types::ServerName;
use sstp_gateway::client::tls_config_with_ca;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// The SSTP request line and headers a real client sends (MS-SSTP §3.2.4.1).
const GOOD_REQUEST: &[u8] =
    b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n\
Host: localhost\r\nContent-Length: 18446744073709551615\r\n\r\n";

/// CALL_CONNECT_REQUEST (MS-SSTP §2.2.9): header (version 1.0, control, length 14), message
/// type 1, one ENCAPSULATED_PROTOCOL_ID attribute (id 1, length 6) with value PPP (1).
const CALL_CONNECT_REQUEST: [u8; 14] = [
    0x10, 0x01, 0x00, 0x0E, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x06, 0x00, 0x01,
];

/// Starts a gateway, opens a good session, runs `attack`, checks `series` went up, and pings
/// through the good session.
fn with_good_session<F, Fut>(test: &'static str, series: &'static [&'static str], attack: F)
where
    F: FnOnce(Arc<Harness>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    in_new_netns(test, move || {
        runtime().block_on(async move {
            let h = Arc::new(start(test, |_| {}).await);
            let (mut good, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            attack(Arc::clone(&h)).await;
            let mut total = 0.0;
            for _ in 0..100 {
                let text = h.scrape().await;
                total = series.iter().map(|s| metric(&text, s)).sum();
                if total >= 1.0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(total >= 1.0, "none of {series:?} counted the bad input");
            ping(&mut good, addr, h.gateway_ip(), 99, b"still serving").await;
            // An attacker's own session may still be closing: wait (bounded) for only the good
            // one to be left, rather than racing its teardown.
            common::wait_for_metric(&h, "sstp_sessions_active", 1.0).await;
        });
    });
}

async fn tls(h: &Harness) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(h.gateway.sstp_addr).await.unwrap();
    let connector = TlsConnector::from(tls_config_with_ca(&h.ca_pem).unwrap());
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until EOF or error, bounded; returns what arrived.
async fn read_to_close(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    out
}

/// Reads the HTTP response head.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed inside the response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn random_bytes_on_the_tls_port_are_refused_and_counted() {
    with_good_session(
        "random_bytes",
        &[
            r#"sstp_connections_rejected_total{reason="tls_handshake_failed"}"#,
            r#"sstp_connections_rejected_total{reason="tls_handshake_timeout"}"#,
        ],
        |h| async move {
            let mut state = 0x9E37_79B9_7F4A_7C15_u64;
            let garbage: Vec<u8> = (0..4096)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let mut tcp = TcpStream::connect(h.gateway.sstp_addr).await.unwrap();
            let _ = tcp.write_all(&garbage).await;
            read_to_close(&mut tcp).await;
        },
    );
}

#[test]
fn a_tls_client_that_stalls_is_dropped_at_the_handshake_deadline() {
    with_good_session(
        "stalled_tls",
        &[r#"sstp_connections_rejected_total{reason="tls_handshake_timeout"}"#],
        |h| async move {
            let mut tcp = TcpStream::connect(h.gateway.sstp_addr).await.unwrap();
            // Half a TLS record header, then nothing.
            tcp.write_all(&[0x16, 0x03]).await.unwrap();
            let rest = read_to_close(&mut tcp).await;
            assert!(
                rest.len() < 100,
                "the server sent a handshake to half a header"
            );
        },
    );
}

#[test]
fn http_with_another_method_gets_an_error_and_is_counted() {
    with_good_session(
        "other_method",
        &[r#"sstp_connections_rejected_total{reason="invalid_preamble"}"#],
        |h| async move {
            let mut stream = tls(&h).await;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let head = read_head(&mut stream).await;
            assert!(head.starts_with("HTTP/1.1 4"), "{head}");
            read_to_close(&mut stream).await;
        },
    );
}

#[test]
fn an_endless_header_is_cut_off_and_counted() {
    with_good_session(
        "endless_header",
        &[
            r#"sstp_connections_rejected_total{reason="invalid_preamble"}"#,
            r#"sstp_connections_rejected_total{reason="preamble_timeout"}"#,
        ],
        |h| async move {
            let mut stream = tls(&h).await;
            let line = b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\nX-Endless: ";
            stream.write_all(line).await.unwrap();
            // Up to 1 MiB of one header; the server must give up long before.
            for _ in 0..256 {
                if stream.write_all(&[b'a'; 4096]).await.is_err() {
                    break;
                }
                if stream.flush().await.is_err() {
                    break;
                }
            }
            read_to_close(&mut stream).await;
        },
    );
}

#[test]
fn malformed_sstp_packets_after_a_good_preamble_end_the_connection_and_are_counted() {
    with_good_session(
        "malformed_sstp",
        &[r#"sstp_sessions_closed_total{reason="framing"}"#],
        |h| async move {
            // Version 2.0 with a length shorter than the header: not SSTP framing.
            let mut stream = tls(&h).await;
            stream.write_all(GOOD_REQUEST).await.unwrap();
            let head = read_head(&mut stream).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            stream
                .write_all(&[0x20, 0x01, 0x00, 0x02, 0xde, 0xad, 0xbe, 0xef])
                .await
                .unwrap();
            read_to_close(&mut stream).await;
            // A well-framed control packet of an unknown message type: aborted.
            let mut stream = tls(&h).await;
            stream.write_all(GOOD_REQUEST).await.unwrap();
            read_head(&mut stream).await;
            stream
                .write_all(&[0x10, 0x01, 0x00, 0x08, 0x7f, 0x7f, 0x00, 0x00])
                .await
                .unwrap();
            let answer = read_to_close(&mut stream).await;
            // CALL_ABORT is message type 5 (MS-SSTP §2.2.4).
            assert_eq!(answer.get(4..6), Some(&[0x00, 0x05][..]), "{answer:02x?}");
            let text = h.scrape().await;
            assert!(
                metric(
                    &text,
                    r#"sstp_sessions_closed_total{reason="invalid_message"}"#
                ) + metric(
                    &text,
                    r#"sstp_sessions_closed_total{reason="unexpected_message"}"#
                ) >= 1.0
            );
        },
    );
}

#[test]
fn a_client_that_never_authenticates_is_dropped_at_the_negotiation_deadline() {
    with_good_session(
        "never_auth",
        &[r#"sstp_sessions_total{result="timeout"}"#],
        |h| async move {
            let mut stream = tls(&h).await;
            stream.write_all(GOOD_REQUEST).await.unwrap();
            read_head(&mut stream).await;
            stream.write_all(&CALL_CONNECT_REQUEST).await.unwrap();
            // Read (and ignore) CALL_CONNECT_ACK and LCP until the server gives up.
            read_to_close(&mut stream).await;
        },
    );
}

#[test]
fn without_the_expected_proxy_header_a_connection_is_refused_and_counted() {
    in_new_netns("proxy_missing", || {
        runtime().block_on(async {
            let h = start("proxymissing", |c| {
                c.proxy_protocol = true;
                c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            })
            .await;
            let mut tcp = TcpStream::connect(h.gateway.sstp_addr).await.unwrap();
            tcp.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
            read_to_close(&mut tcp).await;
            common::wait_for_metric(
                &h,
                r#"sstp_connections_rejected_total{reason="invalid_proxy_header"}"#,
                1.0,
            )
            .await;
        });
    });
}

#[test]
fn packets_with_a_spoofed_source_address_are_dropped_and_counted() {
    with_good_session(
        "spoofed_source",
        &[r#"sstp_client_packets_dropped_total{reason="foreign_source"}"#],
        |h| async move {
            let (mut attacker, own) = h.connect(USERS[1].0, USERS[1].1).await;
            // An address of the pool that no session holds: had the packet reached the kernel,
            // its echo reply would come back to the TUN device and count as `no_route`.
            let spoofed = std::net::Ipv4Addr::new(10, 77, 0, 200);
            assert_ne!(spoofed, own);
            for seq in 1..=3 {
                attacker
                    .send_ip(common::echo_request(
                        spoofed,
                        h.gateway_ip(),
                        7,
                        seq,
                        b"spoof",
                    ))
                    .await
                    .unwrap();
            }
            // The attacker's own session keeps working: dropping the packet is the whole answer.
            ping(&mut attacker, own, h.gateway_ip(), 8, b"own address").await;
            let text = h.scrape().await;
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_tun_packets_dropped_total{reason="no_route"}"#
                ),
                0.0,
                "a spoofed packet reached the kernel"
            );
        },
    );
}
