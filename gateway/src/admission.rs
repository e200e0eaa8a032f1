//! Admitting a session whose credentials checked out, before Success is sent (so that a
//! refusal still reaches the client as an authentication Failure that says why): the user's
//! session limit, the gateway's `maxSessions`, then an address from the pool (the user's
//! static one when the users document gives one). What it takes is held until the session
//! ends, when the state machine that owns this is dropped.

use std::{
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use sstp_ppp::{AddressAllocator, Refusal};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::{
    ip_pool::IpPool,
    metrics::Metrics,
    pending::PendingTicket,
    users::{Registration, SessionRegistry, UsersReceiver, session_limit},
};

/// The gateway's established sessions: `maxSessions` places, taken at admission.
#[derive(Debug, Clone)]
pub struct SessionSlots {
    places: Arc<Semaphore>,
}

impl SessionSlots {
    /// `max` places.
    pub fn new(max: u32) -> Self {
        Self {
            places: Arc::new(Semaphore::new(max as usize)),
        }
    }

    /// Whether every place is taken (new requests get HTTP 503).
    pub fn is_full(&self) -> bool {
        self.places.available_permits() == 0
    }

    fn take(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.places).try_acquire_owned().ok()
    }
}

/// What every admission shares.
#[derive(Debug, Clone)]
pub struct AdmissionShared {
    /// The address pool.
    pub pool: Arc<Mutex<IpPool>>,
    /// The users document in force.
    pub users: UsersReceiver,
    /// Authenticated sessions by user.
    pub registry: Arc<SessionRegistry>,
    /// The gateway's session places.
    pub slots: SessionSlots,
    /// Sessions per user unless the user's entry says otherwise.
    pub max_sessions_per_user: u32,
    /// Metrics (pool gauges).
    pub metrics: Metrics,
}

/// The admission of one connection, owned by its state machine.
#[derive(Debug)]
pub struct Admission {
    shared: AdmissionShared,
    session_id: u64,
    kick: Arc<Notify>,
    /// The connection's pre-login place, given up when it is admitted.
    pending: Option<PendingTicket>,
    /// What an admitted session holds until it ends.
    held: Option<(Registration, OwnedSemaphorePermit)>,
}

impl Admission {
    /// The admission of session `session_id`, whose `kick` ends it when its user loses access.
    pub fn new(
        shared: AdmissionShared,
        session_id: u64,
        kick: Arc<Notify>,
        pending: Option<PendingTicket>,
    ) -> Self {
        Self {
            shared,
            session_id,
            kick,
            pending,
            held: None,
        }
    }

    fn address_for(&self, username: &str) -> Result<Ipv4Addr, Refusal> {
        let wanted = self
            .shared
            .users
            .borrow()
            .users
            .get(username)
            .and_then(|entry| entry.static_address);
        let mut pool = self.shared.pool.lock().unwrap_or_else(|p| p.into_inner());
        let result = match wanted {
            Some(addr) => pool.allocate_static(addr),
            None => pool.allocate(),
        };
        self.shared.metrics.set_pool(pool.counts());
        result.map_err(|err| {
            warn!(error = %err, "no address for a session");
            Refusal::AddressExhausted
        })
    }
}

impl AddressAllocator for Admission {
    fn allocate(&mut self, username: &str) -> Result<Ipv4Addr, Refusal> {
        let limit = {
            let document = self.shared.users.borrow();
            session_limit(
                document.users.get(username),
                self.shared.max_sessions_per_user,
            )
        };
        let registration = self
            .shared
            .registry
            .register(username, self.session_id, Arc::clone(&self.kick), limit)
            .map_err(|err| {
                debug!(error = %err, "session limit reached");
                Refusal::SessionLimit
            })?;
        let Some(place) = self.shared.slots.take() else {
            debug!("maxSessions reached");
            return Err(Refusal::GatewayFull);
        };
        // Evicted at the very moment it logged in: the place it was promised went to a
        // newer connection, so this one must not take more than its share.
        if let Some(ticket) = self.pending.take()
            && !ticket.promote()
        {
            return Err(Refusal::GatewayFull);
        }
        let address = self.address_for(username)?;
        self.held = Some((registration, place));
        Ok(address)
    }

    fn release(&mut self, addr: Ipv4Addr) {
        let mut pool = self.shared.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.release(addr);
        self.shared.metrics.set_pool(pool.counts());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use sstp_api::{UserEntry, UsersDocument, users::NtHashHex};
    use tokio::sync::{Notify, watch};

    use super::*;
    use crate::{ip_pool::IpPool, pending::PendingConnections};

    fn shared(max_sessions: u32, per_user: u32) -> AdmissionShared {
        let mut doc = UsersDocument::new();
        doc.users.insert(
            "alice".into(),
            UserEntry::new(NtHashHex::from_bytes([1; 16])),
        );
        let (_tx, users) = watch::channel(Arc::new(doc));
        AdmissionShared {
            pool: Arc::new(Mutex::new(
                IpPool::new("10.9.0.0/29".parse().unwrap()).unwrap(),
            )),
            users,
            registry: SessionRegistry::new(),
            slots: SessionSlots::new(max_sessions),
            max_sessions_per_user: per_user,
            metrics: Metrics::new(),
        }
    }

    fn admission(shared: &AdmissionShared, id: u64) -> Admission {
        Admission::new(shared.clone(), id, Arc::new(Notify::new()), None)
    }

    #[test]
    fn each_limit_refuses_with_its_own_reason_and_an_ended_session_gives_its_place_back() {
        let shared = shared(2, 1);
        let mut first = admission(&shared, 1);
        let address = first.allocate("alice").unwrap();
        assert_eq!(
            admission(&shared, 2).allocate("alice"),
            Err(Refusal::SessionLimit)
        );
        let mut bob = admission(&shared, 3);
        bob.allocate("bob").unwrap();
        assert!(shared.slots.is_full());
        assert_eq!(
            admission(&shared, 4).allocate("carol"),
            Err(Refusal::GatewayFull)
        );
        first.release(address);
        drop(first);
        assert!(!shared.slots.is_full());
        assert_eq!(shared.registry.len(), 1, "bob only");
        admission(&shared, 5).allocate("alice").unwrap();
    }

    #[test]
    fn a_connection_evicted_while_it_logged_in_is_refused() {
        let shared = shared(10, 10);
        let pending = PendingConnections::new(1, 1, Metrics::new());
        let ticket = pending.enter("192.0.2.1".parse().unwrap()).unwrap();
        let mut evicted = Admission::new(shared.clone(), 1, Arc::new(Notify::new()), Some(ticket));
        let _newer = pending.enter("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(evicted.allocate("alice"), Err(Refusal::GatewayFull));
        assert_eq!(shared.registry.len(), 0, "nothing stays held");
    }
}
