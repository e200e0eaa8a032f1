//! The sessions this gateway carries now, as the admin port's `/sessions` lists them: one entry
//! per established session, from its `session_start` audit record to its `session_end`, with the
//! same fields (the user only where the audit records name users) and byte counters that move
//! with the traffic. Never a credential.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// The established sessions, by session id. Shared by the session tasks and the admin server.
#[derive(Debug, Default)]
pub struct SessionTable {
    entries: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

#[derive(Debug)]
struct Entry {
    user: Option<String>,
    client: SocketAddr,
    tunnel_address: Ipv4Addr,
    since: jiff::Timestamp,
    bytes_from_client: AtomicU64,
    bytes_to_client: AtomicU64,
}

/// A session's place in the table; dropping it takes the session out.
#[derive(Debug)]
pub(crate) struct Listed {
    table: Arc<SessionTable>,
    id: u64,
    entry: Arc<Entry>,
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Lists session `id`; `user` is `None` where user names are not recorded.
    pub(crate) fn insert(
        self: &Arc<Self>,
        id: u64,
        user: Option<String>,
        client: SocketAddr,
        tunnel_address: Ipv4Addr,
        since: jiff::Timestamp,
    ) -> Listed {
        let entry = Arc::new(Entry {
            user,
            client,
            tunnel_address,
            since,
            bytes_from_client: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
        });
        self.lock().insert(id, Arc::clone(&entry));
        Listed {
            table: Arc::clone(self),
            id,
            entry,
        }
    }

    /// How many sessions are listed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `{"sessions": [...]}`, oldest session first: per session its id, user (null when not
    /// recorded), client address and port, tunnel address, start (RFC 3339) and bytes each way.
    pub fn to_json(&self) -> String {
        let sessions: Vec<serde_json::Value> = self
            .lock()
            .iter()
            .map(|(id, entry)| {
                serde_json::json!({
                    "session": id,
                    "user": entry.user,
                    "client": entry.client.to_string(),
                    "tunnel_address": entry.tunnel_address.to_string(),
                    "since": entry.since.to_string(),
                    "bytes_from_client": entry.bytes_from_client.load(Ordering::Relaxed),
                    "bytes_to_client": entry.bytes_to_client.load(Ordering::Relaxed),
                })
            })
            .collect();
        serde_json::json!({ "sessions": sessions }).to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Entry>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Listed {
    /// Counts IP bytes from the client.
    pub(crate) fn count_from_client(&self, bytes: u64) {
        self.entry
            .bytes_from_client
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts IP bytes to the client.
    pub(crate) fn count_to_client(&self, bytes: u64) {
        self.entry
            .bytes_to_client
            .fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_session_shows_its_fields_and_counters_and_goes_when_dropped() {
        let table = SessionTable::new();
        let client: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let since: jiff::Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let alice = table.insert(
            7,
            Some("alice".into()),
            client,
            Ipv4Addr::new(10, 8, 0, 2),
            since,
        );
        let anonymous = table.insert(9, None, client, Ipv4Addr::new(10, 8, 0, 3), since);
        alice.count_from_client(100);
        alice.count_to_client(2000);
        alice.count_to_client(1);
        let listed: serde_json::Value = serde_json::from_str(&table.to_json()).unwrap();
        assert_eq!(
            listed["sessions"][0],
            serde_json::json!({
                "session": 7, "user": "alice", "client": "192.0.2.7:50000",
                "tunnel_address": "10.8.0.2", "since": "2026-12-02T10:00:00Z",
                "bytes_from_client": 100, "bytes_to_client": 2001,
            })
        );
        assert_eq!(listed["sessions"][1]["user"], serde_json::Value::Null);
        drop(alice);
        assert_eq!(table.len(), 1);
        drop(anonymous);
        assert!(table.is_empty());
        assert_eq!(table.to_json(), r#"{"sessions":[]}"#);
    }
}
