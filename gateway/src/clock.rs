//! The time the session tasks and the client driver run on: tokio's clock, read as the std
//! `Instant` the sans-IO state machines take.
//!
//! In production it is the system's monotonic clock, like `Instant::now()`. On tokio's paused
//! clock (the in-memory session tests) it moves only when the runtime advances it, to the
//! next timer. Deadlines computed from `std::time::Instant::now()` would not: the wall clock
//! stands still while the runtime jumps ahead, a timer would wake before its deadline, see it
//! not passed, and sleep again forever.

use std::time::Instant;

/// Now, on tokio's clock.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
