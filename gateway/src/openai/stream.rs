//! Writing a chat completion as Server-Sent Events: each backend chunk re-labelled
//! with our completion id and model and sent as it comes; then the usage chunk
//! when asked for and `[DONE]` — or, when the backend died mid-stream, an error
//! event and no `[DONE]`, so no client mistakes a cut answer for a whole one.

use super::error::kind_and_code;
use super::live::LiveEvents;
use crate::app::{App, HttpResponse};
use crate::outgoing::Outgoing;
use bytes::Bytes;
use gpubridge_protocol::sse;
use gpubridge_protocol::JobId;
use gpubridge_scheduler::{JobRecord, StreamReceiver};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// What every chunk of one completion carries.
pub struct Completion {
    pub id: String,
    /// The model as the client named it.
    pub model: String,
    pub created: u64,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
}

pub(super) const DONE: &[u8] = b"data: [DONE]\n\n";

/// A stream of a running job, from its first chunk on (`live.rs`).
pub fn live(
    app: Arc<App>,
    id: JobId,
    first: Value,
    chunks: StreamReceiver,
    completion: Completion,
) -> HttpResponse {
    let events = LiveEvents::new(app, id, first, chunks, completion);
    event_stream(Outgoing::Produced(Box::pin(events)))
}

/// A finished job's answer as a complete stream.
pub fn whole(record: &JobRecord, completion: &Completion) -> HttpResponse {
    let output = output_of(record);
    let text = output.get("text").cloned().unwrap_or(json!(""));
    let mut body = Vec::new();
    let chunks = [
        json!({"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}),
        json!({"index": 0, "delta": {}, "finish_reason": finish_reason(&output)}),
    ];
    for choice in chunks {
        body.extend(completion.event(json!({"choices": [choice]})));
    }
    if let Some(usage) = completion.usage_event(&output) {
        body.extend(usage);
    }
    body.extend_from_slice(DONE);
    event_stream(Outgoing::whole(body))
}

fn event_stream(body: Outgoing) -> HttpResponse {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering proxies (nginx) to pass each event on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// OpenAI's SDKs raise an event with an `error` as an APIError; it is typed as
/// the 502 it would have been before the first chunk.
pub(super) fn error_event(message: &str) -> Bytes {
    let (kind, code) = kind_and_code(hyper::StatusCode::BAD_GATEWAY);
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    Bytes::from(sse::event(body.to_string().as_bytes()))
}

impl Completion {
    /// A backend's chunk as ours; `None` for a usage-only chunk nobody asked for.
    pub(super) fn relabel(&self, mut chunk: Value, usage_sent: &mut bool) -> Option<Vec<u8>> {
        let fields = chunk.as_object_mut()?;
        if self.include_usage {
            *usage_sent |= fields.get("usage").is_some_and(Value::is_object);
        } else {
            fields.remove("usage");
            let empty = fields
                .get("choices")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if empty {
                return None;
            }
        }
        Some(self.event(chunk))
    }

    /// One `chat.completion.chunk` event with our id, model and time.
    fn event(&self, mut chunk: Value) -> Vec<u8> {
        if let Some(fields) = chunk.as_object_mut() {
            fields.insert("id".into(), json!(self.id));
            fields.insert("object".into(), json!("chat.completion.chunk"));
            fields.insert("model".into(), json!(self.model));
            fields.entry("created").or_insert(json!(self.created));
        }
        sse::event(chunk.to_string().as_bytes())
    }

    pub(super) fn usage_event(&self, output: &Value) -> Option<Vec<u8>> {
        let usage = output.get("usage").filter(|u| u.is_object())?;
        self.include_usage
            .then(|| self.event(json!({"choices": [], "usage": usage})))
    }
}

/// A job's output as JSON (`{text, model, finish_reason, usage}` for chat).
pub fn output_of(record: &JobRecord) -> Value {
    record
        .output
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

pub fn finish_reason(output: &Value) -> Value {
    output
        .get("finish_reason")
        .cloned()
        .unwrap_or(json!("stop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(include_usage: bool) -> Completion {
        Completion {
            id: "chatcmpl-j".into(),
            model: "m".into(),
            created: 7,
            include_usage,
        }
    }

    fn data(event: &[u8]) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap()
    }

    #[test]
    fn chunks_are_relabelled_and_usage_passes_only_when_asked() {
        let chunk = json!({"id": "up", "model": "up-m", "choices": [{"delta": {"content": "a"}}], "usage": null});
        let usage = json!({"id": "up", "choices": [], "usage": {"total_tokens": 3}});
        let mut sent = false;
        let plain = completion(false);
        let event = data(&plain.relabel(chunk.clone(), &mut sent).unwrap());
        assert_eq!(event["id"], "chatcmpl-j");
        assert_eq!(event["model"], "m");
        assert_eq!(event["object"], "chat.completion.chunk");
        assert!(event.get("usage").is_none());
        assert!(plain.relabel(usage.clone(), &mut sent).is_none());
        assert!(!sent);
        let asked = completion(true);
        assert!(asked.relabel(usage, &mut sent).is_some());
        assert!(sent);
    }
}
