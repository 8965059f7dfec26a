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
use gpubridge_scheduler::{
    now_ms, BackendClock, Driver, JobRecord, Origin, StreamReceiver, StreamTap,
};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
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
        id_shown_late: true,
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
        true => {
            let driver = accepted.driver.take();
            streamed(app, &accepted.record, driver, chunks, completion).await?
        }
        // A replayed request has no live stream: it gets the finished answer.
        false => {
            let _watching = chunks;
            let (driver, replay) = (accepted.driver.take(), accepted.replay_clock.take());
            let record = finished(app, &accepted.record, driver, replay).await?;
            match streams {
                true => stream::whole(&record, &completion),
                false => whole(&record, &completion),
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
/// its whole answer or its failure. A job started unwritten runs in a task of
/// its own and is written while its backend makes that chunk, which shows its
/// id.
async fn streamed(
    app: &Arc<App>,
    record: &JobRecord,
    driver: Option<Driver>,
    mut chunks: StreamReceiver,
    completion: Completion,
) -> Result<HttpResponse, ApiError> {
    if let Some(driver) = driver {
        driver.detach();
    }
    let (first, durable) = tokio::join!(chunks.recv(), app.durable(&record.id));
    durable?;
    match first {
        Some(first) => Ok(stream::live(
            app.clone(),
            record.id.clone(),
            first,
            chunks,
            completion,
        )),
        None => {
            let ended = finished(app, record, None, None).await?;
            Ok(stream::whole(&ended, &completion))
        }
    }
}

/// The job once it is over (its deadline bounds the wait), run meanwhile by
/// its `driver` if it has one, the wait on a replay's clock if it is one
/// ([`crate::intake::Accepted::replay_clock`]); a failed job is the request's error.
pub(super) async fn finished(
    app: &App,
    record: &JobRecord,
    driver: Option<Driver>,
    replay_clock: Option<BackendClock>,
) -> Result<Arc<JobRecord>, ApiError> {
    let wait = Duration::from_millis(record.deadline_ms.saturating_sub(now_ms()) + 1000);
    let record = app
        .wait_inline(&record.id, wait, driver, replay_clock)
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

/// A finished job as a `chat.completion`, serialized from its stored output
/// text without building a JSON tree.
fn whole(record: &JobRecord, completion: &Completion) -> HttpResponse {
    json(
        StatusCode::OK,
        &Whole::of(&ChatOutput::of(record), completion),
    )
}

impl<'a> Whole<'a> {
    fn of(output: &ChatOutput<'a>, completion: &'a Completion) -> Whole<'a> {
        Whole {
            id: &completion.id,
            object: "chat.completion",
            created: completion.created,
            model: &completion.model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: output.text,
                },
                finish_reason: output
                    .finish_reason
                    .map_or(FinishReason::Stop("stop"), FinishReason::Given),
                logprobs: None,
            }],
            usage: output
                .usage
                .filter(|usage| usage.get().trim_start().starts_with('{')),
        }
    }
}

impl<'a> ChatOutput<'a> {
    /// Empty when the job has no output, or one that is not a JSON object.
    fn of(record: &'a JobRecord) -> ChatOutput<'a> {
        record
            .output
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

/// What a `chat.completion` takes from a chat job's output
/// (`{text, model, finish_reason, usage}`), borrowed from its text. A field
/// present as `null` stays `null`.
#[derive(Deserialize, Default)]
struct ChatOutput<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    text: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    finish_reason: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    usage: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(field: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(field).map(Some)
}

#[derive(Serialize)]
struct Whole<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: FinishReason<'a>,
    logprobs: Option<()>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    /// `null` when the output had no text.
    content: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum FinishReason<'a> {
    Given(&'a RawValue),
    Stop(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn answer(output: Option<&str>) -> Value {
        let mut record = gpubridge_scheduler::sample("j");
        record.output = output.map(str::to_string);
        let completion = Completion {
            id: "chatcmpl-j".into(),
            model: "m".into(),
            created: 7,
            include_usage: false,
        };
        serde_json::to_value(Whole::of(&ChatOutput::of(&record), &completion)).unwrap()
    }

    #[test]
    fn a_whole_answer_carries_the_outputs_text_reason_and_usage() {
        let body = answer(Some(
            r#"{"text": "hi \"there\"", "finish_reason": "length", "usage": {"total_tokens": 3}}"#,
        ));
        assert_eq!(
            body,
            serde_json::json!({
                "id": "chatcmpl-j", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi \"there\""},
                             "finish_reason": "length", "logprobs": null}],
                "usage": {"total_tokens": 3},
            })
        );
    }

    #[test]
    fn missing_fields_take_their_defaults_and_nulls_stay_null() {
        let body = answer(Some(r#"{"finish_reason": null, "usage": null}"#));
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(body["choices"][0]["finish_reason"], Value::Null);
        assert!(body.get("usage").is_none(), "{body}");
        for output in [None, Some("not json"), Some("{}")] {
            let body = answer(output);
            assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
            assert_eq!(body["choices"][0]["finish_reason"], "stop");
            assert!(body.get("usage").is_none(), "{body}");
        }
    }
}
