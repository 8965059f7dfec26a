//! The one way in for every front door: `/run`, `/inference`, and those to come
//! (OpenAI-compatible routes, MCP, x402). A door turns its request into an
//! [`IntakeRequest`]; intake validates and prices it, has it paid for, persists
//! and starts it — the same rules, prices and ledger whichever door.

use crate::access::Caller;
use crate::app::App;
use crate::error::ApiError;
use gpubridge_billing::x402::PaidBy;
use gpubridge_billing::{Admission, IdempotencyClaim};
use gpubridge_protocol::{JobId, Priority};
use gpubridge_scheduler::{
    is_private, BackendClock, Driver, JobRecord, JobRequest, Origin, StreamTap,
};
use hyper::StatusCode;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The hint when a job that outlived its inline wait could not be written
/// (and so was stopped), or could not be read back.
const UNFINISHED_HINT: &str =
    "The job could not be saved or read back, and was stopped if it was running; retry shortly.";

pub struct IntakeRequest {
    pub service: String,
    pub input: Value,
    pub priority: Priority,
    pub origin: Origin,
    pub webhook_url: Option<String>,
    /// The request's `Idempotency-Key`, with the route and body it names.
    pub idempotency: Option<IdempotencyClaim>,
    /// Where the job's output goes as it is made, for doors that stream it.
    pub stream: Option<StreamTap>,
    /// The request's clock of time on backends, for its overhead metric.
    pub clock: Option<BackendClock>,
    /// The door shows the job's id only after
    /// [`gpubridge_scheduler::Scheduler::wait`] (an answer given inline) or
    /// [`gpubridge_scheduler::Scheduler::durable`] (a stream's first chunk): a
    /// job nobody pays for may then start before it is written, and one that
    /// ends first is written once, at its end.
    pub id_shown_late: bool,
}

pub struct Accepted {
    pub record: JobRecord,
    /// An earlier request's job, returned for the same Idempotency-Key.
    pub replayed: bool,
    /// On the x402 path, the payment that paid for it.
    pub paid: Option<PaidBy>,
    /// Set for a job started unwritten: pass it to [`App::wait_inline`], which
    /// runs the job in the waiting request's task, or detach it and call
    /// [`App::durable`] before showing the job's id.
    pub driver: Option<Driver>,
    /// A replay's own clock: the earlier request's job runs on that request's
    /// clock, so pass this to [`App::wait_inline`] to count the wait for it
    /// as time on backends rather than the gateway's overhead.
    pub replay_clock: Option<BackendClock>,
}

impl App {
    pub async fn intake(
        self: &Arc<Self>,
        caller: Caller,
        request: IntakeRequest,
    ) -> Result<Accepted, ApiError> {
        let webhook_url = request
            .webhook_url
            .map(|url| checked_webhook(&url, self.scheduler.config().allow_private_urls))
            .transpose()?;
        let mut prepared = self
            .scheduler
            .prepare(JobRequest {
                service: request.service,
                input: request.input,
                priority: request.priority,
                origin: request.origin,
                webhook_url,
            })
            .map_err(|e| self.submit_error(e))?;
        prepared.stream = request.stream;
        // Kept for a replay, which waits on the earlier request's job.
        let replay_clock = request.idempotency.as_ref().and(request.clock.clone());
        prepared.clock = request.clock;
        prepared.max_unfinished = caller
            .account
            .and_then(|account| self.limits.max_concurrent_jobs(account));
        let app = self.clone();
        let idempotency = request.idempotency;
        let id_shown_late = request.id_shown_late;
        let unwritten = self.access.starts_unwritten(&prepared, id_shown_late);
        // Boxed: spawning moves the future, and this one is large.
        let admission = Box::pin(async move {
            app.access
                .accept(
                    &app.scheduler,
                    &caller,
                    prepared,
                    idempotency.as_ref(),
                    id_shown_late,
                )
                .await
        });
        let admitted = match unwritten {
            // Nothing written or paid, and nothing to wait for: no task needed.
            true => admission.await?,
            // From here credits are reserved and a job written: finish even if
            // the client leaves.
            false => tokio::spawn(admission).await.map_err(|e| {
                tracing::error!(error = %e, "admission task failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The request could not be admitted",
                    "Retry it; with an Idempotency-Key a retry is safe.",
                )
            })??,
        };
        let mut accepted = self.admitted(admitted.admission).await?;
        accepted.paid = admitted.paid;
        accepted.driver = admitted.driver;
        if accepted.replayed {
            accepted.replay_clock = replay_clock;
        }
        Ok(accepted)
    }

    /// Waits up to `wait` for an accepted job answered inline, running it
    /// meanwhile if it came with a `driver`: as it ended, or as it stands and
    /// durable, so its id may be shown
    /// ([`gpubridge_scheduler::Scheduler::wait_driving`]).
    pub async fn wait_inline(
        &self,
        id: &JobId,
        wait: Duration,
        driver: Option<Driver>,
        replay_clock: Option<BackendClock>,
    ) -> Result<Option<Arc<JobRecord>>, ApiError> {
        let _counted = replay_clock.as_ref().map(BackendClock::span);
        self.scheduler
            .wait_driving(id, wait, driver)
            .await
            .map_err(|e| ApiError::from_store(&e, UNFINISHED_HINT))
    }

    /// Makes a job started unwritten durable before its id is shown while it
    /// runs ([`gpubridge_scheduler::Scheduler::durable`]).
    pub async fn durable(&self, id: &JobId) -> Result<(), ApiError> {
        self.scheduler
            .durable(id)
            .await
            .map_err(|e| ApiError::from_store(&e, UNFINISHED_HINT))
    }

    /// The job an admission stands for.
    async fn admitted(&self, admission: Admission) -> Result<Accepted, ApiError> {
        let id = match admission {
            Admission::Accepted(record) => {
                return Ok(Accepted {
                    record: *record,
                    replayed: false,
                    paid: None,
                    driver: None,
                    replay_clock: None,
                })
            }
            Admission::Replayed(id) => id,
        };
        match self.scheduler.status(&id).await {
            Ok(Some(record)) => Ok(Accepted {
                record: Arc::unwrap_or_clone(record),
                replayed: true,
                paid: None,
                driver: None,
                replay_clock: None,
            }),
            Ok(None) => {
                tracing::error!(job_id = %id, "idempotent replay of a missing job");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The job for this Idempotency-Key cannot be read right now",
                    "Retry shortly with the same Idempotency-Key; nothing new was charged.",
                )
                .retry_after(1))
            }
            Err(e) => Err(ApiError::from_store(
                &e,
                "Retry shortly with the same Idempotency-Key; nothing new was charged.",
            )),
        }
    }

    /// A scheduler refusal in the spec's envelope.
    pub(crate) fn submit_error(&self, error: gpubridge_scheduler::SubmitError) -> ApiError {
        ApiError::from_scheduler(&self.scheduler, error)
    }
}

/// A webhook must be an absolute http(s) URL, and not a private address unless allowed.
fn checked_webhook(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(
            format!("Invalid webhook_url: {why}"),
            "Use a public https:// URL that accepts POST.",
        )
        .with_field("webhook_url")
    };
    if raw.len() > 2048 {
        return Err(bad("longer than 2048 characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    let private = match url.host() {
        Some(url::Host::Ipv4(ip)) => is_private(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_private(ip.into()),
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost") || domain.ends_with(".localhost")
        }
        None => return Err(bad("no host")),
    };
    if private && !allow_private {
        return Err(bad("private and loopback addresses are not allowed"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_must_be_public_http() {
        assert!(checked_webhook("https://example.com/cb", false).is_ok());
        assert!(checked_webhook("ftp://example.com/cb", false).is_err());
        assert!(checked_webhook("http://127.0.0.1/cb", false).is_err());
        assert!(checked_webhook("http://localhost:8/cb", false).is_err());
        assert!(checked_webhook("http://[::1]/cb", false).is_err());
        assert!(checked_webhook("http://127.0.0.1/cb", true).is_ok());
        assert!(checked_webhook("not a url", true).is_err());
    }
}
