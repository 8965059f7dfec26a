//! `POST /inference`: the prompt-centric LLM route. Its body is the `llm-4090`
//! input; runs through the shared intake and answers inline when the backend
//! finishes within the configured wait.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::{accepted_headers, arrive, x402_tagged};
use crate::intake::IntakeRequest;
use crate::views::InferenceView;
use gpubridge_billing::IdempotencyClaim;
use gpubridge_protocol::JobStatus;
use gpubridge_scheduler::Origin;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

pub const SERVICE: &str = "llm-4090";

pub async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let x402 = app.access.x402_version(request.headers());
    x402_tagged(x402, infer(app, request, x402).await)
}

async fn infer(
    app: &Arc<App>,
    request: Request<Incoming>,
    x402: Option<u8>,
) -> Result<HttpResponse, ApiError> {
    let arrival = arrive(app, request).await?;
    let input = Value::Object(body::parse::<Map<String, Value>>(&arrival.bytes)?);
    let idempotency = arrival
        .idempotency_key
        .map(|key| IdempotencyClaim::new(key, "/inference", &input));
    let request = IntakeRequest {
        service: SERVICE.into(),
        input,
        priority: arrival.priority,
        origin: Origin::Inference,
        webhook_url: None,
        idempotency,
        stream: None,
        clock: arrival.clock,
        id_shown_late: true,
    };
    let mut accepted = app
        .intake(arrival.caller, request)
        .await
        .map_err(inference_paths)?;
    let wait = Duration::from_millis(app.http.inline_wait_ms);
    let (driver, replay) = (accepted.driver.take(), accepted.replay_clock.take());
    let finished = app
        .wait_inline(&accepted.record.id, wait, driver, replay)
        .await?;
    let record = finished.as_deref().unwrap_or(&accepted.record);
    let status = match record.status {
        JobStatus::Completed => StatusCode::OK,
        JobStatus::Failed => StatusCode::BAD_GATEWAY,
        // Cancelled by its owner while this request waited.
        JobStatus::Cancelled => StatusCode::CONFLICT,
        JobStatus::Pending | JobStatus::Running => StatusCode::ACCEPTED,
    };
    let mut response = json(status, &InferenceView::of(record));
    accepted_headers(app, x402, &accepted, &mut response);
    Ok(response)
}

/// Input problems are reported against the /inference body, not a nested `input`.
fn inference_paths(mut error: ApiError) -> ApiError {
    if let Some(Value::Array(problems)) = error.details.as_mut() {
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
    error
}
