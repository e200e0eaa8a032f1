//! Authentication-failure throttling per (user name, source address).
//!
//! Keying on the pair, not the user alone, is what lets the real user in during an attack:
//! an attacker guessing `alice`'s password from one address blocks only that address for
//! `alice`, while `alice` on her own address still logs in. Keying on the pair and not the
//! address alone keeps one NAT'd office from locking all its users out because one of them
//! mistyped. At most `max_failures` failures inside `window` are allowed; then the pair is
//! refused without checking the password for `block`.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The throttle's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures allowed inside `window`.
    pub max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a pair stays refused once over the limit.
    pub block: Duration,
}

/// The failure book, shared by all sessions.
#[derive(Debug)]
pub struct AuthThrottle {
    limits: ThrottleLimits,
    entries: Mutex<HashMap<(String, IpAddr), Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Bound on tracked pairs so a flood of invented names cannot grow memory without limit; when
/// reached, entries with no recent failure are swept.
const MAX_ENTRIES: usize = 100_000;

impl AuthThrottle {
    /// An empty book.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` from `source` is refused right now.
    pub fn is_blocked(&self, user: &str, source: IpAddr, now: Instant) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&(user.to_owned(), source))
            .and_then(|e| e.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// Records a failed authentication of `user` from `source`.
    pub fn record_failure(&self, user: &str, source: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let window = self.limits.window.max(self.limits.block);
            entries.retain(|_, e| {
                e.blocked_until.is_some_and(|t| now < t)
                    || e.failures
                        .back()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let entry = entries.entry((user.to_owned(), source)).or_default();
        while entry
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.limits.window)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() >= self.limits.max_failures as usize {
            entry.blocked_until = Some(now + self.limits.block);
        }
    }

    /// Forgets the failures of `user` from `source` (after a successful login).
    pub fn record_success(&self, user: &str, source: IpAddr) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&(user.to_owned(), source));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> AuthThrottle {
        AuthThrottle::new(ThrottleLimits {
            max_failures: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        })
    }

    #[test]
    fn ten_failures_in_a_minute_block_only_that_user_from_that_source() {
        let t = throttle();
        let now = Instant::now();
        let attacker: IpAddr = "192.0.2.66".parse().unwrap();
        let office: IpAddr = "198.51.100.7".parse().unwrap();
        for i in 0..9 {
            t.record_failure("alice", attacker, now + Duration::from_secs(i));
            assert!(!t.is_blocked("alice", attacker, now + Duration::from_secs(i)));
        }
        t.record_failure("alice", attacker, now + Duration::from_secs(9));
        assert!(t.is_blocked("alice", attacker, now + Duration::from_secs(10)));
        assert!(!t.is_blocked("alice", office, now + Duration::from_secs(10)));
        assert!(!t.is_blocked("bob", attacker, now + Duration::from_secs(10)));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count_and_blocks_expire() {
        let t = throttle();
        let now = Instant::now();
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..9 {
            t.record_failure("bob", src, now + Duration::from_secs(i * 10));
        }
        // The first failures fell out of the window: 9 recorded, never 10 within 60 s.
        t.record_failure("bob", src, now + Duration::from_secs(95));
        assert!(!t.is_blocked("bob", src, now + Duration::from_secs(95)));
        for i in 0..10 {
            t.record_failure("carol", src, now + Duration::from_secs(i));
        }
        assert!(t.is_blocked("carol", src, now + Duration::from_secs(30)));
        assert!(!t.is_blocked("carol", src, now + Duration::from_secs(70)));
    }
}
