//! Backpressure from the TUN device to the client: a packet the TUN writer's queue has no room
//! for waits here, and while it does the session reads nothing more from its client. The client's
//! TCP then sees its window close instead of a loss, which it would answer with a retransmit and a
//! halved window (the issue measured tens of thousands of retransmits per 10 s through one tunnel
//! when such packets were dropped).
//!
//! Fair across sessions: the wait is tokio's `reserve`, whose waiters get the queue's room in the
//! order they asked for it. The future is kept across the session loop's turns, since dropping it
//! would give up its place in that line.

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{self, OwnedPermit, error::SendError};

use crate::dataplane::ClientPacket;

type Room = Pin<Box<dyn Future<Output = Result<OwnedPermit<ClientPacket>, SendError<()>>> + Send>>;

/// A client packet waiting for room in the TUN writer's queue.
pub(super) struct TunWait {
    packet: ClientPacket,
    since: Instant,
    room: Room,
}

impl std::fmt::Debug for TunWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunWait")
            .field("len", &self.packet.ip().len())
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

impl TunWait {
    /// Starts waiting, at `now`, for room in `queue` for `packet`.
    pub(super) fn new(
        queue: &mpsc::Sender<ClientPacket>,
        packet: ClientPacket,
        now: Instant,
    ) -> Self {
        Self {
            packet,
            since: now,
            room: Box::pin(queue.clone().reserve_owned()),
        }
    }

    /// Resolves when the queue has room (an error: the data plane is gone). Cancel-safe: the
    /// place in line is the future's, which stays in `self`. Not polled again once resolved.
    pub(super) async fn room(&mut self) -> Result<OwnedPermit<ClientPacket>, SendError<()>> {
        self.room.as_mut().await
    }

    /// Hands the packet over with the room `room` gave (dropped if the data plane is gone) and
    /// returns how long it waited.
    pub(super) fn finish(
        self,
        room: Result<OwnedPermit<ClientPacket>, SendError<()>>,
        now: Instant,
    ) -> Duration {
        if let Ok(permit) = room {
            permit.send(self.packet);
        }
        now.saturating_duration_since(self.since)
    }
}
