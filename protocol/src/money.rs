//! Money is an integer count of micro-dollars (1 USD = 1_000_000 µ$) everywhere
//! inside GPU-Bridge; dollars as floating point exist only at the JSON edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of money in micro-dollars. Never negative: debts are not representable.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub u64);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MoneyError {
    #[error("amount must be a finite, non-negative number of dollars")]
    NotAnAmount,
    #[error("amount is too large")]
    TooLarge,
}

/// Largest amount accepted from the JSON edge: one billion dollars. Far above any real
/// balance, far below u64 overflow for every sum we make.
const MAX_DOLLARS: f64 = 1e9;

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const PER_DOLLAR: u64 = 1_000_000;

    /// Converts a dollar amount from JSON, rounding to the nearest micro-dollar.
    pub fn from_dollars(dollars: f64) -> Result<Self, MoneyError> {
        if !dollars.is_finite() || dollars < 0.0 {
            return Err(MoneyError::NotAnAmount);
        }
        if dollars > MAX_DOLLARS {
            return Err(MoneyError::TooLarge);
        }
        Ok(Micros((dollars * Self::PER_DOLLAR as f64).round() as u64))
    }

    /// Dollars for the JSON edge only.
    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / Self::PER_DOLLAR as f64
    }

    /// Cost of `seconds` of work at `per_second`, rounded up to the next micro-dollar so
    /// an estimate never undercharges what it promises to cover.
    pub fn per_second_times(per_second: Micros, seconds: f64) -> Micros {
        if !seconds.is_finite() || seconds <= 0.0 {
            return Micros::ZERO;
        }
        Micros((per_second.0 as f64 * seconds).ceil().min(u64::MAX as f64) as u64)
    }

    pub fn saturating_add(self, other: Micros) -> Micros {
        Micros(self.0.saturating_add(other.0))
    }

    pub fn checked_sub(self, other: Micros) -> Option<Micros> {
        self.0.checked_sub(other.0).map(Micros)
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "${}.{:06}",
            self.0 / Self::PER_DOLLAR,
            self.0 % Self::PER_DOLLAR
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_trip_to_the_micro() {
        assert_eq!(Micros::from_dollars(0.003).unwrap(), Micros(3_000));
        assert_eq!(Micros::from_dollars(26.25).unwrap(), Micros(26_250_000));
        assert_eq!(Micros(3_000).as_dollars(), 0.003);
        // 0.1 + 0.2 style float noise must not leak into the integer.
        assert_eq!(Micros::from_dollars(0.1 + 0.2).unwrap(), Micros(300_000));
    }

    #[test]
    fn bad_amounts_are_refused() {
        assert_eq!(Micros::from_dollars(-1.0), Err(MoneyError::NotAnAmount));
        assert_eq!(Micros::from_dollars(f64::NAN), Err(MoneyError::NotAnAmount));
        assert_eq!(
            Micros::from_dollars(f64::INFINITY),
            Err(MoneyError::NotAnAmount)
        );
        assert_eq!(Micros::from_dollars(2e9), Err(MoneyError::TooLarge));
    }

    #[test]
    fn per_second_cost_rounds_up() {
        assert_eq!(
            Micros::per_second_times(Micros(2_400), 25.0),
            Micros(60_000)
        );
        assert_eq!(Micros::per_second_times(Micros(3), 0.5), Micros(2));
        assert_eq!(Micros::per_second_times(Micros(3), -2.0), Micros::ZERO);
    }

    #[test]
    fn display_is_exact() {
        assert_eq!(Micros(1_500_000).to_string(), "$1.500000");
        assert_eq!(Micros(3).to_string(), "$0.000003");
    }
}
