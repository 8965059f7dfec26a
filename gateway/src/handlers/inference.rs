//! `POST /inference`: the prompt-centric LLM route. Runs `llm-4090` and answers
//! inline when the backend finishes within the configured wait.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::REPLAYED;
use crate::views;
use gpubridge_protocol::JobStatus;
use gpubridge_scheduler::accounts::IdempotencyClaim;
use gpubridge_scheduler::{JobRequest, Origin, SubmitError};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

pub const SERVICE: &str = "llm-4090";

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let (parts, incoming) = request.into_parts();
    let priority = body::priority(&parts.headers)?;
    let idempotency_key = body::idempotency_key(&parts.headers)?;
    let caller = app.access.identify(&parts.headers)?;
    let bytes = body::read_limited(incoming, &parts.headers, app.http.max_body_bytes).await?;
    let input = Value::Object(body::json_object(&bytes)?);
    let idempotency = idempotency_key.map(|key| IdempotencyClaim::new(key, "/inference", &input));
    let prepared = app
        .scheduler
        .prepare(JobRequest {
            service: SERVICE.into(),
            input,
            priority,
            origin: Origin::Inference,
            webhook_url: None,
        })
        .map_err(|e| inference_error(app, e))?;
    let admission = app
        .access
        .accept(&app.scheduler, &caller, prepared, idempotency.as_ref())?;
    let (accepted, replayed) = app.admitted(admission)?;
    let wait = Duration::from_millis(app.http.inline_wait_ms);
    let record = match app.scheduler.wait(&accepted.id, wait).await {
        Ok(Some(record)) => record,
        // The job is persisted and running; only this read failed. Point at /status.
        _ => accepted,
    };
    let mut response = match record.status {
        JobStatus::Completed => json(StatusCode::OK, &views::inference(&record)),
        JobStatus::Failed => {
            let mut body = views::inference(&record);
            body["error"] = json!(record.error.as_deref().unwrap_or("the job failed"));
            body["hint"] = json!("Every candidate backend failed; details are in error. Retry, or pick another model from GET /catalog.");
            json(StatusCode::BAD_GATEWAY, &body)
        }
        JobStatus::Pending | JobStatus::Running => {
            json(StatusCode::ACCEPTED, &views::inference(&record))
        }
    };
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Input problems are reported against the /inference body, not a nested `input`.
fn inference_error(app: &App, error: SubmitError) -> ApiError {
    let mut api = app.submit_error(error);
    if let Some(Value::Array(problems)) = api.details.as_mut() {
        for problem in problems {
            if let Some(Value::String(path)) = problem.get_mut("path") {
                if let Some(rest) = path.strip_prefix("/input") {
                    *path = if rest.is_empty() {
                        "/".into()
                    } else {
                        rest.to_string()
                    };
                }
            }
        }
    }
    api
}
