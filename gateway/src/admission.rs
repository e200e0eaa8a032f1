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
