//! The data plane: one TUN device with a queue per worker thread, and for each queue a reader
//! task that hands each packet to the session owning its destination ([`crate::router`]) and a
//! writer task for packets from sessions.
//!
//! Each session writes through one queue for its whole life ([`TunWriters::for_session`]): its
//! packets then stay in order (one writer, one descriptor), and since the kernel steers a flow's
//! replies to the queue its packets were written on, they are read by that queue's reader, so a
//! flow is never split across two readers either. Sessions never touch the device: they send
//! into their writer's queue, and a session that finds it full stops reading its client until
//! there is room (`session/tun_wait.rs`), so a burst of uploads is held back in the clients' TCP
//! windows instead of lost. The TCP MSS clamp lives in nftables ([`crate::nat`]), not here.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prometheus::IntCounter;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};
use tun_rs::GROTable;

use crate::{
    metrics::{Direction, Metrics},
    router::{DropReason, RouteOutcome, Router},
    tun::{HEADROOM, ReadError, TunDevice, TunError, TunQueue, TunSettings, WriteBuffer},
};

/// The running data plane. [`Dataplane::stop`] ends every task, which closes (and so removes)
/// the TUN device.
#[derive(Debug)]
pub struct Dataplane {
    writers: TunWriters,
    offload: bool,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// An IP packet from a client on its way to the TUN device, with room in front for the virtio
/// header offload needs ([`HEADROOM`]): made once, by one copy out of the session's read buffer,
/// and written from where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPacket(BytesMut);

impl ClientPacket {
    /// Copies `ip` behind [`HEADROOM`] zero bytes.
    pub fn new(ip: &[u8]) -> Self {
        let mut buffer = BytesMut::with_capacity(HEADROOM + ip.len());
        buffer.resize(HEADROOM, 0);
        buffer.extend_from_slice(ip);
        Self(buffer)
    }

    /// The IP packet.
    pub fn ip(&self) -> &[u8] {
        &self.0[HEADROOM..]
    }

    fn into_buffer(self) -> WriteBuffer {
        WriteBuffer::from(self.0)
    }
}

/// The writers' queues, one per TUN queue; a session picks one for its whole life.
#[derive(Debug, Clone)]
pub struct TunWriters(Arc<[mpsc::Sender<ClientPacket>]>);

impl TunWriters {
    /// The writer for session `id`: sessions are numbered as they arrive, so consecutive ones
    /// go to consecutive queues.
    pub fn for_session(&self, id: u64) -> mpsc::Sender<ClientPacket> {
        let queues = self.0.len() as u64;
        // The remainder is below the number of queues, a usize.
        self.0[(id % queues) as usize].clone()
    }

    /// How many queues there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, for a started data plane).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<mpsc::Sender<ClientPacket>>> for TunWriters {
    fn from(senders: Vec<mpsc::Sender<ClientPacket>>) -> Self {
        assert!(!senders.is_empty(), "at least one TUN writer");
        Self(senders.into())
    }
}

/// Packets from clients waiting for each queue's writer.
const WRITE_QUEUE: usize = 4096;
/// Packets a writer takes from its queue at a time: what offload can coalesce in one go.
const WRITE_BATCH: usize = tun_rs::IDEAL_BATCH_SIZE;

impl Dataplane {
    /// Creates the device and starts a reader and a writer per queue. Needs CAP_NET_ADMIN.
    pub fn start(
        settings: &TunSettings,
        router: Arc<Router>,
        metrics: Metrics,
    ) -> Result<Self, TunError> {
        let device = TunDevice::create(settings)?;
        let offload = device.offload();
        let queues = device.into_queues();
        info!(
            device = %settings.name,
            queues = queues.len(),
            offload,
            "TUN device up"
        );
        metrics.set_tun_device(queues.len(), offload);
        let (stop, stopped) = watch::channel(false);
        let mut senders = Vec::with_capacity(queues.len());
        let mut tasks = Vec::with_capacity(2 * queues.len());
        for (index, queue) in queues.into_iter().enumerate() {
            let queue = Arc::new(queue);
            let (to_tun, from_sessions) = mpsc::channel(WRITE_QUEUE);
            senders.push(to_tun);
            tasks.push(tokio::spawn(read_loop(
                Arc::clone(&queue),
                Arc::clone(&router),
                metrics.clone(),
                metrics.tun_queue_packets(index, Direction::ToClient),
                stopped.clone(),
            )));
            tasks.push(tokio::spawn(write_loop(
                queue,
                from_sessions,
                metrics.tun_queue_packets(index, Direction::FromClient),
                stopped.clone(),
            )));
        }
        Ok(Self {
            writers: TunWriters::from(senders),
            offload,
            stop,
            tasks,
        })
    }

    /// The queues sessions send client packets into.
    pub fn writers(&self) -> TunWriters {
        self.writers.clone()
    }

    /// Whether the device runs with offload.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Stops every task and waits for them; the device is gone when this returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn read_loop(
    queue: Arc<TunQueue>,
    router: Arc<Router>,
    metrics: Metrics,
    read: IntCounter,
    mut stop: watch::Receiver<bool>,
) {
    let mut segments = queue.segments();
    loop {
        let result = tokio::select! {
            _ = stop.changed() => return,
            result = queue.recv(&mut segments) => result,
        };
        match result {
            Ok(_) => {}
            Err(ReadError::Split(err)) => {
                debug!(error = %err, "TUN super-segment dropped");
                router.count_drop(DropReason::GsoSplitFailed);
                metrics.tun_packet_dropped(DropReason::GsoSplitFailed);
                continue;
            }
            Err(ReadError::Device(err)) => {
                warn!(error = %err, "TUN read failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        }
        read.inc_by(segments.len() as u64);
        for packet in segments.iter() {
            // One copy per packet: each goes to a session's queue and lives as long as it waits
            // there, so it cannot keep the whole read's buffers alive.
            if let RouteOutcome::Dropped(reason) = router.route(Bytes::copy_from_slice(packet)) {
                metrics.tun_packet_dropped(reason);
            }
        }
    }
}

async fn write_loop(
    queue: Arc<TunQueue>,
    mut packets: mpsc::Receiver<ClientPacket>,
    written: IntCounter,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut buffers = Vec::with_capacity(WRITE_BATCH);
    let mut gro = GROTable::default();
    loop {
        // Many at once: offload coalesces a flow's consecutive segments within the batch, and
        // the queue's room comes back in one step, so a session held back by a full queue
        // (session/tun_wait.rs) wakes once for many packets rather than once each.
        let taken = tokio::select! {
            _ = stop.changed() => return,
            taken = packets.recv_many(&mut batch, WRITE_BATCH) => taken,
        };
        if taken == 0 {
            return;
        }
        buffers.extend(batch.drain(..).map(ClientPacket::into_buffer));
        written.inc_by(buffers.len() as u64);
        if let Err(err) = queue.send(&mut gro, &mut buffers).await {
            debug!(error = %err, packets = buffers.len(), "TUN write failed; packets dropped");
        }
        buffers.clear();
    }
}

#[cfg(test)]
mod tests;
