//! The SSTP port: TCP accept loop, the pre-login budget, the PROXY protocol header from trusted
//! proxies, the TLS handshake under a deadline, then one [`crate::session`] task per connection.
//!
//! Nothing a client that has not logged in can hold is unbounded: each accepted connection
//! takes a place in [`PendingConnections`] (a fixed total and a per-source share; when full, the
//! biggest source's oldest connection is evicted rather than the newcomer refused), keeps it
//! through TLS and authentication, and gives it up when its user is admitted into one of the
//! `maxSessions` places ([`crate::admission`]). Established sessions are never evicted.
//!
//! A PROXY header is read only from a peer inside `trustedProxies`, and the client address it
//! names is what the per-source share and the auth throttle then count. Any other peer is
//! served as a direct client at its own address; one that sends a PROXY header anyway is
//! refused and counted.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace};

use crate::{
    metrics::RejectReason,
    pending::{PendingConnections, PendingTicket},
    proxy_protocol,
    session::{self, SessionShared},
    tls::TlsStore,
    tls_sni,
};

/// Settings of the SSTP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Which peers' PROXY protocol headers are honoured.
    pub proxy: ProxyPolicy,
    /// From accept to the end of the TLS handshake (PROXY header included).
    pub handshake_timeout: Duration,
}

/// PROXY protocol v1/v2 on the SSTP port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyPolicy {
    /// Peers whose header is required and honoured; empty turns the PROXY protocol off.
    pub trusted: Vec<IpNet>,
}

impl ProxyPolicy {
    /// Whether `peer` is a trusted proxy (and so must send a header).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    fn enabled(&self) -> bool {
        !self.trusted.is_empty()
    }
}

/// An IPv4-mapped IPv6 address as IPv4, so that ranges match on a dual-stack socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Accepts connections until `stop` turns true (the start of a drain), then closes the listening
/// socket, so new clients are refused at once while the sessions go on. Every connection task
/// is spawned on `tasks`, so shutdown can wait for them.
pub async fn serve(
    listener: TcpListener,
    settings: ListenerSettings,
    tls: Arc<TlsStore>,
    shared: Arc<SessionShared>,
    pending: Arc<PendingConnections>,
    tasks: TaskTracker,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let next_id = AtomicU64::new(1);
    let settings = Arc::new(settings);
    let mut shutdown = stop;
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
        let _ = tcp.set_nodelay(true);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Connection {
            tls: Arc::clone(&tls),
            shared: Arc::clone(&shared),
            settings: Arc::clone(&settings),
            accepted,
            id,
        };
        if settings.proxy.trusts(peer.ip()) {
            // The client's address is in the header; its place is taken once it is known.
            let pending = Arc::clone(&pending);
            tasks.spawn(async move { connection.via_proxy(tcp, peer, pending).await });
            continue;
        }
        // Taken here, before any task exists, so a flood cannot pile up tasks either.
        let Ok(ticket) = pending.enter(peer.ip()) else {
            trace!(%peer, "per-source pending limit reached; closing");
            continue;
        };
        tasks.spawn(async move { connection.direct(tcp, peer, ticket).await });
    }
}

/// One accepted connection on its way to a session.
struct Connection {
    tls: Arc<TlsStore>,
    shared: Arc<SessionShared>,
    settings: Arc<ListenerSettings>,
    accepted: Instant,
    id: u64,
}

impl Connection {
    fn deadline(&self) -> tokio::time::Instant {
        (self.accepted + self.settings.handshake_timeout).into()
    }

    fn reject(&self, reason: RejectReason) {
        self.shared.metrics.connection_rejected(reason);
    }

    /// A peer outside the trusted proxies: a client at its own address.
    async fn direct(self, tcp: TcpStream, peer: SocketAddr, ticket: PendingTicket) {
        if self.settings.proxy.enabled() {
            // TLS starts with 0x16; PROXY v1 with "PROXY", v2 with "\r\n\r\n\0\r\nQUIT\n".
            let mut first = [0u8; 1];
            let peeked = tokio::select! {
                peeked = tokio::time::timeout_at(self.deadline(), tcp.peek(&mut first)) => peeked,
                () = ticket.evicted() => return self.reject_evicted(peer),
            };
            match peeked {
                Ok(Ok(1)) if matches!(first[0], b'P' | b'\r') => {
                    debug!(%peer, "PROXY header from a peer outside trustedProxies; closing");
                    return self.reject(RejectReason::UntrustedProxyHeader);
                }
                Ok(Ok(1)) => {}
                Ok(_) => return,
                Err(_) => return self.reject(RejectReason::TlsHandshakeTimeout),
            }
        }
        self.tls_then_session(Prefixed::new(tcp, Vec::new()), peer, ticket)
            .await;
    }

    /// A trusted proxy: the header names the client, whose place is taken then.
    async fn via_proxy(self, tcp: TcpStream, peer: SocketAddr, pending: Arc<PendingConnections>) {
        let (stream, source) =
            match tokio::time::timeout_at(self.deadline(), read_proxy_header(tcp, peer)).await {
                Ok(Ok(found)) => found,
                Ok(Err(err)) => {
                    debug!(%peer, error = %err, "bad PROXY protocol header");
                    return self.reject(RejectReason::InvalidProxyHeader);
                }
                Err(_) => return self.reject(RejectReason::InvalidProxyHeader),
            };
        let Ok(ticket) = pending.enter(source.ip()) else {
            trace!(%source, "per-source pending limit reached; closing");
            return;
        };
        self.tls_then_session(stream, source, ticket).await;
    }

    /// The TLS handshake, then the session; an eviction ends either while the user is not
    /// admitted yet (once admitted, the ticket is gone and nothing evicts it).
    async fn tls_then_session(
        self,
        stream: Prefixed<TcpStream>,
        source: SocketAddr,
        ticket: PendingTicket,
    ) {
        let evicted = ticket.evicted();
        let work = async {
            let deadline = self.accepted + self.settings.handshake_timeout;
            let Some((stream, refused_sni)) =
                tls_sni::read_client_hello(stream, deadline, &self.shared.metrics, source).await
            else {
                return;
            };
            let snapshot = self.tls.snapshot();
            let acceptor = TlsAcceptor::from(Arc::clone(&snapshot.config));
            match tokio::time::timeout_at(self.deadline(), acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let hashes = snapshot.hashes.clone();
                    drop(snapshot);
                    let shared = Arc::clone(&self.shared);
                    session::run(
                        shared,
                        stream,
                        hashes,
                        source,
                        self.accepted,
                        self.id,
                        Some(ticket),
                    )
                    .await;
                }
                Ok(Err(err)) => {
                    tls_sni::handshake_failed(
                        &self.shared.metrics,
                        source,
                        &err,
                        refused_sni.as_deref(),
                    );
                }
                Err(_) => {
                    trace!(%source, "TLS handshake deadline passed");
                    self.reject(RejectReason::TlsHandshakeTimeout);
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = evicted => self.reject_evicted(source),
        }
    }

    fn reject_evicted(&self, source: SocketAddr) {
        // Counted by the table when it chose this connection.
        trace!(%source, "evicted while not logged in");
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

const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const PROXY_READ_CHUNK: usize = 256;
/// v2 headers may carry TLVs; anything beyond this is not a load balancer talking.
const PROXY_MAX_HEADER: usize = 4096;
