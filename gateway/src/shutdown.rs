//! The signals that stop the gateway. What stopping means (stop accepting, CALL_DISCONNECT every
//! session, bounded wait, TUN device and nftables table removed) is
//! [`crate::server::RunningGateway::shutdown`]; this module only waits for the request.

use tokio::signal::unix::{SignalKind, signal};

/// The installed SIGTERM and SIGINT handlers. Install them before starting the gateway, so a
/// signal that arrives during start-up is not lost (nor kills the process half set up).
#[derive(Debug)]
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (inside a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C); returns which.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
