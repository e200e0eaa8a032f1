//! The TLS `server_name` a client sends, against the real listener (`tls_sni.rs` reads the
//! ClientHello before rustls does). Run as root: `cargo test -p sstp-gateway --test sni`.
//!
//! - A ClientHello read ahead reaches rustls unchanged, even cut into many records and reads.
//! - `HOST:PORT` as SNI (what `sstpc --tls-ext` sends; here the bytes OpenSSL sends for
//!   `-servername localhost:8443`, the library sstpc uses) is refused by rustls with
//!   `illegal_parameter`, and counted as `invalid_sni`, not as any other failure.
//! - Why the listener does not rewrite such a name for rustls: changing even the case of one
//!   name in the ClientHello breaks the handshake, because both sides hash the ClientHello as the
//!   client sent it into the transcript (RFC 8446 §4.4.1).
#![allow(clippy::unwrap_used)]

mod common;

use std::{error::Error, time::Duration};

use common::{USERS, in_new_netns, metric, ping, runtime, start, wait_for_metric};
use rustls::{ClientConnection, pki_types::ServerName};
use sstp_gateway::client::tls_config_with_ca;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// `openssl s_client -servername localhost:8443` (OpenSSL 3.0), the fuzz target's seed.
const OPENSSL_HOST_PORT_HELLO: &[u8] =
    include_bytes!("../fuzz/corpus/client_hello/openssl_sni_host_port");
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A rustls client handshake with SNI `localhost`, its ClientHello passed through `mangle`
/// (which returns the pieces to write, each in a TCP write of its own, 20 ms apart).
async fn handshake(
    h: &common::Harness,
    mangle: impl FnOnce(Vec<u8>) -> Vec<Vec<u8>>,
) -> Result<ClientConnection, Box<dyn Error>> {
    let config = tls_config_with_ca(&h.ca_pem)?;
    let mut conn = ClientConnection::new(config, ServerName::try_from("localhost")?)?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello)?;
    let mut tcp = TcpStream::connect(h.gateway.sstp_addr).await?;
    for piece in mangle(hello) {
        tcp.write_all(&piece).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut buf = vec![0; 1 << 16];
    loop {
        while conn.wants_write() {
            let mut out = Vec::new();
            conn.write_tls(&mut out)?;
            tcp.write_all(&out).await?;
        }
        if !conn.is_handshaking() {
            return Ok(conn);
        }
        let n = tokio::time::timeout(IO_TIMEOUT, tcp.read(&mut buf)).await??;
        if n == 0 {
            return Err("the gateway closed the connection".into());
        }
        conn.read_tls(&mut &buf[..n])?;
        conn.process_new_packets()?;
    }
}

/// The handshake records of `hello` re-cut into records of at most `size` bytes: the same
/// handshake message (and transcript), more records.
fn recut(hello: &[u8], size: usize) -> Vec<Vec<u8>> {
    let mut message = Vec::new();
    let mut rest = hello;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        message.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    message
        .chunks(size)
        .map(|chunk| {
            let mut record = vec![0x16, 0x03, 0x01];
            record.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
            record.extend_from_slice(chunk);
            record
        })
        .collect()
}

#[test]
fn a_client_hello_cut_into_many_records_and_reads_still_completes_the_handshake() {
    in_new_netns("sni_recut", || {
        runtime().block_on(async {
            let h = start("sni_recut", |_| {}).await;
            // 100-byte records, each in its own TCP write (rustls itself refuses a ClientHello
            // in 16-byte records, with or without the read-ahead).
            let conn = handshake(&h, |hello| recut(&hello, 100)).await.unwrap();
            assert!(!conn.is_handshaking());
            let text = h.scrape().await;
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="tls_handshake_failed"}"#
                ),
                0.0
            );
        });
    });
}

#[test]
fn host_port_sni_is_refused_with_illegal_parameter_and_counted_as_invalid_sni() {
    in_new_netns("sni_host_port", || {
        runtime().block_on(async {
            let h = start("sni_host_port", |_| {}).await;
            let (mut good, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            let mut tcp = TcpStream::connect(h.gateway.sstp_addr).await.unwrap();
            // In two TCP writes, cut inside the server_name extension.
            let (a, b) = OPENSSL_HOST_PORT_HELLO.split_at(150);
            tcp.write_all(a).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            tcp.write_all(b).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(IO_TIMEOUT, tcp.read_to_end(&mut answer))
                .await
                .unwrap()
                .unwrap();
            // One alert record: level fatal (2), description illegal_parameter (47).
            assert_eq!(
                answer.get(..3),
                Some(&[0x15, 0x03, 0x03][..]),
                "{answer:02x?}"
            );
            assert_eq!(answer.get(3..7), Some(&[0x00, 0x02, 0x02, 0x2f][..]));
            wait_for_metric(
                &h,
                r#"sstp_connections_rejected_total{reason="invalid_sni"}"#,
                1.0,
            )
            .await;
            let text = h.scrape().await;
            assert_eq!(
                metric(
                    &text,
                    r#"sstp_connections_rejected_total{reason="tls_handshake_failed"}"#
                ),
                0.0
            );
            ping(&mut good, addr, h.gateway_ip(), 7, b"after a bad SNI").await;
        });
    });
}

#[test]
fn rewriting_the_client_hello_for_rustls_would_break_the_handshake_transcript() {
    in_new_netns("sni_rewrite", || {
        runtime().block_on(async {
            let h = start("sni_rewrite", |_| {}).await;
            // The gentlest rewrite there is: the same name in upper case (DNS names compare
            // without case, so rustls would pick the same certificate).
            let result = handshake(&h, |mut hello| {
                let at = hello
                    .windows(9)
                    .position(|w| w == b"localhost")
                    .expect("the SNI is in the ClientHello");
                hello[at..at + 9].copy_from_slice(b"LOCALHOST");
                vec![hello]
            })
            .await;
            let err = result.expect_err("a rewritten ClientHello must not complete");
            eprintln!("rewritten ClientHello: {err}");
        });
    });
}
