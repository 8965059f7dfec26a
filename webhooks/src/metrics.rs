//! Webhook metrics: attempts by outcome, deliveries waiting.

use crate::delivery::Attempted;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

pub struct WebhookMetrics {
    attempts: IntCounterVec,
    pub pending: IntGauge,
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> Result<WebhookMetrics, prometheus::Error> {
        let attempts = IntCounterVec::new(
            Opts::new(
                "gpubridge_webhook_attempts_total",
                "Webhook delivery attempts by outcome",
            ),
            &["outcome"],
        )?;
        let pending = IntGauge::new(
            "gpubridge_webhooks_pending",
            "Webhook deliveries waiting for their next attempt",
        )?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(WebhookMetrics { attempts, pending })
    }

    pub fn observe(&self, attempted: &Attempted) {
        let outcome = match attempted {
            Attempted::Delivered(_) => "delivered",
            Attempted::Gone => "gone",
            Attempted::Failed { .. } => "failed",
        };
        self.attempts.with_label_values(&[outcome]).inc();
    }
}
