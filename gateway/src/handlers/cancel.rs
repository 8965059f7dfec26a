//! `POST /cancel/:job_id`: stops a pending or running job for whoever may read
//! its output (its account's key; for a job no account owns, the holder of its
//! id, as x402's read token). A pending job is released in full; a running one
//! is stopped at its backend and pays for the seconds it ran. Answers with the
//! job's status document; a job that already ended is a 409.

use crate::access::Credentials;
use crate::app::{App, HttpResponse};
use crate::error::ApiError;
use crate::handlers::status;
use gpubridge_scheduler::Cancellation;
use hyper::StatusCode;
use serde_json::json;
use std::time::Duration;

/// How long the answer waits for the stopped job to be settled and persisted.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

pub async fn handle(
    app: &App,
    credentials: Credentials<'_>,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let (record, allowed) = status::read(app, credentials, id).await?;
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Only the account that created this job may cancel it",
            "Send that account's API key as Authorization: Bearer <key>.",
        ));
    }
    let cancellation = app
        .scheduler
        .cancel(&record.id, SETTLE_WAIT)
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?;
    match cancellation {
        Some(Cancellation::Cancelled(record)) => {
            status::answer(app, StatusCode::OK, &record, true).await
        }
        Some(Cancellation::Cancelling(record)) => {
            status::answer(app, StatusCode::ACCEPTED, &record, true).await
        }
        Some(Cancellation::AlreadyEnded(record)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Job {} already ended: it is {}",
                record.id,
                record.status.as_str()
            ),
            format!(
                "Only pending or running jobs can be cancelled; its result is at /status/{}.",
                record.id
            ),
        )
        .with_details(json!({"status": record.status.as_str()}))),
        // Read a moment ago, so it exists; gone only if the store lost it.
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No job with id {id:?}"),
            "Job ids come from POST /run and POST /inference.",
        )),
    }
}
