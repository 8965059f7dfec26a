//! How deliveries are made and retried (`[webhooks]` in the daemon's config).

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Wait before the second attempt; each later wait doubles.
    pub first_retry_seconds: f64,
    /// The longest wait between two attempts.
    pub max_retry_seconds: f64,
    /// After this long since the job finished, a failing delivery is given up.
    pub give_up_after_seconds: f64,
    /// One attempt, from connecting to the receiver's status line.
    pub timeout_seconds: f64,
    /// Attempts in flight at once, across all receivers.
    pub max_concurrent: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            first_retry_seconds: 10.0,
            max_retry_seconds: 3600.0,
            give_up_after_seconds: 24.0 * 3600.0,
            timeout_seconds: 10.0,
            max_concurrent: 64,
        }
    }
}

impl WebhookConfig {
    pub fn check(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            (v.is_finite() && v > 0.0).then_some(()).ok_or(format!(
                "webhooks.{name} must be a positive number of seconds"
            ))
        };
        positive("first_retry_seconds", self.first_retry_seconds)?;
        positive("max_retry_seconds", self.max_retry_seconds)?;
        positive("give_up_after_seconds", self.give_up_after_seconds)?;
        positive("timeout_seconds", self.timeout_seconds)?;
        if self.max_concurrent == 0 {
            return Err("webhooks.max_concurrent must be at least 1".into());
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds)
    }
}
