//! `POST /v1/chat/completions`. Whole answers wait for the job; streamed ones
//! wait only for its first chunk — so a failover before it stays invisible and a
//! job that fails everywhere is still an HTTP error — then pass chunks on as the
//! backend makes them (`stream.rs`).

use super::requests::ChatRequest;
use super::stream::{self, Completion};
use super::CHAT_SERVICE;
use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::{accepted_headers, arrive, x402_tagged, JOB_ID};
use crate::intake::IntakeRequest;
use gpubridge_billing::IdempotencyClaim;
use gpubridge_protocol::{JobId, JobStatus};
use gpubridge_scheduler::{now_ms, Driver, JobRecord, Origin, StreamReceiver, StreamTap};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Unread chunks held for a slow client before the backend is slowed down.
const STREAM_BUFFER: usize = 64;

pub async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let x402 = app.access.x402_version(request.headers());
    x402_tagged(x402, chat(app, request, x402).await)
}

async fn chat(
    app: &Arc<App>,
    request: Request<Incoming>,
    x402: Option<u8>,
) -> Result<HttpResponse, ApiError> {
    let arrival = arrive(app, request).await?;
    let mut chat: ChatRequest = body::parse(&arrival.bytes)?;
    let (model, include_usage) = (chat.model.clone(), chat.include_usage());
    let streams = chat.streams();
    let end_user = chat.user.take();
    let input = chat.into_input()?;
    let idempotency = arrival
        .idempotency_key
        .map(|key| IdempotencyClaim::new(key, "/v1/chat/completions", &(&input, streams)));
    let (tap, chunks) = match streams {
        true => StreamTap::channel(STREAM_BUFFER),
        // A whole answer: the job still stops if its client leaves first.
        false => StreamTap::watch_only(),
    };
    let request = IntakeRequest {
        service: CHAT_SERVICE.into(),
        input,
        priority: arrival.priority,
        origin: Origin::Openai,
        webhook_url: None,
        idempotency,
        stream: Some(tap),
        clock: arrival.clock,
        inline: !streams,
    };
    let mut accepted = app.intake(arrival.caller, request).await?;
    if let Some(user) = end_user {
        tracing::info!(job_id = %accepted.record.id, end_user = %user, "chat completion");
    }
    // Named and dated after its job, so a replay answers as the first time did.
    let completion = Completion {
        id: format!("chatcmpl-{}", accepted.record.id),
        model,
        created: accepted.record.created_ms / 1000,
        include_usage,
    };
    let mut response = match streams && !accepted.replayed {
        true => streamed(app, &accepted.record, chunks, completion).await?,
        // A replayed request has no live stream: it gets the finished answer.
        false => {
            let _watching = chunks;
            let record = finished(app, &accepted.record, accepted.driver.take()).await?;
            match streams {
                true => stream::whole(&record, &completion),
                false => json(StatusCode::OK, &whole(&record, &completion)),
            }
        }
    };

    job_id_header(&mut response, &accepted.record.id);
    accepted_headers(app, x402, &accepted, &mut response);
    Ok(response)
}

/// `X-GPUBridge-Job-Id`: the job behind the answer, for `/status` and support.
pub(super) fn job_id_header(response: &mut HttpResponse, id: &JobId) {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(JOB_ID, value);
    }
}

/// Waits for the first chunk: then the stream starts; if the job ends first,
/// its whole answer or its failure.
async fn streamed(
    app: &Arc<App>,
    record: &JobRecord,
    mut chunks: StreamReceiver,
    completion: Completion,
) -> Result<HttpResponse, ApiError> {
    match chunks.recv().await {
        Some(first) => Ok(stream::live(
            app.clone(),
            record.id.clone(),
            first,
            chunks,
            completion,
        )),
        None => Ok(stream::whole(
            &finished(app, record, None).await?,
            &completion,
        )),
    }
}

/// The job once it is over (its deadline bounds the wait), run meanwhile by
/// its `driver` if it has one; a failed job is the request's error.
pub(super) async fn finished(
    app: &App,
    record: &JobRecord,
    driver: Option<Driver>,
) -> Result<JobRecord, ApiError> {
    let wait = Duration::from_millis(record.deadline_ms.saturating_sub(now_ms()) + 1000);
    let record = app
        .wait_inline(&record.id, wait, driver)
        .await?
        .ok_or_else(lost)?;
    match record.status {
        JobStatus::Completed => Ok(record),
        JobStatus::Failed => Err(failed(&record)),
        JobStatus::Cancelled => Err(cancelled(&record)),
        JobStatus::Pending | JobStatus::Running => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "The job did not finish in time",
            format!("It may still finish: poll GET /status/{}.", record.id),
        )),
    }
}

fn lost() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The job cannot be found",
        "This is a fault on our side and has been logged.",
    )
}

/// A job its owner cancelled (POST /cancel) while the answer was awaited.
fn cancelled(record: &JobRecord) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("Job {} was cancelled", record.id),
        "It was cancelled with POST /cancel; it paid only for the seconds it ran.",
    )
}

/// A job that failed on every backend: 502, with why.
pub(super) fn failed(record: &JobRecord) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        record
            .error
            .clone()
            .unwrap_or_else(|| "The job failed".into()),
        "Nothing was charged; retry, or pick another model from GET /v1/models.",
    )
}

/// A finished job as a `chat.completion`.
fn whole(record: &JobRecord, completion: &Completion) -> Value {
    let output = stream::output_of(record);
    let mut body = json!({
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": output["text"]},
            "finish_reason": stream::finish_reason(&output),
            "logprobs": null,
        }],
    });
    if let Some(usage) = output.get("usage").filter(|u| u.is_object()) {
        body["usage"] = usage.clone();
    }
    body
}
