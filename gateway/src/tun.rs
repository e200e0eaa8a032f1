//! The TUN device that joins the tunnels to the pod's network stack (Linux).
//!
//! One device per gateway: its address is the gateway's tunnel address with the pool's prefix,
//! so the kernel routes the whole pool into it, and [`crate::router`] sorts packets read from it
//! by destination. Packets are bare IP (no packet-information header). Creating it needs
//! CAP_NET_ADMIN.
//!
//! Two things make it cheap per byte, both from the `tun-rs` crate (the `tun` crate has
//! neither, and writing them by hand means the GSO split and the GRO coalescing of
//! wireguard-go again):
//! - **Offload** (`IFF_VNET_HDR` with TSO and checksum offload): the kernel hands over TCP
//!   super-segments of up to 64 KiB in one read, which are split here into packets no larger
//!   than the MTU (so no client ever gets a segment beyond the MRU it was told), and the
//!   client's consecutive TCP segments are coalesced into one write. One system call and one
//!   pass through the kernel's stack per ~45 packets instead of per packet. If the kernel
//!   refuses `TUNSETOFFLOAD`, the device is made again without it and the gateway says so.
//! - **Queues** (`IFF_MULTI_QUEUE`): one file descriptor per worker thread, each with its own
//!   reader and writer ([`crate::dataplane`]), instead of one reader for the whole gateway.

use std::{io, net::Ipv4Addr};

use bytes::BytesMut;
use ipnet::Ipv4Net;
use tracing::warn;
use tun_rs::{AsyncDevice, DeviceBuilder, GROTable};

/// Packets the kernel keeps for each queue's reader when it falls behind (the kernel's default
/// is 500, which a 2 Gbit/s download fills in ~3 ms of the reader not being scheduled:
/// tests/bench/load counted 64,204 drops and 88,656 TCP retransmits in 10 s through one tunnel
/// with it, none dropped with 4,096). At most ~9 MB of the kernel's memory, used only while the
/// reader is late.
pub const TX_QUEUE_LEN: u32 = 4096;

/// Room in front of every packet written to the device, for the virtio header that offload
/// puts there (zeroes, and unused, without offload). See [`crate::dataplane::ClientPacket`].
pub const HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;

/// Segment buffers per read: a TCP super-segment of 64 KiB with an MSS of 512 or more fits.
/// One with more segments (an MSS below ~512, which no real path needs) is dropped and
/// counted (`gso_split_failed`), as in wireguard-go.
const SEGMENTS_PER_READ: usize = tun_rs::IDEAL_BATCH_SIZE;
/// The largest read: a virtio header and a 64 KiB super-segment.
const RAW_READ: usize = HEADROOM + 65_535;

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
    /// Ask for offload (falls back to none if the kernel refuses).
    pub offload: bool,
    /// Queues (file descriptors) to open, at least 1.
    pub queues: usize,
}

/// An open, configured and up TUN device, as its queues.
pub struct TunDevice {
    queues: Vec<TunQueue>,
    offload: bool,
}

/// One queue of the device: reads what the kernel steered to it, writes into the stack. The
/// kernel steers a flow to the queue its packets were last written on, so the replies of a
/// session that always writes through one queue are read from that queue.
pub struct TunQueue {
    device: AsyncDevice,
    mtu: u16,
}

/// Why the device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The kernel refused (no CAP_NET_ADMIN, no /dev/net/tun, name taken...).
    #[error("cannot create TUN device {name:?}")]
    Create {
        /// Requested interface name.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl TunDevice {
    /// Creates the device with its queues, sets address, netmask and MTU, and brings it up.
    /// Must be called inside a tokio runtime (the descriptors are registered with its reactor).
    pub fn create(settings: &TunSettings) -> Result<Self, TunError> {
        let create_error = |source| TunError::Create {
            name: settings.name.clone(),
            source,
        };
        let queues = settings.queues.max(1);
        let (first, offload) = match build(settings, settings.offload, queues) {
            Ok(device) => (device, settings.offload),
            Err(err) if settings.offload => {
                // The device went with the descriptor that failed; make it again without.
                let device = build(settings, false, queues).map_err(create_error)?;
                warn!(
                    error = %err,
                    device = %settings.name,
                    "the kernel refused TUN offload; running without it (more CPU per byte)"
                );
                (device, false)
            }
            Err(err) => return Err(create_error(err)),
        };
        if let Err(err) = first.set_tx_queue_len(TX_QUEUE_LEN) {
            // Still a working device: bursts beyond the default queue are dropped (and
            // counted by the kernel as the device's tx_dropped).
            warn!(error = %err, device = %settings.name, "cannot raise the TUN transmit queue");
        }
        let mtu = settings.mtu;
        let mut opened = Vec::with_capacity(queues);
        for _ in 1..queues {
            match first.try_clone() {
                Ok(device) => opened.push(TunQueue { device, mtu }),
                Err(err) => {
                    warn!(
                        error = %err,
                        device = %settings.name,
                        queues = opened.len() + 1,
                        "cannot open another TUN queue; running with fewer"
                    );
                    break;
                }
            }
        }
        opened.insert(0, TunQueue { device: first, mtu });
        Ok(Self {
            queues: opened,
            offload,
        })
    }

    /// Whether offload is on (asked for and accepted by the kernel).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The queues, to give each its reader and writer.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }

    /// The open queues.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }
}

fn build(settings: &TunSettings, offload: bool, queues: usize) -> io::Result<AsyncDevice> {
    DeviceBuilder::new()
        .name(&settings.name)
        .ipv4(settings.address, settings.pool.prefix_len(), None)
        .mtu(settings.mtu)
        .offload(offload)
        .multi_queue(queues > 1)
        .build_async()
}

/// What one read from a queue gave: the packets, each at most the MTU.
pub struct Segments {
    raw: Box<[u8]>,
    buffers: Vec<Box<[u8]>>,
    sizes: Vec<usize>,
    count: usize,
}

impl Segments {
    /// Buffers for reads from a device with this MTU (about 250 KiB at 1,400).
    pub fn new(mtu: u16) -> Self {
        // Without offload a read is one packet of at most the MTU; with it, split segments
        // are too. 1,500 covers an MTU set lower than what the kernel already queued.
        let segment = usize::from(mtu).max(1500);
        Self {
            raw: vec![0; RAW_READ].into_boxed_slice(),
            buffers: (0..SEGMENTS_PER_READ)
                .map(|_| vec![0; segment].into_boxed_slice())
                .collect(),
            sizes: vec![0; SEGMENTS_PER_READ],
            count: 0,
        }
    }

    /// The packets of the last read, in the order the kernel sent them.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.buffers[..self.count]
            .iter()
            .zip(&self.sizes)
            .map(|(buffer, &size)| &buffer[..size])
    }

    /// How many packets the last read gave.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last read gave none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Why a read gave no packets.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The device failed (it is being removed, or the descriptor is broken).
    #[error("TUN read failed")]
    Device(#[source] io::Error),
    /// One super-segment could not be split (more segments than buffers, or a malformed
    /// virtio header); it is lost, the next read is unaffected.
    #[error("a TUN super-segment could not be split")]
    Split(#[source] io::Error),
}

impl TunQueue {
    /// Buffers for this queue's reads.
    pub fn segments(&self) -> Segments {
        Segments::new(self.mtu)
    }

    /// Reads the next packet, or the next super-segment split into packets, into `segments`.
    pub async fn recv(&self, segments: &mut Segments) -> Result<usize, ReadError> {
        segments.count = 0;
        let count = self
            .device
            .recv_multiple(
                &mut segments.raw,
                &mut segments.buffers,
                &mut segments.sizes,
                0,
            )
            .await
            .map_err(|err| match err.raw_os_error() {
                Some(_) => ReadError::Device(err),
                None => ReadError::Split(err),
            })?;
        segments.count = count;
        Ok(count)
    }

    /// Writes a batch of packets, each with [`HEADROOM`] bytes in front, coalescing what can
    /// be with offload on. `bufs` is left with unspecified contents. Returns the first error
    /// after trying every write.
    pub async fn send(&self, gro: &mut GROTable, bufs: &mut [WriteBuffer]) -> io::Result<()> {
        self.device
            .send_multiple(gro, bufs, HEADROOM)
            .await
            .map(drop)
    }
}

/// One packet to write, behind [`HEADROOM`]. Coalescing appends a flow's later segments to its
/// first one, but only into room the buffer says it has (tun-rs follows wireguard-go, whose
/// buffers are all 64 KiB). Packets here are sized to themselves, since thousands wait in the
/// writers' queues; so this one says it has room for the largest IP packet and makes that room
/// in one allocation when a coalesce first needs it: once per coalesced write, not per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBuffer(BytesMut);

/// The largest coalesced packet: an IPv4 total length is 16 bits.
const COALESCED_MAX: usize = 2 * HEADROOM + 65_535;

impl WriteBuffer {
    /// The bytes, headroom included.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn make_room(&mut self, len: usize) {
        if len > self.0.capacity() {
            self.0.reserve(COALESCED_MAX.max(len) - self.0.len());
        }
    }
}

impl From<BytesMut> for WriteBuffer {
    fn from(bytes: BytesMut) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for WriteBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for WriteBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl tun_rs::ExpandBuffer for WriteBuffer {
    fn buf_capacity(&self) -> usize {
        COALESCED_MAX.max(self.0.capacity())
    }

    fn buf_resize(&mut self, new_len: usize, value: u8) {
        self.make_room(new_len);
        self.0.resize(new_len, value);
    }

    fn buf_extend_from_slice(&mut self, src: &[u8]) {
        self.make_room(self.0.len() + src.len());
        self.0.extend_from_slice(src);
    }
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("queues", &self.queues.len())
            .field("offload", &self.offload)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
