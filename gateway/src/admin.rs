//! Two small HTTP/1.1 servers:
//! - the admin server (port 9090): `/metrics`, `/healthz` (the process serves requests) and
//!   `/readyz` (the gateway accepts tunnels; flipped by the server through [`Readiness`]);
//! - the public server (port 80): `/sstp/ca.crt` and `/sstp/ca.crl`, so Windows can check the
//!   server certificate's revocation (see [`crate::pki`]). Everything else is 404.
//!
//! Files are read on each request, so a renewed CRL or a rotated CA mounted from a Secret is
//! served at once without a reload signal; both are small and fetched rarely (Windows caches
//! the CRL until its nextUpdate). GET and HEAD are allowed, other methods get 405.

use std::{
    convert::Infallible,
    future::Future,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::{debug, trace};

use crate::{
    metrics::Metrics,
    pki::{CA_CERT_PATH, CRL_PATH},
};

/// The `/readyz` flag. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

/// What the public server offers; `None` paths answer 404.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicFiles {
    /// The CA certificate (PEM or DER), served as `/sstp/ca.crt`.
    pub ca_cert: Option<PathBuf>,
    /// The CRL (DER, or PEM which is converted to DER), served as `/sstp/ca.crl`.
    pub crl: Option<PathBuf>,
}

/// Which site a listener serves.
#[derive(Debug, Clone)]
pub enum Site {
    /// `/metrics`, `/healthz`, `/readyz`.
    Admin {
        /// Rendered on each `/metrics` request.
        metrics: Metrics,
        /// Listed on each `/sessions` request.
        sessions: Arc<crate::session::SessionTable>,
        /// Answer of `/readyz`.
        readiness: Readiness,
    },
    /// `/sstp/ca.crt`, `/sstp/ca.crl`.
    Public(PublicFiles),
}

impl Readiness {
    /// Marks the gateway ready or not ready.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the gateway is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves `site` on `listener` until `shutdown` completes. Connections already accepted finish
/// on their own tasks.
pub async fn serve(listener: TcpListener, site: Site, shutdown: impl Future<Output = ()>) {
    let site = Arc::new(site);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Per-connection accept errors (e.g. EMFILE, aborted handshakes) are transient.
                    debug!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            trace!(%peer, "too many HTTP connections, closing");
            continue;
        };
        let site = Arc::clone(&site);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let site = Arc::clone(&site);
                async move { Ok::<_, Infallible>(site.respond(&request).await) }
            });
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = result {
                trace!(%peer, error = %err, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
}

impl Site {
    async fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match (self, request.uri().path()) {
            (Self::Admin { metrics, .. }, "/metrics") => {
                let mut response = text(StatusCode::OK, metrics.render());
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
                response
            }
            (Self::Admin { sessions, .. }, "/sessions") => {
                let mut response = text(StatusCode::OK, sessions.to_json());
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            (Self::Admin { .. }, "/healthz") => text(StatusCode::OK, "ok\n"),
            (Self::Admin { readiness, .. }, "/readyz") if readiness.is_ready() => {
                text(StatusCode::OK, "ready\n")
            }
            (Self::Admin { .. }, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            (Self::Public(files), CA_CERT_PATH) => {
                serve_file(files.ca_cert.as_ref(), CA_CERT_TYPE, false).await
            }
            (Self::Public(files), CRL_PATH) => serve_file(files.crl.as_ref(), CRL_TYPE, true).await,
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

async fn serve_file(
    path: Option<&PathBuf>,
    content_type: &'static str,
    crl: bool,
) -> Response<Full<Bytes>> {
    let Some(path) = path else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let body = match tokio::fs::read(path).await {
        Ok(body) => body,
        Err(err) => {
            debug!(path = %path.display(), error = %err, "cannot read a served file");
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
    };
    let body = if crl { crl_der(body) } else { body };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Let caches keep it briefly; the CRL's own nextUpdate governs how long clients trust it.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// Windows accepts only DER CRLs; a PEM one (as some tools write them) is converted.
fn crl_der(body: Vec<u8>) -> Vec<u8> {
    if !body.starts_with(b"-----BEGIN") {
        return body;
    }
    let der = x509_parser::pem::Pem::iter_from_buffer(&body)
        .filter_map(Result::ok)
        .find(|pem| pem.label == "X509 CRL")
        .map(|pem| pem.contents);
    der.unwrap_or(body)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Prometheus text exposition format 0.0.4.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The de facto media type of a CA certificate download: Windows offers to install it.
const CA_CERT_TYPE: &str = "application/x-x509-ca-cert";
/// RFC 2585 §4.2: media type of a DER CRL.
const CRL_TYPE: &str = "application/pkix-crl";
/// Slow clients may not hold a connection open without sending a request (port 80 is public).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests here are a few hundred bytes; refuse huge heads early.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Bound on concurrent connections per listener; more are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Pause after a failed accept so a persistent error (EMFILE) does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests;
