//! How the gateway and the operator retry a failed watch of the API server: 100 ms, doubling to
//! at most a second. While the API server is unreachable one watch then costs it at most one
//! request a second, and is back at most a second after it returns. kube's default backoff
//! grows to 30 s, during which a user disabled right after an outage would keep their session
//! and the operator would not render the change.

use std::time::Duration;

/// The retry waits of one watch (an iterator of waits that starts over on `reset`).
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    /// First wait after a failure.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// Longest wait between attempts.
    pub const MAX: Duration = Duration::from_secs(1);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(wait)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::utils::Backoff;

    use super::*;

    #[test]
    fn a_failed_watch_is_retried_at_most_a_second_apart_and_starts_over_after_a_success() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<Duration> = backoff.by_ref().take(6).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(100)));
    }
}
