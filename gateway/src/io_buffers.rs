//! The byte buffers of one SSTP stream: outgoing bytes written with cancel-safe steps, and a
//! read buffer that starts small and grows only for streams that fill it (an idle session holds
//! a couple of KiB, a bulk one reads 16 KiB at a time).
//!
//! Outgoing:
//! The session and client drivers `select!` between reading the socket and writing it, so
//! that a peer that writes while we write can never deadlock both sides. `write` is
//! cancel-safe (it wrote `n` bytes or nothing), `write_all` is not, hence this small state
//! holder: an offset into the pending bytes plus a "flush owed" flag (tokio-rustls may keep
//! records in the TLS session until flushed).

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Pending plaintext for the TLS stream.
#[derive(Debug, Default)]
pub(crate) struct TxBuffer {
    bytes: Vec<u8>,
    written: usize,
    flush_owed: bool,
}

impl TxBuffer {
    /// The buffer the state machine's `poll_transmit` appends to.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Bytes not yet handed to the stream.
    pub(crate) fn pending(&self) -> usize {
        self.bytes.len() - self.written
    }

    /// Whether there is anything to write or flush.
    pub(crate) fn has_work(&self) -> bool {
        self.pending() > 0 || self.flush_owed
    }

    /// One cancel-safe step: write some pending bytes, or flush once all are written. Returns
    /// how many bytes were written (0 for a flush).
    pub(crate) async fn step<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<usize> {
        if self.pending() > 0 {
            let n = w.write(&self.bytes[self.written..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.written += n;
            if self.written == self.bytes.len() {
                self.bytes.clear();
                if self.bytes.capacity() > TX_KEEP_CAPACITY {
                    // A burst is over: give the memory back so idle sessions stay small.
                    self.bytes.shrink_to(TX_KEEP_CAPACITY);
                }
                self.written = 0;
                self.flush_owed = true;
            }
            Ok(n)
        } else {
            if self.flush_owed {
                w.flush().await?;
                self.flush_owed = false;
            }
            Ok(0)
        }
    }

    /// Writes and flushes everything, for the last bytes before closing (bounded by the
    /// caller's timeout).
    pub(crate) async fn finish<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while self.has_work() {
            self.step(w).await?;
        }
        Ok(())
    }
}

/// Capacity an emptied output buffer keeps.
const TX_KEEP_CAPACITY: usize = 16 * 1024;
/// First size of the read buffer: a whole handshake message fits.
const RX_INITIAL: usize = 2 * 1024;
/// Largest read buffer: a few maximum-size SSTP packets per read.
const RX_MAX: usize = 16 * 1024;

/// The read buffer of one stream.
#[derive(Debug)]
pub(crate) struct RxBuffer {
    bytes: Vec<u8>,
}

impl Default for RxBuffer {
    fn default() -> Self {
        Self {
            bytes: vec![0; RX_INITIAL],
        }
    }
}

impl RxBuffer {
    /// Where the next read goes.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The `n` bytes just read; grows the buffer when a read filled it.
    pub(crate) fn filled(&mut self, n: usize) -> &[u8] {
        if n == self.bytes.len() && self.bytes.len() < RX_MAX {
            let grown = (self.bytes.len() * 2).min(RX_MAX);
            self.bytes.resize(grown, 0);
        }
        &self.bytes[..n]
    }
}
