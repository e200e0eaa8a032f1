//! Small statistics helpers for the reports.

use std::time::Duration;

/// The `p`-th percentile (0..=100, nearest rank) of sorted samples.
pub(crate) fn percentile(sorted: &[Duration], p: u32) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (u64::from(p.min(100)) * sorted.len() as u64).div_ceil(100);
    let index = usize::try_from(rank.saturating_sub(1)).unwrap_or(0);
    sorted.get(index).copied().unwrap_or_default()
}

/// Milliseconds with one decimal, for tables.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Bits per second as Mbit/s with one decimal.
pub(crate) fn mbit(bytes: u64, over: Duration) -> String {
    let secs = over.as_secs_f64();
    if secs <= 0.0 {
        return "0.0".into();
    }
    format!("{:.1}", bytes as f64 * 8.0 / secs / 1e6)
}

/// Bits per second as Mbit/s, as a number (for ratios), over `seconds`.
pub(crate) fn mbit_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds / 1e6
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50), Duration::from_millis(5));
        assert_eq!(percentile(&samples, 90), Duration::from_millis(9));
        assert_eq!(percentile(&samples, 99), Duration::from_millis(10));
        assert_eq!(percentile(&samples, 100), Duration::from_millis(10));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn rates_are_megabits_per_second() {
        assert_eq!(mbit(125_000_000, Duration::from_secs(1)), "1000.0");
        assert_eq!(mbit(1, Duration::ZERO), "0.0");
        assert!((mbit_per_s(125_000_000, 2.0) - 500.0).abs() < 1e-9);
        assert!(mbit_per_s(1, 0.0).abs() < f64::EPSILON);
    }
}
