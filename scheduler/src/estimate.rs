//! Exponentially weighted moving averages kept in one atomic word, so the hot path
//! reads and updates estimates without locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// An EWMA of a non-negative quantity; `None` until the first observation.
pub struct Ewma {
    bits: AtomicU64,
}

/// Bit pattern meaning "no observation yet" (a NaN no arithmetic here produces).
const EMPTY: u64 = u64::MAX;

impl Default for Ewma {
    fn default() -> Self {
        Ewma {
            bits: AtomicU64::new(EMPTY),
        }
    }
}

impl Ewma {
    pub fn with_value(value: f64) -> Self {
        let ewma = Ewma::default();
        if value.is_finite() && value >= 0.0 {
            ewma.bits.store(value.to_bits(), Ordering::Relaxed);
        }
        ewma
    }

    /// Restores a persisted value, replacing whatever is there.
    pub fn set(&self, value: f64) {
        if value.is_finite() && value >= 0.0 {
            self.bits.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> Option<f64> {
        match self.bits.load(Ordering::Relaxed) {
            EMPTY => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    pub fn observe(&self, sample: f64, alpha: f64) {
        if !sample.is_finite() || sample < 0.0 {
            return;
        }
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = if bits == EMPTY {
                    sample
                } else {
                    let current = f64::from_bits(bits);
                    current + alpha * (sample - current)
                };
                Some(next.to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_seeds_then_averages() {
        let ewma = Ewma::default();
        assert_eq!(ewma.get(), None);
        ewma.observe(10.0, 0.5);
        assert_eq!(ewma.get(), Some(10.0));
        ewma.observe(20.0, 0.5);
        assert_eq!(ewma.get(), Some(15.0));
        ewma.observe(f64::NAN, 0.5);
        ewma.observe(-1.0, 0.5);
        assert_eq!(ewma.get(), Some(15.0), "nonsense samples are ignored");
    }

    #[test]
    fn restored_value_is_kept() {
        assert_eq!(Ewma::with_value(2.5).get(), Some(2.5));
        assert_eq!(Ewma::with_value(f64::INFINITY).get(), None);
    }
}
