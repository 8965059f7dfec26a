//! `[limits]`: request rates per API key and per client IP, unfinished jobs
//! per account, and the operator's overrides for particular accounts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests carrying a valid API key, per account.
    pub per_key: Rate,
    /// Requests without one (sign-up, x402, the dashboard's sign-in, bad
    /// keys), per client address; IPv6 per /64.
    pub per_ip: Rate,
    /// Jobs one account may have accepted and unfinished at once; 0: no limit.
    pub max_concurrent_jobs: u32,
    /// Proxies in front of the gateway whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Per-account overrides, keyed by account id (`acct_…`).
    pub accounts: BTreeMap<String, AccountLimits>,
}

/// A token bucket: refills at `per_second` (0: unlimited), holds `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// What differs for one account; anything unset is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountLimits {
    pub per_second: Option<f64>,
    pub burst: Option<u32>,
    pub max_concurrent_jobs: Option<u32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_key: Rate {
                per_second: 100.0,
                burst: 200,
            },
            per_ip: Rate {
                per_second: 100.0,
                burst: 200,
            },
            max_concurrent_jobs: 256,
            trusted_proxies: Vec::new(),
            accounts: BTreeMap::new(),
        }
    }
}

impl LimitsConfig {
    /// Every problem, named by its key.
    pub fn validate(&self) -> Result<(), String> {
        check_rate(
            "limits.per_key",
            self.per_key.per_second,
            self.per_key.burst,
        )?;
        check_rate("limits.per_ip", self.per_ip.per_second, self.per_ip.burst)?;
        for (id, account) in &self.accounts {
            id.parse::<gpubridge_protocol::AccountId>().map_err(|_| {
                format!("limits.accounts: {id:?} is not an account id (acct_ and 32 hex digits)")
            })?;
            let name = format!("limits.accounts.{id}");
            check_rate(
                &name,
                account.per_second.unwrap_or(1.0),
                account.burst.unwrap_or(1),
            )?;
        }
        Ok(())
    }
}

fn check_rate(name: &str, per_second: f64, burst: u32) -> Result<(), String> {
    if !per_second.is_finite() || per_second < 0.0 {
        return Err(format!(
            "{name}.per_second must be 0 (unlimited) or more, not {per_second}"
        ));
    }
    if burst == 0 {
        return Err(format!("{name}.burst must be at least 1"));
    }
    Ok(())
}
