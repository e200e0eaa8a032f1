//! The SSTP port: TCP accept loop, connection limits, optional PROXY protocol header, the TLS
//! handshake under a deadline, then one [`crate::session`] task per connection.
//!
//! Limits are checked before any expensive work: the session cap (a semaphore whose permits the
//! connection tasks hold, which also lets shutdown wait for every task) at accept, the
//! per-source cap once the client's address is known (after the PROXY header, if any).

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, trace};

use crate::{
    metrics::RejectReason,
    proxy_protocol,
    session::{self, SessionShared},
    tls::TlsStore,
    tls_sni,
};

/// Limits of the SSTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Expect a PROXY protocol v1/v2 header before TLS.
    pub proxy_protocol: bool,
    /// Concurrent connections (sessions in any state).
    pub max_sessions: u32,
    /// Concurrent connections per client address.
    pub max_per_source: u32,
    /// From accept to the end of the TLS handshake (PROXY header included).
    pub handshake_timeout: Duration,
}

/// Connection slots; shutdown waits until every slot is back.
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    total: u32,
}

impl Slots {
    /// `total` connection slots.
    pub fn new(total: u32) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Connections in progress.
    pub fn in_use(&self) -> usize {
        self.total as usize - self.semaphore.available_permits()
    }

    /// Waits until every connection task has ended.
    pub async fn wait_idle(&self) {
        let _all = self.semaphore.acquire_many(self.total).await;
    }
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    settings: ListenerSettings,
    tls: Arc<TlsStore>,
    shared: Arc<SessionShared>,
    slots: Slots,
) {
    let per_source = Arc::new(PerSource::default());
    let next_id = AtomicU64::new(1);
    let mut shutdown = shared.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    debug!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let accepted = Instant::now();
        let Ok(slot) = Arc::clone(&slots.semaphore).try_acquire_owned() else {
            trace!(%peer, "session limit reached; closing");
            shared
                .metrics
                .connection_rejected(RejectReason::MaxSessions);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (tls, shared, per_source) = (
            Arc::clone(&tls),
            Arc::clone(&shared),
            Arc::clone(&per_source),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let deadline = accepted + settings.handshake_timeout;
            let (stream, source) = if settings.proxy_protocol {
                match tokio::time::timeout_at(deadline.into(), read_proxy_header(tcp, peer)).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(err)) => {
                        debug!(%peer, error = %err, "bad PROXY protocol header");
                        shared
                            .metrics
                            .connection_rejected(RejectReason::InvalidProxyHeader);
                        return;
                    }
                    Err(_) => {
                        shared
                            .metrics
                            .connection_rejected(RejectReason::InvalidProxyHeader);
                        return;
                    }
                }
            } else {
                (Prefixed::new(tcp, Vec::new()), peer)
            };
            let Some(_source_slot) = per_source.enter(source.ip(), settings.max_per_source) else {
                trace!(%source, "per-source connection limit reached; closing");
                shared
                    .metrics
                    .connection_rejected(RejectReason::PerSourceLimit);
                return;
            };
            let Some((stream, refused_sni)) =
                tls_sni::read_client_hello(stream, deadline, &shared.metrics, source).await
            else {
                return;
            };
            let snapshot = tls.snapshot();
            let acceptor = TlsAcceptor::from(Arc::clone(&snapshot.config));
            match tokio::time::timeout_at(deadline.into(), acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let hashes = snapshot.hashes.clone();
                    drop(snapshot);
                    session::run(shared, stream, hashes, source, accepted, id).await;
                }
                Ok(Err(err)) => {
                    tls_sni::handshake_failed(
                        &shared.metrics,
                        source,
                        &err,
                        refused_sni.as_deref(),
                    );
                }
                Err(_) => {
                    trace!(%source, "TLS handshake deadline passed");
                    shared
                        .metrics
                        .connection_rejected(RejectReason::TlsHandshakeTimeout);
                }
            }
        });
    }
}

/// Reads a PROXY header; the bytes after it stay in front of the stream for TLS.
async fn read_proxy_header(
    mut tcp: TcpStream,
    peer: SocketAddr,
) -> io::Result<(Prefixed<TcpStream>, SocketAddr)> {
    let mut buf = Vec::with_capacity(PROXY_READ_CHUNK);
    loop {
        let mut chunk = [0u8; PROXY_READ_CHUNK];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match proxy_protocol::parse(&buf) {
            Ok(None) if buf.len() < PROXY_MAX_HEADER => {}
            Ok(None) => return Err(io::Error::other("PROXY header too long")),
            Ok(Some(header)) => {
                let rest = buf.split_off(header.len.min(buf.len()));
                return Ok((Prefixed::new(tcp, rest), header.source.unwrap_or(peer)));
            }
            Err(err) => return Err(io::Error::other(err)),
        }
    }
}

/// A stream with some already-read bytes put back in front.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    offset: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(inner: S, prefix: Vec<u8>) -> Self {
        Self {
            prefix,
            offset: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.offset < this.prefix.len() {
            let rest = &this.prefix[this.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.offset += n;
            if this.offset == this.prefix.len() {
                this.prefix = Vec::new();
                this.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connections per client address.
#[derive(Debug, Default)]
struct PerSource {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; dropping it gives the count back.
#[derive(Debug)]
struct SourceSlot {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    fn enter(self: &Arc<Self>, ip: IpAddr, limit: u32) -> Option<SourceSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const PROXY_READ_CHUNK: usize = 256;
/// v2 headers may carry TLVs; anything beyond this is not a load balancer talking.
const PROXY_MAX_HEADER: usize = 4096;
