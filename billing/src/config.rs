//! Account settings as the operator writes them (dollars, percentages), and the
//! checked rules the ledger applies (micro-dollars, basis points).

use gpubridge_protocol::{Micros, MoneyError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Off: no API keys or credits; every caller may run anything (private fleets).
    pub enabled: bool,
    /// Credits every new account starts with, in dollars.
    pub signup_credits_usd: f64,
    /// Daily spending limit of a new account, in dollars.
    pub default_daily_limit_usd: f64,
    /// How long an `Idempotency-Key` is remembered, in hours.
    pub idempotency_hours: u64,
    /// Secret keying the stored API-key digests (at least 32 characters). Prefer
    /// `GPUBRIDGE_KEY_HASH_SECRET` or a file to writing it here.
    pub key_hash_secret: Option<String>,
    /// File holding that secret; `<data_dir>/api-key.secret`, created on first
    /// start, when neither is set.
    pub key_secret_file: Option<PathBuf>,
    /// Volume discounts by trailing 30-day spend; the first tier must start at 0.
    pub discount_tiers: Vec<DiscountTierConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountTierConfig {
    pub name: String,
    pub min_30d_spend_usd: f64,
    pub discount_percent: f64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        let tier = |name: &str, min: f64, percent: f64| DiscountTierConfig {
            name: name.into(),
            min_30d_spend_usd: min,
            discount_percent: percent,
        };
        AccountsConfig {
            enabled: true,
            signup_credits_usd: 0.0,
            default_daily_limit_usd: 50.0,
            idempotency_hours: 24,
            key_hash_secret: None,
            key_secret_file: None,
            discount_tiers: vec![
                tier("Standard", 0.0, 0.0),
                tier("Growth", 100.0, 5.0),
                tier("Scale", 1_000.0, 10.0),
                tier("Enterprise", 10_000.0, 15.0),
            ],
        }
    }
}

/// Bounds of a daily limit an account may set for itself.
pub const MIN_DAILY_LIMIT: Micros = Micros(1_000_000);
pub const MAX_DAILY_LIMIT: Micros = Micros(10_000_000_000);

#[derive(Clone, Debug, PartialEq)]
pub struct DiscountTier {
    pub name: String,
    pub min_30d_spend: Micros,
    /// Hundredths of a percent.
    pub discount_bps: u32,
}

/// The checked form of [`AccountsConfig`].
#[derive(Clone, Debug)]
pub struct AccountRules {
    pub signup_credits: Micros,
    pub default_daily_limit: Micros,
    pub idempotency_ms: u64,
    /// Ascending by `min_30d_spend`, the first at zero.
    pub tiers: Vec<DiscountTier>,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("accounts.{field}: {source}")]
    Money { field: String, source: MoneyError },
    #[error("accounts.default_daily_limit_usd must be between $1 and $10,000")]
    DailyLimit,
    #[error("accounts.discount_tiers: {0}")]
    Tiers(String),
}

impl AccountsConfig {
    pub fn rules(&self) -> Result<AccountRules, RulesError> {
        let money = |field: &str, dollars: f64| {
            Micros::from_dollars(dollars).map_err(|source| RulesError::Money {
                field: field.into(),
                source,
            })
        };
        let default_daily_limit = money("default_daily_limit_usd", self.default_daily_limit_usd)?;
        if !(MIN_DAILY_LIMIT..=MAX_DAILY_LIMIT).contains(&default_daily_limit) {
            return Err(RulesError::DailyLimit);
        }
        let mut tiers = Vec::with_capacity(self.discount_tiers.len());
        for tier in &self.discount_tiers {
            if !(0.0..=100.0).contains(&tier.discount_percent) {
                return Err(RulesError::Tiers(format!(
                    "{}: discount_percent must be between 0 and 100",
                    tier.name
                )));
            }
            tiers.push(DiscountTier {
                name: tier.name.clone(),
                min_30d_spend: money("discount_tiers.min_30d_spend_usd", tier.min_30d_spend_usd)?,
                discount_bps: (tier.discount_percent * 100.0).round() as u32,
            });
        }
        tiers.sort_by_key(|t| t.min_30d_spend);
        if tiers
            .first()
            .is_none_or(|t| t.min_30d_spend != Micros::ZERO)
        {
            return Err(RulesError::Tiers(
                "the first tier must start at a 30-day spend of 0".into(),
            ));
        }
        Ok(AccountRules {
            signup_credits: money("signup_credits_usd", self.signup_credits_usd)?,
            default_daily_limit,
            idempotency_ms: self.idempotency_hours.max(24) * 3_600_000,
            tiers,
        })
    }
}

impl AccountRules {
    /// The tier earned by a trailing 30-day spend.
    pub fn tier(&self, trailing_spend: Micros) -> &DiscountTier {
        self.tiers
            .iter()
            .rev()
            .find(|t| trailing_spend >= t.min_30d_spend)
            .unwrap_or(&self.tiers[0])
    }
}

/// A price after a discount, rounded down: rounding never favours us.
pub fn discounted(price: Micros, discount_bps: u32) -> Micros {
    let keep = 10_000u128.saturating_sub(u128::from(discount_bps));
    Micros((u128::from(price.0) * keep / 10_000) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_are_valid_and_tiers_climb() {
        let rules = AccountsConfig::default().rules().unwrap();
        assert_eq!(rules.default_daily_limit, Micros(50_000_000));
        assert!(rules.tiers.len() >= 4);
        assert_eq!(rules.tier(Micros::ZERO).name, "Standard");
        assert_eq!(rules.tier(Micros(100_000_000)).discount_bps, 500);
        assert_eq!(rules.tier(Micros(99_999_999)).discount_bps, 0);
        assert_eq!(rules.tier(Micros(u64::MAX)).name, "Enterprise");
    }

    #[test]
    fn bad_settings_are_refused() {
        let cfg = AccountsConfig {
            default_daily_limit_usd: 0.5,
            ..Default::default()
        };
        assert!(cfg.rules().is_err());
        let mut cfg = AccountsConfig::default();
        cfg.discount_tiers.remove(0);
        assert!(cfg.rules().is_err(), "no tier at zero");
        let mut cfg = AccountsConfig::default();
        cfg.discount_tiers[1].discount_percent = 120.0;
        assert!(cfg.rules().is_err());
        let cfg = AccountsConfig {
            signup_credits_usd: -1.0,
            ..Default::default()
        };
        assert!(cfg.rules().is_err());
    }

    #[test]
    fn discounts_round_down() {
        assert_eq!(discounted(Micros(3_000), 0), Micros(3_000));
        assert_eq!(discounted(Micros(3_000), 500), Micros(2_850));
        assert_eq!(discounted(Micros(3), 1_500), Micros(2));
        assert_eq!(discounted(Micros(u64::MAX), 10_000), Micros(0));
    }
}
