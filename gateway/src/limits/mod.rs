//! Limits that answer 429 with `Retry-After`: request rates per API key and
//! per client IP (GCRA token buckets, one atomic per key), and how many jobs
//! an account may have unfinished. Reloadable while running.

mod client_ip;
mod config;
mod gcra;

pub use client_ip::{client_ip, IpKey, Peer};
pub use config::{AccountLimits, LimitsConfig, Rate};

use crate::error::ApiError;
use gcra::{Gcra, Quota};
use gpubridge_protocol::AccountId;
use hyper::{HeaderMap, StatusCode};
use parking_lot::RwLock;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct Limits {
    rules: RwLock<Arc<Rules>>,
    by_key: Gcra<AccountId>,
    by_ip: Gcra<IpKey>,
    refused_key: IntCounter,
    refused_ip: IntCounter,
}

/// The configuration, compiled for the hot path.
struct Rules {
    config: LimitsConfig,
    per_key: Option<Quota>,
    per_ip: Option<Quota>,
    accounts: HashMap<AccountId, (Option<Quota>, Rate, AccountLimits)>,
}

impl Rules {
    fn new(config: LimitsConfig) -> Rules {
        let accounts = config
            .accounts
            .iter()
            .filter_map(|(id, limits)| {
                let id = id.parse::<AccountId>().ok()?;
                let rate = Rate {
                    per_second: limits.per_second.unwrap_or(config.per_key.per_second),
                    burst: limits.burst.unwrap_or(config.per_key.burst),
                };
                Some((id, (Quota::new(rate.per_second, rate.burst), rate, *limits)))
            })
            .collect();
        Rules {
            per_key: Quota::new(config.per_key.per_second, config.per_key.burst),
            per_ip: Quota::new(config.per_ip.per_second, config.per_ip.burst),
            accounts,
            config,
        }
    }
}

impl Limits {
    pub fn new(config: LimitsConfig, registry: &Registry) -> Result<Limits, prometheus::Error> {
        let refused = IntCounterVec::new(
            Opts::new(
                "gpubridge_rate_limited_total",
                "Requests refused with 429 by a rate limit, by limit",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Limits {
            rules: RwLock::new(Arc::new(Rules::new(config))),
            by_key: Gcra::new(),
            by_ip: Gcra::new(),
            refused_key: refused.with_label_values(&["api_key"]),
            refused_ip: refused.with_label_values(&["client_ip"]),
        })
    }

    /// Applies new settings; buckets keep what they hold.
    pub fn reload(&self, config: LimitsConfig) {
        *self.rules.write() = Arc::new(Rules::new(config));
    }

    fn rules(&self) -> Arc<Rules> {
        self.rules.read().clone()
    }

    /// One request with `account`'s valid API key.
    pub fn check_key(&self, account: AccountId) -> Result<(), ApiError> {
        let rules = self.rules();
        let (quota, rate) = match rules.accounts.get(&account) {
            Some((quota, rate, _)) => (*quota, *rate),
            None => (rules.per_key, rules.config.per_key),
        };
        let Some(quota) = quota else { return Ok(()) };
        self.by_key.check(&account, quota).map_err(|wait| {
            self.refused_key.inc();
            too_many("per API key", rate, wait)
        })
    }

    /// One request without a valid API key, from `peer` (or the client a
    /// trusted proxy names).
    pub fn check_ip(&self, peer: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        let rules = self.rules();
        let Some(quota) = rules.per_ip else {
            return Ok(());
        };
        let ip = client_ip(peer, headers, &rules.config.trusted_proxies);
        self.by_ip.check(&IpKey::from(ip), quota).map_err(|wait| {
            self.refused_ip.inc();
            too_many("per client address", rules.config.per_ip, wait)
        })
    }

    /// How many unfinished jobs `account` may have; `None`: no limit.
    pub fn max_concurrent_jobs(&self, account: AccountId) -> Option<u32> {
        let rules = self.rules();
        let max = rules
            .accounts
            .get(&account)
            .and_then(|(_, _, limits)| limits.max_concurrent_jobs)
            .unwrap_or(rules.config.max_concurrent_jobs);
        (max > 0).then_some(max)
    }
}

fn too_many(scope: &str, rate: Rate, wait: Duration) -> ApiError {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "Rate limit exceeded: {} requests per second {scope} (bursts of {})",
            rate.per_second, rate.burst
        ),
        "Slow down and retry after the delay in Retry-After; the operator can raise this account's limit.",
    )
    .with_details(json!({
        "limit": scope,
        "per_second": rate.per_second,
        "burst": rate.burst,
        "retry_after_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    }))
    .retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(config: LimitsConfig) -> Limits {
        Limits::new(config, &Registry::new()).unwrap()
    }

    #[test]
    fn an_account_override_replaces_the_default() {
        let vip = AccountId::random();
        let mut config = LimitsConfig {
            per_key: Rate {
                per_second: 1.0,
                burst: 1,
            },
            ..LimitsConfig::default()
        };
        let l = limits(config.clone());
        assert!(l.check_key(vip).is_ok());
        let refused = l.check_key(vip).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after_seconds, Some(1));
        config.accounts.insert(
            vip.to_string(),
            AccountLimits {
                per_second: Some(0.0),
                max_concurrent_jobs: Some(3),
                ..Default::default()
            },
        );
        l.reload(config);
        for _ in 0..100 {
            assert!(l.check_key(vip).is_ok(), "unlimited by override");
        }
        assert_eq!(l.max_concurrent_jobs(vip), Some(3));
        assert_eq!(l.max_concurrent_jobs(AccountId::random()), Some(256));
    }

    #[test]
    fn anonymous_callers_are_counted_by_address() {
        let l = limits(LimitsConfig {
            per_ip: Rate {
                per_second: 0.5,
                burst: 2,
            },
            ..LimitsConfig::default()
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let headers = HeaderMap::new();
        assert!(l.check_ip(a, &headers).is_ok());
        assert!(l.check_ip(a, &headers).is_ok());
        let refused = l.check_ip(a, &headers).unwrap_err();
        assert_eq!(refused.retry_after_seconds, Some(2));
        assert!(l.check_ip("127.0.0.3".parse().unwrap(), &headers).is_ok());
    }

    #[test]
    fn bad_settings_are_named() {
        let mut config = LimitsConfig::default();
        config.per_ip.burst = 0;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("limits.per_ip.burst"));
        let mut config = LimitsConfig::default();
        config
            .accounts
            .insert("bob".into(), AccountLimits::default());
        assert!(config.validate().unwrap_err().contains("\"bob\""));
        assert!(LimitsConfig::default().validate().is_ok());
    }
}
