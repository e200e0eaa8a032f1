//! The TUN device that joins the tunnels to the pod's network stack (Linux).
//!
//! One device per gateway: its address is the gateway's tunnel address with the pool's prefix,
//! so the kernel routes the whole pool into it, and [`crate::router`] sorts packets read from it
//! by destination. Packets are bare IP (no packet-information header). Creating it needs
//! CAP_NET_ADMIN. The `tun` crate does the ioctls, apart from the transmit queue length
//! ([`tx_queue`], the crate's one `unsafe`, behind a safe function).

use std::{io, net::Ipv4Addr};

use ipnet::Ipv4Net;
use tracing::warn;

mod tx_queue;

/// Packets the kernel keeps for the gateway's reader when it falls behind (the kernel's
/// default is 500: see [`tx_queue`]). At most ~9 MB of the kernel's memory, used only while
/// the reader is late.
pub const TX_QUEUE_LEN: u32 = 4096;

/// How to set the device up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunSettings {
    /// Interface name, e.g. `sstp0`.
    pub name: String,
    /// The gateway's tunnel address (first usable address of the pool).
    pub address: Ipv4Addr,
    /// The pool; its prefix length becomes the interface netmask.
    pub pool: Ipv4Net,
    /// Interface MTU.
    pub mtu: u16,
}

/// An open, configured and up TUN device. Share it as `Arc<TunDevice>`: `recv` and `send` take
/// `&self`, so one task can read while sessions write.
pub struct TunDevice {
    device: tun::AsyncDevice,
    settings: TunSettings,
}

/// Why the device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The kernel or the `tun` crate refused (no CAP_NET_ADMIN, no /dev/net/tun, name taken...).
    #[error("cannot create TUN device {name:?}")]
    Create {
        /// Requested interface name.
        name: String,
        /// The underlying error.
        #[source]
        source: tun::Error,
    },
}

impl TunDevice {
    /// Creates the device, sets address, netmask and MTU, and brings it up. Must be called
    /// inside a tokio runtime (the descriptor is registered with its reactor).
    pub fn create(settings: &TunSettings) -> Result<Self, TunError> {
        let mut config = tun::Configuration::default();
        config
            .tun_name(&settings.name)
            .address(settings.address)
            .netmask(settings.pool.netmask())
            .mtu(settings.mtu)
            .up();
        let device = tun::create_as_async(&config).map_err(|source| TunError::Create {
            name: settings.name.clone(),
            source,
        })?;
        if let Err(err) = tx_queue::set_tx_queue_len(&settings.name, TX_QUEUE_LEN) {
            // Still a working device: bursts beyond the default queue are dropped (and
            // counted by the kernel as the device's tx_dropped).
            warn!(error = %err, device = %settings.name, "cannot raise the TUN transmit queue");
        }
        Ok(Self {
            device,
            settings: settings.clone(),
        })
    }

    /// The settings the device was created with.
    pub fn settings(&self) -> &TunSettings {
        &self.settings
    }

    /// Reads one IP packet into `buf` (size it to at least the MTU); returns its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    /// Writes one IP packet. A TUN write is all or nothing, so a short count is an error.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        let written = self.device.send(packet).await?;
        if written == packet.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to TUN device",
            ))
        }
    }
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
