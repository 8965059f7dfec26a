//! `GET /status/:job_id`: full output for whoever may read it, status and timing
//! for anyone else.

use crate::access::{bearer, Caller, Credentials};
use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use crate::views::{StatusView, WebhookView};
use gpubridge_protocol::JobId;
use gpubridge_scheduler::JobRecord;
use hyper::StatusCode;
use std::sync::Arc;

pub async fn handle(
    app: &App,
    credentials: Credentials<'_>,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let (record, full) = read(app, credentials, id).await?;
    answer(app, StatusCode::OK, &record, full).await
}

/// The job's status document, with how its webhook stands for whoever may see it.
pub(crate) async fn answer(
    app: &App,
    status: StatusCode,
    record: &JobRecord,
    full: bool,
) -> Result<HttpResponse, ApiError> {
    let mut view = StatusView::of(record, full);
    if full && record.webhook_url.is_some() {
        view.webhook = Some(webhook_view(app, record).await?);
    }
    Ok(json(status, &view))
}

pub(crate) async fn webhook_view(app: &App, record: &JobRecord) -> Result<WebhookView, ApiError> {
    if !record.status.is_terminal() {
        return Ok(WebhookView::of(None));
    }
    let delivery = app
        .webhooks
        .delivery(&record.id)
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?;
    Ok(WebhookView::of(delivery.as_ref()))
}

/// The job, and whether the request's credential may see its output.
pub(crate) async fn read(
    app: &App,
    credentials: Credentials<'_>,
    id: &str,
) -> Result<(Arc<JobRecord>, bool), ApiError> {
    let headers = credentials.headers;
    let caller = match app.access.identify_credentials(credentials) {
        Ok(caller) => caller,
        // Some x402 clients send the job id, their read token, as the bearer.
        Err(_) if bearer(headers)?.is_some_and(|token| same_token(token, id)) => Caller::default(),
        Err(e) => return Err(e),
    };
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No job with id {id:?}"),
            "Job ids come from POST /run and POST /inference. A finished job no account \
             owns is deleted once its retention period ends (7 days by default).",
        )
    };
    let id = JobId::parse(id).ok_or_else(not_found)?;
    let record = app
        .scheduler
        .status(&id)
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?
        .ok_or_else(not_found)?;
    let full = app.access.may_read_output(&caller, &record);
    Ok((record, full))
}

/// Compares a presented token with a job id in constant time.
fn same_token(token: &str, id: &str) -> bool {
    use subtle::ConstantTimeEq;
    token.len() == id.len() && bool::from(token.as_bytes().ct_eq(id.as_bytes()))
}
