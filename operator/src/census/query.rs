//! Asking one gateway pod for its sessions: `GET /sessions` on its admin port, by pod IP (the
//! admin port is not on the Service), bounded in time and size.

use std::{net::SocketAddr, time::Duration};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, body::Bytes, header::HOST};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// Longest a pod may take to answer, connect included: a round asks every pod at once, so one
/// slow pod delays only its own count.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read. An entry is about 200 bytes, so this is some 40,000 sessions on one pod,
/// far beyond what one pod's address pool can hold.
pub const MAX_ANSWER: usize = 8 << 20;

/// Why a pod's sessions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No answer within [`QUERY_TIMEOUT`].
    #[error("no answer within {QUERY_TIMEOUT:?}")]
    Timeout,
    /// Connecting or the HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The pod answered with another status.
    #[error("HTTP status {0}")]
    Status(StatusCode),
    /// The body was not the sessions listing.
    #[error("not a sessions listing: {0}")]
    Body(#[from] serde_json::Error),
}

/// The part of a `/sessions` listing the census reads.
#[derive(Debug, Deserialize)]
struct Listing {
    sessions: Vec<Listed>,
}

#[derive(Debug, Deserialize)]
struct Listed {
    user: Option<String>,
}

/// The user of every session the gateway at `admin` lists (`None` where it names no users).
pub async fn sessions(admin: SocketAddr) -> Result<Vec<Option<String>>, QueryError> {
    tokio::time::timeout(QUERY_TIMEOUT, exchange(admin))
        .await
        .map_err(|_| QueryError::Timeout)?
}

async fn exchange(admin: SocketAddr) -> Result<Vec<Option<String>>, QueryError> {
    let http = |err: &dyn std::fmt::Display| QueryError::Http(err.to_string());
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| http(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    // Ends when the exchange is over (or is dropped with the timeout).
    let connection = tokio::spawn(connection);
    let request = Request::get("/sessions")
        .header(HOST, admin.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http(&e))?;
    if response.status() != StatusCode::OK {
        connection.abort();
        return Err(QueryError::Status(response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| http(&*e))?
        .to_bytes();
    connection.abort();
    let listing: Listing = serde_json::from_slice(&body)?;
    Ok(listing
        .sessions
        .into_iter()
        .map(|session| session.user)
        .collect())
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A one-shot HTTP/1.1 peer answering `response` to whatever it is asked.
    async fn peer(response: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
            // Holds the connection open for the slow-peer case.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        address
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn a_listing_gives_the_user_of_every_session() {
        let body = r#"{"sessions":[{"session":1,"user":"alice","client":"192.0.2.1:5000","tunnel_address":"10.8.0.2","since":"2026-12-02T00:00:00Z","bytes_from_client":1,"bytes_to_client":2},{"session":2,"user":null}]}"#;
        let admin = peer(ok(body)).await;
        assert_eq!(
            sessions(admin).await.unwrap(),
            vec![Some("alice".to_owned()), None]
        );
    }

    #[tokio::test]
    async fn anything_but_a_listing_is_an_error_not_a_count() {
        let admin = peer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        assert!(matches!(
            sessions(admin).await,
            Err(QueryError::Status(StatusCode::NOT_FOUND))
        ));
        let admin = peer(ok(r#"{"users":3}"#)).await;
        assert!(matches!(sessions(admin).await, Err(QueryError::Body(_))));
        let mut oversized = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_ANSWER + 1
        )
        .into_bytes();
        oversized.resize(oversized.len() + MAX_ANSWER + 1, b' ');
        let admin = peer(oversized).await;
        assert!(matches!(sessions(admin).await, Err(QueryError::Http(_))));
    }

    #[tokio::test]
    async fn a_pod_that_never_answers_times_out() {
        // Accepts and reads, never writes: only the timeout ends the exchange.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        assert!(matches!(sessions(admin).await, Err(QueryError::Timeout)));
    }
}
