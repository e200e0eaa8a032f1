//! A TCP server inside a [`NetnsLink`]'s namespace that sends or swallows bulk data and records
//! the SHA-256 of every transfer, so a test can compare it with what the other end computed.
//!
//! Protocol, one transfer per connection: the client sends one line, then
//! - `GET <bytes>\n`: the server sends `<bytes>` bytes of pseudo-random data and closes;
//! - `PUT\n`: the server reads until the client closes its sending side, then closes.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use sha2::{Digest, Sha256};

use crate::{
    Error,
    netns::{self, NetnsLink},
};

/// How long a transfer may stall before the server gives up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the accept loop checks for shutdown.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// Largest GET the server honours (bounds the test's traffic).
const MAX_GET: u64 = 1 << 30;
/// Write size.
const CHUNK: usize = 64 * 1024;

/// One finished transfer, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// `GET` (server sent) or `PUT` (server received).
    pub kind: String,
    /// Bytes sent or received.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of those bytes.
    pub sha256: String,
    /// Whether the transfer ended normally (all bytes written, or EOF read).
    pub complete: bool,
}

/// The running server. Dropping it stops the thread; it must be dropped before its
/// [`NetnsLink`] so the namespace can go away (a thread inside it keeps it alive).
#[derive(Debug)]
pub struct TransferServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    transfers: Arc<Mutex<Vec<Transfer>>>,
    thread: Option<JoinHandle<()>>,
}

impl TransferServer {
    /// Listens on `link`'s namespace address, port `port`.
    pub fn start(link: &NetnsLink, port: u16) -> Result<Self, Error> {
        let ns_name = link.name().to_owned();
        Self::spawn(SocketAddr::from((link.ns_addr(), port)), move || {
            netns::enter_named(&ns_name)
        })
    }

    /// Listens on `addr` in this process's own network namespace (the server of the
    /// `sstp-transfer-server` binary, which runs as a pod).
    pub fn bind(addr: SocketAddr) -> Result<Self, Error> {
        Self::spawn(addr, || Ok(()))
    }

    /// Runs the server thread: `enter` first (in that thread), then bind and serve.
    fn spawn(
        addr: SocketAddr,
        enter: impl FnOnce() -> Result<(), Error> + Send + 'static,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            let transfers = Arc::clone(&transfers);
            std::thread::spawn(move || {
                let listener = enter().and_then(|()| {
                    let listener = TcpListener::bind(addr).map_err(|source| Error::Io {
                        what: format!("binding {addr}"),
                        source,
                    })?;
                    listener.set_nonblocking(true).map_err(|source| Error::Io {
                        what: "making the listener non-blocking".into(),
                        source,
                    })?;
                    Ok(listener)
                });
                let listener = match listener {
                    Ok(listener) => {
                        let _ = ready_tx.send(Ok(()));
                        listener
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                serve(&listener, &stop, &transfers);
            })
        };
        let ready = ready_rx
            .recv()
            .map_err(|_| Error::Unavailable("the transfer server thread died".into()))?;
        let server = Self {
            addr,
            stop,
            transfers,
            thread: Some(thread),
        };
        ready.map(|()| server)
    }

    /// Where it listens (inside the namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The transfers finished so far, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.transfers
            .lock()
            .map(|list| list.clone())
            .unwrap_or_default()
    }
}

impl Drop for TransferServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, transfers: &Mutex<Vec<Transfer>>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(transfer) = handle(stream, stop)
                    && let Ok(mut list) = transfers.lock()
                {
                    list.push(transfer);
                }
            }
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

fn handle(stream: TcpStream, stop: &AtomicBool) -> Option<Transfer> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("GET"), Some(n)) => {
            let n = n.parse::<u64>().ok()?.min(MAX_GET);
            Some(send(stream, n, stop))
        }
        (Some("PUT"), None) => Some(receive(reader)),
        _ => None,
    }
}

fn send(mut stream: TcpStream, n: u64, stop: &AtomicBool) -> Transfer {
    let mut hash = Sha256::new();
    let mut data = PatternBytes::new(n);
    let mut chunk = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let mut complete = true;
    while sent < n {
        if stop.load(Ordering::Relaxed) {
            complete = false;
            break;
        }
        let len = usize::try_from((n - sent).min(CHUNK as u64)).unwrap_or(CHUNK);
        data.fill(&mut chunk[..len]);
        if stream.write_all(&chunk[..len]).is_err() {
            complete = false;
            break;
        }
        hash.update(&chunk[..len]);
        sent += len as u64;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Transfer {
        kind: "GET".into(),
        bytes: sent,
        sha256: hex::encode(hash.finalize()),
        complete,
    }
}

fn receive(mut reader: BufReader<TcpStream>) -> Transfer {
    let mut hash = Sha256::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut received = 0u64;
    let complete = loop {
        match reader.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => {
                hash.update(&chunk[..n]);
                received += n as u64;
            }
            Err(_) => break false,
        }
    };
    Transfer {
        kind: "PUT".into(),
        bytes: received,
        sha256: hex::encode(hash.finalize()),
        complete,
    }
}

/// Incompressible, reproducible bytes (xorshift64*), so corruption anywhere changes the hash.
struct PatternBytes {
    state: u64,
}

impl PatternBytes {
    fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
