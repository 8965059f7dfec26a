//! Token buckets as GCRA: one atomic "theoretical arrival time" per key,
//! advanced by compare-and-swap, so a check takes no lock beyond the map
//! shard's read lock. A key whose bucket is full again is forgotten.

use dashmap::DashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How fast a bucket refills and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    /// Nanoseconds per request at the sustained rate.
    interval_ns: u64,
    /// Requests that may arrive at once.
    burst: u32,
}

impl Quota {
    /// `None` for an unlimited rate (`per_second <= 0`).
    pub fn new(per_second: f64, burst: u32) -> Option<Quota> {
        if per_second.is_nan() || per_second <= 0.0 || per_second.is_infinite() {
            return None;
        }
        let interval_ns = (1e9 / per_second).round().clamp(1.0, u64::MAX as f64) as u64;
        Some(Quota {
            interval_ns,
            burst: burst.max(1),
        })
    }

    fn tolerance_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst))
    }
}

pub struct Gcra<K: Eq + Hash> {
    cells: DashMap<K, AtomicU64>,
    epoch: Instant,
    /// Size at which full buckets are swept out of the map.
    sweep_at: AtomicUsize,
}

const MIN_SWEEP: usize = 4096;

impl<K: Eq + Hash + Clone> Gcra<K> {
    pub fn new() -> Self {
        Gcra {
            cells: DashMap::new(),
            epoch: Instant::now(),
            sweep_at: AtomicUsize::new(MIN_SWEEP),
        }
    }

    /// Takes one request from `key`'s bucket; `Err(wait)` when it is empty.
    pub fn check(&self, key: &K, quota: Quota) -> Result<(), Duration> {
        let now = self.now_ns();
        let result = match self.cells.get(key) {
            Some(cell) => take(&cell, now, quota),
            None => {
                let result = take(
                    &self.cells.entry(key.clone()).or_insert(AtomicU64::new(0)),
                    now,
                    quota,
                );
                self.maybe_sweep(now);
                result
            }
        };
        result.map_err(Duration::from_nanos)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Keys whose buckets have refilled hold nothing worth keeping.
    fn maybe_sweep(&self, now: u64) {
        let at = self.sweep_at.load(Ordering::Relaxed);
        if self.cells.len() < at {
            return;
        }
        self.cells
            .retain(|_, tat| tat.load(Ordering::Relaxed) > now);
        let next = (self.cells.len() * 2).max(MIN_SWEEP);
        self.sweep_at.store(next, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.cells.len()
    }
}

impl<K: Eq + Hash + Clone> Default for Gcra<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// Advances the cell's arrival time by one interval, unless that would put it
/// further ahead of `now` than the burst allows: then the wait, in ns.
fn take(cell: &AtomicU64, now: u64, quota: Quota) -> Result<(), u64> {
    let mut current = cell.load(Ordering::Acquire);
    loop {
        let next = current.max(now).saturating_add(quota.interval_ns);
        let ahead = next - now;
        if ahead > quota.tolerance_ns() {
            return Err(ahead - quota.tolerance_ns());
        }
        match cell.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let gcra = Gcra::new();
        let quota = Quota::new(1.0, 3).unwrap();
        for _ in 0..3 {
            assert!(gcra.check(&"a", quota).is_ok());
        }
        let wait = gcra.check(&"a", quota).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(gcra.check(&"b", quota).is_ok(), "keys are independent");
    }

    #[test]
    fn refused_requests_do_not_spend_tokens() {
        let quota = Quota::new(1000.0, 1).unwrap();
        let cell = AtomicU64::new(0);
        assert!(take(&cell, 0, quota).is_ok());
        for _ in 0..10 {
            assert!(take(&cell, 0, quota).is_err());
        }
        assert!(take(&cell, 1_000_000, quota).is_ok(), "one interval later");
    }

    #[test]
    fn zero_or_nonsense_rates_are_unlimited() {
        assert_eq!(Quota::new(0.0, 10), None);
        assert_eq!(Quota::new(f64::NAN, 10), None);
        assert_eq!(Quota::new(-1.0, 10), None);
        assert_eq!(Quota::new(5.0, 0).unwrap().burst, 1);
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let gcra = Gcra::new();
        let quota = Quota::new(1e9, 1).unwrap();
        for key in 0..(MIN_SWEEP + 10) {
            let _ = gcra.check(&key, quota);
        }
        // Every bucket refills within a nanosecond: the next sweep takes them all.
        let later = gcra.now_ns() + 1_000_000;
        gcra.sweep_at.store(0, Ordering::Relaxed);
        gcra.maybe_sweep(later);
        assert!(gcra.len() < MIN_SWEEP, "{} left", gcra.len());
    }
}
