//! The data plane: one TUN device, a reader task that hands each packet to the session owning
//! its destination ([`crate::router`]), and a writer task for packets from sessions.
//!
//! Sessions never touch the device: they send into the writer's queue, and a session that finds
//! it full stops reading its client until there is room (`session/tun_wait.rs`), so a burst of
//! uploads is held back in the clients' TCP windows instead of lost. The TCP MSS clamp lives in
//! nftables ([`crate::nat`]), not here.

use std::sync::Arc;

use bytes::Bytes;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, warn};

use crate::{
    metrics::Metrics,
    router::{RouteOutcome, Router},
    tun::{TunDevice, TunError, TunSettings},
};

/// The running data plane. [`Dataplane::stop`] ends both tasks, which closes (and so removes)
/// the TUN device.
#[derive(Debug)]
pub struct Dataplane {
    to_tun: mpsc::Sender<Bytes>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Packets from clients waiting for the TUN device.
const WRITE_QUEUE: usize = 4096;
/// Packets the writer takes from its queue at a time.
const WRITE_BATCH: usize = 64;
/// Read buffer: larger than any MTU we configure.
const READ_BUF: usize = 65_536;

impl Dataplane {
    /// Creates the device and starts the reader and writer. Needs CAP_NET_ADMIN.
    pub fn start(
        settings: &TunSettings,
        router: Arc<Router>,
        metrics: Metrics,
    ) -> Result<Self, TunError> {
        let device = Arc::new(TunDevice::create(settings)?);
        let (to_tun, from_sessions) = mpsc::channel(WRITE_QUEUE);
        let (stop, stopped) = watch::channel(false);
        let reader = tokio::spawn(read_loop(
            Arc::clone(&device),
            router,
            metrics,
            stopped.clone(),
        ));
        let writer = tokio::spawn(write_loop(device, from_sessions, stopped));
        Ok(Self {
            to_tun,
            stop,
            tasks: vec![reader, writer],
        })
    }

    /// The queue sessions send client packets into.
    pub fn sender(&self) -> mpsc::Sender<Bytes> {
        self.to_tun.clone()
    }

    /// Stops both tasks and waits for them; the device is gone when this returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn read_loop(
    device: Arc<TunDevice>,
    router: Arc<Router>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = tokio::select! {
            _ = stop.changed() => return,
            read = device.recv(&mut buf) => match read {
                Ok(n) => n,
                Err(err) => {
                    warn!(error = %err, "TUN read failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if let RouteOutcome::Dropped(reason) = router.route(Bytes::copy_from_slice(&buf[..n])) {
            metrics.tun_packet_dropped(reason);
        }
    }
}

async fn write_loop(
    device: Arc<TunDevice>,
    mut packets: mpsc::Receiver<Bytes>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        // Many at once: the queue's room comes back in one step, so a session held back by a
        // full queue (session/tun_wait.rs) wakes once for many packets rather than once each.
        let taken = tokio::select! {
            _ = stop.changed() => return,
            taken = packets.recv_many(&mut batch, WRITE_BATCH) => taken,
        };
        if taken == 0 {
            return;
        }
        for packet in batch.drain(..) {
            if let Err(err) = device.send(&packet).await {
                debug!(error = %err, len = packet.len(), "TUN write failed; packet dropped");
            }
        }
    }
}
