//! A lock-free circuit breaker per backend: closed → open after consecutive
//! failures → half-open after a cool-down, where one probe decides.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
    /// The value exported as a Prometheus gauge.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

const CLOSED: u8 = 0;
const HALF_OPEN: u8 = 1;
const OPEN: u8 = 2;

pub struct Breaker {
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    /// Microseconds since `epoch` when the circuit last opened.
    opened_at_us: AtomicU64,
    threshold: u32,
    open_us: u64,
    epoch: Instant,
}

/// Whether an attempt was allowed as the half-open probe; reported back on completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Normal,
    Probe,
}

impl Breaker {
    pub fn new(threshold: u32, open_seconds: f64) -> Self {
        Breaker {
            state: AtomicU8::new(CLOSED),
            consecutive_failures: AtomicU32::new(0),
            opened_at_us: AtomicU64::new(0),
            threshold: threshold.max(1),
            open_us: (open_seconds.max(0.0) * 1e6) as u64,
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn state(&self) -> CircuitState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => CircuitState::Closed,
            HALF_OPEN => CircuitState::HalfOpen,
            _ => CircuitState::Open,
        }
    }

    /// Could an attempt be let through now? Side-effect free, for ranking.
    pub fn is_available(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            CLOSED => true,
            OPEN => self.now_us() >= self.opened_at_us.load(Ordering::Acquire) + self.open_us,
            _ => false, // half-open: its one probe is already out
        }
    }

    /// Lets an attempt through, turning an expired open circuit half-open for exactly
    /// one probe. `None` means the backend must be skipped.
    pub fn try_admit(&self) -> Option<Admission> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Some(Admission::Normal),
            OPEN if self.is_available() => self
                .state
                .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                .ok()
                .map(|_| Admission::Probe),
            _ => None,
        }
    }

    pub fn record_success(&self, admission: Admission) {
        self.consecutive_failures.store(0, Ordering::Release);
        if admission == Admission::Probe {
            self.state.store(CLOSED, Ordering::Release);
        }
    }

    pub fn record_failure(&self, admission: Admission) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let reopen = admission == Admission::Probe;
        if reopen || failures >= self.threshold {
            self.opened_at_us.store(self.now_us(), Ordering::Release);
            if reopen {
                self.state.store(OPEN, Ordering::Release);
            } else {
                // Only a closed circuit trips here; a half-open one is decided by its probe.
                let _ =
                    self.state
                        .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }

    /// A probe that never ran (its job left first) must not leave the circuit half-open forever.
    pub fn abandon(&self, admission: Admission) {
        if admission == Admission::Probe {
            let _ =
                self.state
                    .compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_through_one_probe() {
        let breaker = Breaker::new(2, 0.0);
        let first = breaker.try_admit().unwrap();
        breaker.record_failure(first);
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record_failure(Admission::Normal);
        assert_eq!(breaker.state(), CircuitState::Open);

        // Cool-down of zero: the next admission is the single probe.
        assert_eq!(breaker.try_admit(), Some(Admission::Probe));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.try_admit(), None, "only one probe at a time");
        breaker.record_success(Admission::Probe);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn failed_probe_reopens_and_waits_again() {
        let breaker = Breaker::new(1, 3600.0);
        breaker.record_failure(Admission::Normal);
        assert!(!breaker.is_available());
        assert_eq!(breaker.try_admit(), None);

        let quick = Breaker::new(1, 0.0);
        quick.record_failure(Admission::Normal);
        let probe = quick.try_admit().unwrap();
        quick.record_failure(probe);
        assert_eq!(quick.state(), CircuitState::Open);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let breaker = Breaker::new(2, 60.0);
        breaker.record_failure(Admission::Normal);
        breaker.record_success(Admission::Normal);
        breaker.record_failure(Admission::Normal);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn abandoned_probe_returns_to_open() {
        let breaker = Breaker::new(1, 0.0);
        breaker.record_failure(Admission::Normal);
        let probe = breaker.try_admit().unwrap();
        breaker.abandon(probe);
        assert_eq!(breaker.state(), CircuitState::Open);
    }
}
