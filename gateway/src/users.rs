//! Users as the sessions see them: the credential lookup over the users document in force,
//! the address allocator that honours static addresses, and the registry of authenticated
//! sessions that enforces per-user limits and ends sessions whose user was disabled, expired or
//! removed.
//!
//! The document arrives through a `watch` channel fed by a users source (a file,
//! [`crate::users_file`], or the Secret watched by [`crate::k8s_source`]); nothing here knows
//! where it came from.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use sstp_api::{UserEntry, UsersDocument};
use sstp_ppp::{Lookup, NtHash, UserLookup};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::{ip_pool::IpPool, metrics::Metrics, throttle::AuthThrottle};

/// The users document in force, as a receiver of the source's channel.
pub type UsersReceiver = watch::Receiver<Arc<UsersDocument>>;

/// The credential lookup of one session: the current document plus the throttle for this
/// session's source address.
#[derive(Debug)]
pub struct SessionLookup {
    users: UsersReceiver,
    throttle: Arc<AuthThrottle>,
    source: IpAddr,
}

impl SessionLookup {
    /// A lookup for a session from `source`.
    pub fn new(users: UsersReceiver, throttle: Arc<AuthThrottle>, source: IpAddr) -> Self {
        Self {
            users,
            throttle,
            source,
        }
    }
}

impl UserLookup for SessionLookup {
    fn lookup(&self, username: &str) -> Lookup {
        if self
            .throttle
            .is_blocked(username, self.source, Instant::now())
        {
            return Lookup::Throttled;
        }
        let document = Arc::clone(&self.users.borrow());
        match document.users.get(username) {
            None => Lookup::Unknown,
            Some(entry) if entry.disabled => Lookup::Disabled,
            Some(entry) if !entry.is_active_at(Timestamp::now()) => Lookup::Expired,
            Some(entry) => match entry.nt_hash.to_bytes() {
                Some(bytes) => Lookup::Found(NtHash(bytes)),
                // validate() refuses such documents; treat a slip as an unknown user.
                None => Lookup::Unknown,
            },
        }
    }
}

/// A session id and the notifier that ends it.
type Member = (u64, Arc<Notify>);

/// Authenticated sessions by user name.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, Vec<Member>>>,
}

/// Why a session may not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the user already has {0} sessions")]
pub struct TooManySessions(pub u32);

/// Membership of one session; dropping it leaves the registry.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<SessionRegistry>,
    user: String,
    id: u64,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers session `id` of `user`, whose `kick` is notified when the user loses access.
    /// Refused when the user already has `limit` sessions.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        id: u64,
        kick: Arc<Notify>,
        limit: u32,
    ) -> Result<Registration, TooManySessions> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let list = sessions.entry(user.to_owned()).or_default();
        if list.len() >= limit as usize {
            return Err(TooManySessions(limit));
        }
        list.push((id, kick));
        Ok(Registration {
            registry: Arc::clone(self),
            user: user.to_owned(),
            id,
        })
    }

    /// Notifies every session of a user the document no longer admits; returns how many.
    pub fn kick_revoked(&self, document: &UsersDocument, now: Timestamp) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mut kicked = 0;
        for (user, list) in sessions.iter() {
            let allowed = document
                .users
                .get(user)
                .is_some_and(|entry| entry.is_active_at(now));
            if !allowed {
                for (_, kick) in list {
                    kick.notify_one();
                    kicked += 1;
                }
            }
        }
        kicked
    }

    /// Number of registered sessions.
    pub fn len(&self) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().map(Vec::len).sum()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sessions = self
            .registry
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(list) = sessions.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                sessions.remove(&self.user);
            }
        }
    }
}

/// The per-user session limit: the user's own `maxSessions`, else the gateway default.
pub fn session_limit(entry: Option<&UserEntry>, default: u32) -> u32 {
    entry.and_then(|e| e.max_sessions).unwrap_or(default)
}

/// Keeps sessions and the pool in line with the document: on every change (and every
/// [`EXPIRY_CHECK`] for `expiresAt`) kicks sessions of users no longer admitted, and reserves
/// the static addresses.
pub async fn enforce(
    mut users: UsersReceiver,
    registry: Arc<SessionRegistry>,
    pool: Arc<Mutex<IpPool>>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(EXPIRY_CHECK);
    loop {
        let document = Arc::clone(&users.borrow_and_update());
        {
            let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
            let refused =
                pool.set_reserved(document.users.values().filter_map(|e| e.static_address));
            if !refused.is_empty() {
                warn!(
                    count = refused.len(),
                    "static addresses outside the pool are ignored"
                );
            }
            metrics.set_pool(pool.counts());
        }
        let kicked = registry.kick_revoked(&document, Timestamp::now());
        if kicked > 0 {
            info!(
                sessions = kicked,
                "ending sessions of users no longer admitted"
            );
        }
        tokio::select! {
            () = &mut shutdown => return,
            changed = users.changed() => if changed.is_err() {
                debug!("users source ended; the last document stays in force");
                std::future::pending::<()>().await;
            },
            _ = ticker.tick() => {}
        }
    }
}

/// How often `expiresAt` is re-checked for established sessions.
pub const EXPIRY_CHECK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use sstp_api::users::NtHashHex;

    use super::*;

    fn document(entries: &[(&str, bool)]) -> UsersDocument {
        let mut doc = UsersDocument::new();
        for (name, disabled) in entries {
            let mut entry = UserEntry::new(NtHashHex::from_bytes([7; 16]));
            entry.disabled = *disabled;
            doc.users.insert((*name).to_owned(), entry);
        }
        doc
    }

    #[test]
    fn the_registry_enforces_the_per_user_limit_and_forgets_ended_sessions() {
        let registry = SessionRegistry::new();
        let first = registry
            .register("alice", 1, Arc::new(Notify::new()), 2)
            .unwrap();
        let _second = registry
            .register("alice", 2, Arc::new(Notify::new()), 2)
            .unwrap();
        assert_eq!(
            registry
                .register("alice", 3, Arc::new(Notify::new()), 2)
                .unwrap_err(),
            TooManySessions(2)
        );
        let _bob = registry
            .register("bob", 4, Arc::new(Notify::new()), 2)
            .unwrap();
        drop(first);
        assert_eq!(registry.len(), 2);
        registry
            .register("alice", 5, Arc::new(Notify::new()), 2)
            .unwrap();
    }

    #[tokio::test]
    async fn only_sessions_of_disabled_expired_or_removed_users_are_kicked() {
        let registry = SessionRegistry::new();
        let kicks: Vec<Arc<Notify>> = (0..4).map(|_| Arc::new(Notify::new())).collect();
        let users = ["alice", "bob", "carol", "dave"];
        let _registrations: Vec<_> = users
            .iter()
            .zip(&kicks)
            .enumerate()
            .map(|(i, (user, kick))| {
                registry
                    .register(user, i as u64, Arc::clone(kick), 1)
                    .unwrap()
            })
            .collect();
        let mut doc = document(&[("alice", false), ("bob", true), ("carol", false)]);
        doc.users.get_mut("carol").unwrap().expires_at = Some(Timestamp::UNIX_EPOCH);
        assert_eq!(registry.kick_revoked(&doc, Timestamp::now()), 3);
        // notify_one stores a permit: a kicked session sees it even if it was not waiting.
        for kick in &kicks[1..] {
            tokio::time::timeout(Duration::from_secs(1), kick.notified())
                .await
                .unwrap();
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(50), kicks[0].notified())
                .await
                .is_err()
        );
    }

    #[test]
    fn the_lookup_reports_each_user_state_and_the_throttle() {
        let mut doc = document(&[("alice", false), ("bob", true), ("carol", false)]);
        doc.users.get_mut("carol").unwrap().expires_at = Some(Timestamp::UNIX_EPOCH);
        let (_tx, rx) = watch::channel(Arc::new(doc));
        let throttle = Arc::new(AuthThrottle::new(crate::throttle::ThrottleLimits {
            max_failures: 1,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }));
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let lookup = SessionLookup::new(rx, Arc::clone(&throttle), source);
        assert!(matches!(lookup.lookup("alice"), Lookup::Found(hash) if hash.0 == [7; 16]));
        assert!(matches!(lookup.lookup("bob"), Lookup::Disabled));
        assert!(matches!(lookup.lookup("carol"), Lookup::Expired));
        assert!(matches!(lookup.lookup("mallory"), Lookup::Unknown));
        throttle.record_failure("alice", source, Instant::now());
        assert!(matches!(lookup.lookup("alice"), Lookup::Throttled));
    }
}
