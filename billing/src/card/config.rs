//! Card payments through Stripe (`[stripe]`): keys, where Stripe is, where
//! Checkout sends the payer back, and the limits on automatic top-ups.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeConfig {
    /// `STRIPE_SECRET_KEY`; unset turns card payments off.
    pub secret_key: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`: the endpoint's signing secret (`whsec_…`).
    pub webhook_secret: Option<String>,
    /// `GPUBRIDGE_STRIPE_BASE_URL` (tests point it at a stand-in).
    pub base_url: String,
    /// Where Checkout returns the payer; default: the dashboard.
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    /// How far a webhook's signature time may be from now.
    pub signature_tolerance_seconds: u64,
    /// One Stripe call, connect to answer.
    pub timeout_seconds: f64,
    /// Automatic top-ups one account may make per UTC day: a loop cannot
    /// drain a card.
    pub auto_topups_per_day: u32,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            secret_key: None,
            webhook_secret: None,
            base_url: "https://api.stripe.com".into(),
            success_url: None,
            cancel_url: None,
            signature_tolerance_seconds: 300,
            timeout_seconds: 15.0,
            auto_topups_per_day: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StripeConfigError {
    #[error("stripe.secret_key is set but stripe.webhook_secret is not: payments could never be credited")]
    NoWebhookSecret,
    #[error("stripe.base_url {0:?} is not an http(s) URL")]
    BadBaseUrl(String),
    #[error("stripe.timeout_seconds must be a positive number")]
    BadTimeout,
}

impl StripeConfig {
    /// Whether card payments are on; refuses a half-configured Stripe.
    pub fn enabled(&self) -> Result<bool, StripeConfigError> {
        let Some(_) = self.secret_key.as_deref().filter(|k| !k.trim().is_empty()) else {
            return Ok(false);
        };
        if self
            .webhook_secret
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
        {
            return Err(StripeConfigError::NoWebhookSecret);
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(StripeConfigError::BadBaseUrl(self.base_url.clone()));
        }
        if !(self.timeout_seconds.is_finite() && self.timeout_seconds > 0.0) {
            return Err(StripeConfigError::BadTimeout);
        }
        Ok(true)
    }
}
