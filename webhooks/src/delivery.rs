//! One job's webhook delivery as persisted: where it goes, how many attempts it
//! took, and how it stands. Written with the job's terminal state (so a finished
//! job's webhook cannot be lost) and after every attempt (so a restart resumes
//! where it was).

use crate::config::WebhookConfig;
use gpubridge_protocol::JobId;
use gpubridge_store::{Record, Table};
use serde::{Deserialize, Serialize};

/// Deliveries by job id.
pub const WEBHOOKS: Table = Table("webhooks");
/// Ids of deliveries still to be made: what a restart resumes.
pub const WEBHOOKS_DUE: Table = Table("webhooks_due");
pub const TABLES: [Table; 2] = [WEBHOOKS, WEBHOOKS_DUE];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer.
    Delivered,
    /// The receiver answered 410 Gone: no more attempts.
    Gone,
    /// Still failing when the retry window closed.
    GaveUp,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Gone => "gone",
            DeliveryState::GaveUp => "gave_up",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub job: JobId,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the job finished: the retry window starts here (Unix ms).
    pub since_ms: u64,
    pub next_attempt_ms: Option<u64>,
    pub delivered_ms: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

impl Record for Delivery {
    const KIND: &'static str = "webhook";
    const VERSION: u8 = 1;
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempted {
    Delivered(u16),
    /// 410: the receiver does not want it.
    Gone,
    /// Anything else: a status, a refusal, a timeout, a connection error.
    Failed {
        status: Option<u16>,
        error: String,
    },
}

impl Delivery {
    pub fn new(job: JobId, url: String, now_ms: u64) -> Delivery {
        Delivery {
            job,
            url,
            state: DeliveryState::Pending,
            attempts: 0,
            since_ms: now_ms,
            next_attempt_ms: Some(now_ms),
            delivered_ms: None,
            last_status: None,
            last_error: None,
        }
    }

    /// Records an attempt made at `now_ms` and schedules the next, if any.
    pub fn record(&mut self, attempted: Attempted, now_ms: u64, cfg: &WebhookConfig) {
        self.attempts += 1;
        self.next_attempt_ms = None;
        match attempted {
            Attempted::Delivered(status) => {
                self.state = DeliveryState::Delivered;
                self.delivered_ms = Some(now_ms);
                self.last_status = Some(status);
            }
            Attempted::Gone => {
                self.state = DeliveryState::Gone;
                self.last_status = Some(410);
                self.last_error = Some("the receiver answered 410 Gone".into());
            }
            Attempted::Failed { status, error } => {
                self.last_status = status;
                self.last_error = Some(error);
                let next = now_ms + self.backoff_ms(cfg);
                let window_ends = self.since_ms + (cfg.give_up_after_seconds * 1000.0) as u64;
                if next > window_ends {
                    self.state = DeliveryState::GaveUp;
                } else {
                    self.next_attempt_ms = Some(next);
                }
            }
        }
    }

    /// Doubling waits from `first_retry_seconds` up to `max_retry_seconds`,
    /// spread by up to ±20% (from the job id, so receivers recovering from an
    /// outage are not hit by every retry at once).
    fn backoff_ms(&self, cfg: &WebhookConfig) -> u64 {
        let doublings = self.attempts.saturating_sub(1).min(40) as i32;
        let seconds = (cfg.first_retry_seconds * 2f64.powi(doublings)).min(cfg.max_retry_seconds);
        let spread = self
            .job
            .as_bytes()
            .iter()
            .fold(self.attempts as u64, |h, b| {
                h.wrapping_mul(31).wrapping_add(*b as u64)
            });
        let factor = 0.8 + (spread % 401) as f64 / 1000.0;
        (seconds * factor * 1000.0) as u64
    }

    pub fn is_pending(&self) -> bool {
        self.state == DeliveryState::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubridge_store::{decode, encode};

    fn cfg() -> WebhookConfig {
        WebhookConfig {
            first_retry_seconds: 10.0,
            max_retry_seconds: 100.0,
            give_up_after_seconds: 1000.0,
            ..WebhookConfig::default()
        }
    }

    fn failed() -> Attempted {
        Attempted::Failed {
            status: Some(503),
            error: "HTTP 503".into(),
        }
    }

    #[test]
    fn waits_double_up_to_the_cap_then_the_window_closes() {
        let mut d = Delivery::new(JobId::random(), "https://h/x".into(), 0);
        let mut now = 0;
        let mut waits = Vec::new();
        while d.is_pending() {
            d.record(failed(), now, &cfg());
            if let Some(next) = d.next_attempt_ms {
                waits.push(next - now);
                now = next;
            }
        }
        assert_eq!(d.state, DeliveryState::GaveUp);
        assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
        for (wait, nominal) in waits
            .iter()
            .zip([10_000u64, 20_000, 40_000, 80_000, 100_000])
        {
            assert!(
                (nominal * 8 / 10..=nominal * 12 / 10).contains(wait),
                "{wait} vs {nominal}"
            );
        }
        assert!(now <= 1_000_000, "no attempt after the window: {now}");
        assert!(d.attempts >= 8, "{}", d.attempts);
    }

    #[test]
    fn success_and_gone_end_it() {
        let mut d = Delivery::new(JobId::random(), "https://h/x".into(), 5);
        d.record(failed(), 5, &cfg());
        assert!(d.is_pending());
        d.record(Attempted::Delivered(204), 20_000, &cfg());
        assert_eq!(
            (d.state, d.attempts, d.delivered_ms, d.next_attempt_ms),
            (DeliveryState::Delivered, 2, Some(20_000), None)
        );
        let mut gone = Delivery::new(JobId::random(), "https://h/x".into(), 5);
        gone.record(Attempted::Gone, 6, &cfg());
        assert_eq!(gone.state, DeliveryState::Gone);
        assert_eq!(decode::<Delivery>(&encode(&d)).unwrap(), d);
    }
}
