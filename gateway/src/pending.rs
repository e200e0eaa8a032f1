//! The budget of connections that have not logged in yet, kept apart from established sessions
//! so that no number of idle, slow or never-authenticating connections can keep a user out.
//!
//! Every connection takes a [`PendingTicket`] at accept (after the PROXY header, when there is
//! one) and gives it up when its user is admitted ([`PendingTicket::promote`]) or it ends. The
//! table holds at most `limit` tickets, at most `per_source` of them from one source (an IPv4
//! address, or an IPv6 /64, which one host usually owns whole). When it is full, a newcomer
//! is not refused: the oldest pending connection of the source holding the most is evicted
//! instead, counting the newcomer with its own source. A flooder therefore churns its own
//! connections, and a user with one connection in flight loses it only when every source
//! holds no more than one, and it is the oldest of all. Established sessions never hold a
//! ticket, so they are never evicted.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tracing::warn;

use crate::metrics::{Metrics, RejectReason};

/// Pre-authentication connections, by source.
#[derive(Debug)]
pub struct PendingConnections {
    table: Mutex<Table>,
    limit: usize,
    per_source: usize,
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Table {
    by_source: HashMap<SourceKey, VecDeque<Entry>>,
    total: usize,
    next_seq: u64,
    shedding: ShedLog,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    evict: Arc<Notify>,
}

/// What per-source limits count: an IPv4 address, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    /// The key of `ip` (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// The source already holds its share of pending connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} connections from this source are already waiting to log in")]
pub struct PerSourceFull(pub usize);

/// One pending connection's place; dropping it gives the place back.
#[derive(Debug)]
pub struct PendingTicket {
    table: Arc<PendingConnections>,
    key: SourceKey,
    seq: u64,
    evict: Arc<Notify>,
    /// The place was given back already (promoted).
    left: bool,
}

impl PendingConnections {
    /// At most `limit` pending connections, `per_source` of them from one source.
    pub fn new(limit: u32, per_source: u32, metrics: Metrics) -> Arc<Self> {
        metrics.set_pending(0);
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            limit: limit.max(1) as usize,
            per_source: per_source.max(1) as usize,
            metrics,
        })
    }

    /// Takes a place for a connection from `source`, evicting another pending connection
    /// when the table is full (see the module docs).
    pub fn enter(self: &Arc<Self>, source: IpAddr) -> Result<PendingTicket, PerSourceFull> {
        let key = SourceKey::of(source);
        let mut table = self.lock();
        let own = table.by_source.get(&key).map_or(0, VecDeque::len);
        if own >= self.per_source {
            table.shedding.refused += 1;
            table.shedding.maybe_log(Instant::now(), self.limit);
            drop(table);
            self.metrics
                .connection_rejected(RejectReason::PerSourceLimit);
            return Err(PerSourceFull(self.per_source));
        }
        let mut evicted = false;
        if table.total >= self.limit
            && let Some(victim) = table.victim(key, own + 1)
        {
            table.remove_oldest(victim).notify_one();
            table.shedding.evicted += 1;
            table.shedding.maybe_log(Instant::now(), self.limit);
            evicted = true;
        }
        let seq = table.next_seq;
        table.next_seq += 1;
        let evict = Arc::new(Notify::new());
        table.by_source.entry(key).or_default().push_back(Entry {
            seq,
            evict: Arc::clone(&evict),
        });
        table.total += 1;
        self.metrics.set_pending(table.total);
        drop(table);
        if evicted {
            self.metrics
                .connection_rejected(RejectReason::PendingEvicted);
        }
        Ok(PendingTicket {
            table: Arc::clone(self),
            key,
            seq,
            evict,
            left: false,
        })
    }

    /// Pending connections right now.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    /// Whether no connection is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes `ticket`'s entry; false when it was evicted already.
    fn leave(&self, key: SourceKey, seq: u64) -> bool {
        let mut table = self.lock();
        let Some(queue) = table.by_source.get_mut(&key) else {
            return false;
        };
        let Some(index) = queue.iter().position(|e| e.seq == seq) else {
            return false;
        };
        queue.remove(index);
        if queue.is_empty() {
            table.by_source.remove(&key);
        }
        table.total -= 1;
        self.metrics.set_pending(table.total);
        true
    }
}

impl Table {
    /// The source to evict from for a newcomer that would make `own` connections of `key`:
    /// the one holding the most (the newcomer's own on a tie), the oldest head among equals.
    fn victim(&self, key: SourceKey, own: usize) -> Option<SourceKey> {
        let (biggest, len) = self
            .by_source
            .iter()
            .map(|(k, q)| (*k, q.len(), q.front().map_or(u64::MAX, |e| e.seq)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(k, len, _)| (k, len))?;
        if own >= len && self.by_source.contains_key(&key) {
            return Some(key);
        }
        Some(biggest)
    }

    fn remove_oldest(&mut self, key: SourceKey) -> Arc<Notify> {
        let queue = self
            .by_source
            .get_mut(&key)
            .expect("the victim source holds connections");
        let entry = queue.pop_front().expect("the victim queue is not empty");
        if queue.is_empty() {
            self.by_source.remove(&key);
        }
        self.total -= 1;
        entry.evict
    }
}

impl PendingTicket {
    /// Resolves when the table evicted this connection to make room for a newer one.
    pub fn evicted(&self) -> impl Future<Output = ()> + Send + 'static {
        let evict = Arc::clone(&self.evict);
        async move { evict.notified().await }
    }

    /// The connection's user was admitted: its place goes back, and it can no longer be
    /// evicted. False when it had been evicted already (the caller must then refuse).
    pub fn promote(mut self) -> bool {
        self.left = true;
        self.table.leave(self.key, self.seq)
    }
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        if !self.left {
            self.table.leave(self.key, self.seq);
        }
    }
}

/// Shedding is logged at most once per [`SHED_LOG_INTERVAL`], with the counts since the last line.
#[derive(Debug, Default)]
struct ShedLog {
    last: Option<Instant>,
    evicted: u64,
    refused: u64,
}

impl ShedLog {
    fn maybe_log(&mut self, now: Instant, limit: usize) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < SHED_LOG_INTERVAL)
        {
            return;
        }
        warn!(
            evicted = self.evicted,
            refused_per_source = self.refused,
            limit,
            "shedding connections that have not logged in (pending limit or per-source share reached)"
        );
        self.last = Some(now);
        self.evicted = 0;
        self.refused = 0;
    }
}

/// How often shedding is logged while it goes on.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;
