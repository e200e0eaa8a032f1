//! The packet router: which session gets a packet read from the TUN device.
//!
//! Sessions register their tunnel address with the sender half of a bounded channel; the TUN
//! reader calls [`Router::route`] for each packet. Routing never waits: a session whose queue is
//! full loses the packet (TCP inside the tunnel recovers) instead of stalling every other session
//! behind one slow TLS stream.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::mpsc;

/// The routing table shared by the TUN reader and the sessions.
#[derive(Debug, Default)]
pub struct Router {
    routes: RwLock<HashMap<Ipv4Addr, mpsc::Sender<Bytes>>>,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// What happened to a routed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Queued for the session that owns the destination address.
    Delivered,
    /// Dropped, for this reason.
    Dropped(DropReason),
}

/// Why a packet from the TUN device was not delivered. Also the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not an IPv4 packet, or shorter than an IPv4 header.
    NotIpv4,
    /// No session holds the destination address.
    NoRoute,
    /// The session's queue is full.
    QueueFull,
    /// The session has ended but not yet unregistered.
    SessionClosed,
    /// A TCP super-segment from the offloading device could not be split into packets (more
    /// segments than a read has buffers for: an MSS below ~512); counted once per super-segment.
    GsoSplitFailed,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// Another live session already routes this address.
    #[error("{0} is already routed to another session")]
    AddressTaken(Ipv4Addr),
}

/// Keeps a route alive; dropping it removes the route (if it still points at this session).
#[derive(Debug)]
pub struct RouteGuard {
    router: Arc<Router>,
    addr: Ipv4Addr,
    sender: mpsc::Sender<Bytes>,
}

impl Router {
    /// An empty routing table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Routes packets for `addr` to `sender` until the returned guard is dropped. A stale route
    /// whose receiver is gone is replaced; a live one is refused.
    pub fn register(
        self: &Arc<Self>,
        addr: Ipv4Addr,
        sender: mpsc::Sender<Bytes>,
    ) -> Result<RouteGuard, RouterError> {
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        if routes
            .get(&addr)
            .is_some_and(|existing| !existing.is_closed())
        {
            return Err(RouterError::AddressTaken(addr));
        }
        routes.insert(addr, sender.clone());
        Ok(RouteGuard {
            router: Arc::clone(self),
            addr,
            sender,
        })
    }

    /// Hands an IP packet to the session that owns its destination address, without waiting.
    pub fn route(&self, packet: Bytes) -> RouteOutcome {
        let outcome = self.try_route(packet);
        if let RouteOutcome::Dropped(reason) = outcome {
            self.count_drop(reason);
        }
        outcome
    }

    /// Counts a packet lost before it could be routed.
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many packets were dropped for `reason` since start.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Ordering::Relaxed)
    }

    /// Number of registered routes.
    pub fn len(&self) -> usize {
        self.routes
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Whether no route is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn try_route(&self, packet: Bytes) -> RouteOutcome {
        let Some(destination) = sstp_ppp::ipv4::destination(&packet) else {
            return RouteOutcome::Dropped(DropReason::NotIpv4);
        };
        let sender = {
            let routes = self
                .routes
                .read()
                .unwrap_or_else(|poison| poison.into_inner());
            match routes.get(&destination) {
                Some(sender) => sender.clone(),
                None => return RouteOutcome::Dropped(DropReason::NoRoute),
            }
        };
        match sender.try_send(packet) {
            Ok(()) => RouteOutcome::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => RouteOutcome::Dropped(DropReason::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                RouteOutcome::Dropped(DropReason::SessionClosed)
            }
        }
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self
            .router
            .routes
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        // A newer session may have replaced a stale route for the same address; leave it alone.
        if routes
            .get(&self.addr)
            .is_some_and(|current| current.same_channel(&self.sender))
        {
            routes.remove(&self.addr);
        }
    }
}

impl RouteGuard {
    /// The routed address.
    pub fn address(&self) -> Ipv4Addr {
        self.addr
    }
}

impl DropReason {
    /// Every reason, for pre-creating metric series.
    pub const ALL: [Self; 5] = [
        Self::NotIpv4,
        Self::NoRoute,
        Self::QueueFull,
        Self::SessionClosed,
        Self::GsoSplitFailed,
    ];

    /// The metric label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::NotIpv4 => "not_ipv4",
            Self::NoRoute => "no_route",
            Self::QueueFull => "queue_full",
            Self::SessionClosed => "session_closed",
            Self::GsoSplitFailed => "gso_split_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_to(dst: [u8; 4]) -> Bytes {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 8, 0, 1];
        p.extend_from_slice(&dst);
        Bytes::from(p)
    }

    #[tokio::test]
    async fn a_packet_reaches_the_session_that_owns_its_destination() {
        let router = Router::new();
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_b, mut rx_b) = mpsc::channel(4);
        let _a = router.register(Ipv4Addr::new(10, 8, 0, 2), tx_a).unwrap();
        let _b = router.register(Ipv4Addr::new(10, 8, 0, 3), tx_b).unwrap();
        assert_eq!(
            router.route(packet_to([10, 8, 0, 3])),
            RouteOutcome::Delivered
        );
        assert_eq!(rx_b.recv().await.unwrap(), packet_to([10, 8, 0, 3]));
        assert!(rx_a.try_recv().is_err());
    }

    #[test]
    fn unknown_destinations_and_non_ipv4_are_counted_as_drops() {
        let router = Router::new();
        assert_eq!(
            router.route(packet_to([1, 2, 3, 4])),
            RouteOutcome::Dropped(DropReason::NoRoute)
        );
        let ipv6 = Bytes::from(vec![0x60; 40]);
        assert_eq!(
            router.route(ipv6),
            RouteOutcome::Dropped(DropReason::NotIpv4)
        );
        assert_eq!(
            router.route(Bytes::from_static(&[0x45, 0])),
            RouteOutcome::Dropped(DropReason::NotIpv4)
        );
        assert_eq!(
            router.route(Bytes::new()),
            RouteOutcome::Dropped(DropReason::NotIpv4)
        );
        assert_eq!(router.drops(DropReason::NoRoute), 1);
        assert_eq!(router.drops(DropReason::NotIpv4), 3);
    }

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let router = Router::new();
        let (tx, _rx) = mpsc::channel(1);
        let _guard = router.register(Ipv4Addr::new(10, 8, 0, 2), tx).unwrap();
        assert_eq!(
            router.route(packet_to([10, 8, 0, 2])),
            RouteOutcome::Delivered
        );
        assert_eq!(
            router.route(packet_to([10, 8, 0, 2])),
            RouteOutcome::Dropped(DropReason::QueueFull)
        );
        assert_eq!(router.drops(DropReason::QueueFull), 1);
    }

    #[test]
    fn a_live_address_cannot_be_registered_twice_but_a_dead_one_can() {
        let router = Router::new();
        let addr = Ipv4Addr::new(10, 8, 0, 2);
        let (tx1, rx1) = mpsc::channel(1);
        let first = router.register(addr, tx1).unwrap();
        let (tx2, _rx2) = mpsc::channel(1);
        assert_eq!(
            router.register(addr, tx2.clone()).unwrap_err(),
            RouterError::AddressTaken(addr)
        );
        drop(rx1);
        assert_eq!(
            router.route(packet_to([10, 8, 0, 2])),
            RouteOutcome::Dropped(DropReason::SessionClosed)
        );
        let second = router.register(addr, tx2).unwrap();
        drop(first); // the stale guard must not remove the new route
        assert_eq!(router.len(), 1);
        drop(second);
        assert!(router.is_empty());
    }
}
