//! The ClientHello's `server_name`, read before rustls sees a connection, so that the handshakes
//! rustls refuses because of that name are explained and counted as such
//! (`sstp_connections_rejected_total{reason="invalid_sni"}`) instead of as any other failure.
//!
//! `sstpc --tls-ext HOST:PORT` (NetworkManager-sstp passes `--tls-ext` too) sends the whole
//! `HOST:PORT` string as SNI. rustls 0.23 answers a name that is neither a DNS name nor an IP
//! address with an `illegal_parameter` alert, and has no setting to ignore it (the option,
//! `InvalidSniPolicy`, exists only in the unreleased rustls 0.24). Rewriting the name before
//! rustls parses the ClientHello does not work either: the ClientHello enters the handshake
//! transcript as the client sent it (RFC 8446 §4.4.1, RFC 5246 §7.4.9), so a server that parsed
//! other bytes derives other keys and the handshake fails at the first encrypted message
//! (`tests/sni.rs` shows it). The bytes therefore go on to rustls unchanged; this module only
//! reads them (`sstp_proto::client_hello`), bounded in size and by the handshake deadline.

use std::{io, net::SocketAddr, time::Instant};

use rustls::pki_types::ServerName;
use sstp_proto::client_hello::{self, Scan};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, trace};

use crate::{
    listener::Prefixed,
    metrics::{Metrics, RejectReason},
};

/// Bytes asked of the socket per read while a ClientHello is incomplete.
const READ_CHUNK: usize = 2048;
/// How much of a refused name goes into the log.
const MAX_LOGGED_NAME: usize = 128;

/// Reads from `stream` until its first bytes are a whole ClientHello (or clearly are not one,
/// or the peer stops sending), then puts every byte read back in front. Also returns the SNI
/// when rustls will refuse it. `None` (already counted) when the peer failed or missed
/// `deadline`.
pub(crate) async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: S,
    deadline: Instant,
    metrics: &Metrics,
    peer: SocketAddr,
) -> Option<(Prefixed<S>, Option<String>)> {
    match tokio::time::timeout_at(deadline.into(), read(stream)).await {
        Ok(Ok(read)) => Some(read),
        Ok(Err(err)) => {
            trace!(%peer, error = %err, "connection failed before the ClientHello was complete");
            metrics.connection_rejected(RejectReason::TlsHandshakeFailed);
            None
        }
        Err(_) => {
            trace!(%peer, "TLS handshake deadline passed before the ClientHello was complete");
            metrics.connection_rejected(RejectReason::TlsHandshakeTimeout);
            None
        }
    }
}

/// Counts (and explains) a failed handshake: `refused_sni` from [`read_client_hello`].
pub(crate) fn handshake_failed(
    metrics: &Metrics,
    source: SocketAddr,
    err: &io::Error,
    refused_sni: Option<&str>,
) {
    match refused_sni {
        Some(name) => {
            debug!(
                %source,
                server_name = name,
                host = %String::from_utf8_lossy(client_hello::host_part(name.as_bytes())),
                error = %err,
                "TLS handshake refused: the client's server_name is not a DNS name \
                 (sstpc --tls-ext with HOST:PORT? leave out --tls-ext, or serve on port 443)"
            );
            metrics.connection_rejected(RejectReason::InvalidSni);
        }
        None => {
            trace!(%source, error = %err, "TLS handshake failed");
            metrics.connection_rejected(RejectReason::TlsHandshakeFailed);
        }
    }
}

async fn read<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<(Prefixed<S>, Option<String>)> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let refused = loop {
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let n = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            // rustls gets the same end of stream and reports it.
            break None;
        }
        match client_hello::scan(&buf) {
            Scan::NeedMore => {}
            Scan::NotHello => break None,
            Scan::Hello(hello) => break hello.server_name.as_deref().and_then(refused_by_rustls),
        }
    };
    Ok((Prefixed::new(stream, buf), refused))
}

/// The name, printable and bounded, if rustls refuses it: neither a DNS name nor an IP address
/// (rustls ignores an IP address in SNI, RFC 6066 forbids it).
fn refused_by_rustls(name: &[u8]) -> Option<String> {
    if ServerName::try_from(name).is_ok() {
        return None;
    }
    let text = String::from_utf8_lossy(name);
    Some(
        text.chars()
            .take(MAX_LOGGED_NAME)
            .flat_map(char::escape_debug)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_rustls_accepts_are_not_reported() {
        for name in [
            &b"localhost"[..],
            b"gw.example.com",
            b"10.0.2.2",
            b"2001:db8::1",
        ] {
            assert_eq!(refused_by_rustls(name), None, "{name:?}");
        }
    }

    #[test]
    fn host_port_and_urls_are_reported_printable_and_bounded() {
        assert_eq!(
            refused_by_rustls(b"localhost:8443").as_deref(),
            Some("localhost:8443")
        );
        assert_eq!(
            refused_by_rustls(b"https://gw.test:443/").as_deref(),
            Some("https://gw.test:443/")
        );
        assert_eq!(
            refused_by_rustls(b"a\nb\xff").as_deref(),
            Some("a\\nb\u{fffd}")
        );
        let long = refused_by_rustls(&[b':'; 1000]).unwrap();
        assert_eq!(long.len(), MAX_LOGGED_NAME);
    }
}
