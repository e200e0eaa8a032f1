//! The operator's HTTP server: `/metrics` (Prometheus text), `/healthz` (the process runs) and
//! `/readyz` (the controllers run, or this replica is a standby waiting for the lease).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::Bytes,
    header::{CONTENT_TYPE, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use crate::metrics::Metrics;

/// Shared readiness flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Binds `address`; the returned future serves until `shutdown` completes.
pub async fn serve(
    address: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &metrics, &readiness);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(error = %err, "admin connection ended with an error");
            }
        });
    }
}

fn respond<B>(
    request: &Request<B>,
    metrics: &Metrics,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, METRICS_TYPE, metrics.render()),
        "/healthz" => (StatusCode::OK, PLAIN_TYPE, "ok\n".to_owned()),
        "/readyz" if readiness.get() => (StatusCode::OK, PLAIN_TYPE, "ok\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN_TYPE,
            "not ready\n".to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, PLAIN_TYPE, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Prometheus text format. Prometheus 3 refuses to scrape a target that sends no Content-Type
/// ("non-compliant scrape target sending blank Content-Type"), so it is not optional.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TYPE: &str = "text/plain; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, metrics: &Metrics, readiness: &Readiness) -> StatusCode {
        let request = Request::builder().uri(path).body(()).unwrap();
        respond(&request, metrics, readiness).status()
    }

    #[test]
    fn readyz_follows_the_flag_and_metrics_and_healthz_always_answer() {
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        assert_eq!(
            get("/readyz", &metrics, &readiness),
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set(true);
        assert_eq!(get("/readyz", &metrics, &readiness), StatusCode::OK);
        assert_eq!(get("/healthz", &metrics, &readiness), StatusCode::OK);
        assert_eq!(get("/metrics", &metrics, &readiness), StatusCode::OK);
        let request = Request::builder().uri("/metrics").body(()).unwrap();
        assert_eq!(
            respond(&request, &metrics, &readiness).headers()[CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(get("/nope", &metrics, &readiness), StatusCode::NOT_FOUND);
        metrics.wrote("Secret");
        assert!(
            metrics
                .render()
                .contains("sstp_operator_writes_total{kind=\"Secret\"} 1")
        );
    }
}
