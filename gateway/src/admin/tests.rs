use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};

use super::*;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(site: Site) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, site, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Sends one raw HTTP/1.1 request and returns (status, headers, body).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn admin_site() -> (Site, Metrics, Readiness) {
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    (
        Site::Admin {
            metrics: metrics.clone(),
            sessions: crate::session::SessionTable::new(),
            readiness: readiness.clone(),
        },
        metrics,
        readiness,
    )
}

#[tokio::test]
async fn metrics_health_and_readiness_answer_on_the_admin_port() {
    let (site, metrics, readiness) = admin_site();
    metrics.users_reloaded(crate::metrics::ReloadResult::Success, Some(3));
    let server = start(site).await;
    let (status, head, body) = request(server.addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("sstp_users_loaded 3")
    );
    assert_eq!(request(server.addr, "GET", "/healthz").await.0, 200);
    assert_eq!(request(server.addr, "GET", "/readyz").await.0, 503);
    readiness.set(true);
    assert_eq!(request(server.addr, "GET", "/readyz").await.0, 200);
    assert_eq!(
        request(server.addr, "GET", "/sstp/ca.crl").await.0,
        404,
        "not on the admin port"
    );
    let (status, head, body) = request(server.addr, "GET", "/sessions").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(body, br#"{"sessions":[]}"#);
}

#[tokio::test]
async fn the_public_port_serves_the_ca_and_crl_files_as_they_are_now() {
    let dir = std::env::temp_dir().join(format!("sstp-admin-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, crl) = (dir.join("ca.crt"), dir.join("ca.crl"));
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(&crl, [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
    let files = PublicFiles {
        ca_cert: Some(ca.clone()),
        crl: Some(crl.clone()),
    };
    let server = start(Site::Public(files)).await;

    let (status, head, body) = request(server.addr, "GET", "/sstp/ca.crl").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/pkix-crl"),
        "{head}"
    );
    assert_eq!(body, [0x30, 0x03, 0x02, 0x01, 0x01]);
    let (status, _, body) = request(server.addr, "GET", "/sstp/ca.crt").await;
    assert_eq!(
        (status, body.starts_with(b"-----BEGIN CERTIFICATE")),
        (200, true)
    );

    // A rotated file is served at once; a PEM CRL goes out as DER.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nMAMCAQI=\n-----END X509 CRL-----\n",
    )
    .unwrap();
    assert_eq!(
        request(server.addr, "GET", "/sstp/ca.crl").await.2,
        [0x30, 0x03, 0x02, 0x01, 0x02]
    );
    std::fs::remove_file(&crl).unwrap();
    assert_eq!(
        request(server.addr, "GET", "/sstp/ca.crl").await.0,
        404,
        "a missing file is a 404"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn head_gets_headers_without_a_body_and_other_methods_get_405() {
    let dir = std::env::temp_dir().join(format!("sstp-admin-head-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crl"), [0x30, 0x00]).unwrap();
    let files = PublicFiles {
        ca_cert: None,
        crl: Some(dir.join("ca.crl")),
    };
    let server = start(Site::Public(files)).await;
    let (status, head, body) = request(server.addr, "HEAD", "/sstp/ca.crl").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-length: 2"),
        "{head}"
    );
    assert!(body.is_empty());
    let (status, head, _) = request(server.addr, "POST", "/sstp/ca.crl").await;
    assert_eq!(status, 405);
    assert!(
        head.to_ascii_lowercase().contains("allow: get, head"),
        "{head}"
    );
    assert_eq!(
        request(server.addr, "GET", "/sstp/ca.crt").await.0,
        404,
        "no CA configured"
    );
    assert_eq!(request(server.addr, "GET", "/").await.0, 404);
    assert_eq!(
        request(server.addr, "GET", "/sstp/../etc/passwd").await.0,
        404
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let (site, _, _) = admin_site();
    let mut server = start(site).await;
    server.stop.take().unwrap().send(()).unwrap();
    server.task.await.unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn garbage_instead_of_http_closes_only_that_connection() {
    let (site, _, _) = admin_site();
    let server = start(site).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"\x16\x03\x01\x00\xff not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(request(server.addr, "GET", "/healthz").await.0, 200);
}
