//! The stand-in's streamed chat completions (`stream: true`), as OpenAI's API
//! sends them: Server-Sent Events of `chat.completion.chunk`s, a usage chunk
//! when `stream_options.include_usage` asks, then `[DONE]`. How many chunks, how
//! far apart, and whether the connection dies part-way are set per test; what
//! became of each stream (finished, cut by the client) is counted.

use bytes::Bytes;
use gpubridge_gateway::outgoing::Outgoing;
use gpubridge_protocol::sse;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the next streams go.
#[derive(Clone, Copy, Debug)]
pub struct StreamPlan {
    /// Content chunks, each `"w{n} "`.
    pub chunks: u32,
    /// Pause before each chunk.
    pub interval: Duration,
    /// Cut the connection (no `[DONE]`) after this many content chunks.
    pub die_after: Option<u32>,
}

impl Default for StreamPlan {
    fn default() -> Self {
        StreamPlan {
            chunks: 4,
            interval: Duration::ZERO,
            die_after: None,
        }
    }
}

/// What became of the streams served.
#[derive(Default)]
pub struct StreamCounts {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    /// The reader went away before the end.
    pub cut_by_client: AtomicU64,
}

/// The text a stream of `chunks` chunks adds up to.
pub fn streamed_text(chunks: u32) -> String {
    (0..chunks).map(|n| format!("w{n} ")).collect()
}

pub fn respond(
    plan: &Mutex<StreamPlan>,
    counts: Arc<StreamCounts>,
    input: &Value,
) -> Response<Outgoing> {
    let plan = *plan.lock();
    let include_usage = input["stream_options"]["include_usage"] == json!(true);
    let model = input["model"].clone();
    // Room for one event: a reader that stops reading stops the stream.
    let (tx, rx) = mpsc::channel(1);
    counts.started.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let outcome = send_all(&tx, plan, include_usage, &model).await;
        let counter = match outcome {
            Ok(()) => &counts.finished,
            Err(Cut::ByClient) => &counts.cut_by_client,
            Err(Cut::OnPurpose) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut response = Response::new(Outgoing::Chunks(rx));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

enum Cut {
    ByClient,
    /// `die_after`: the stream ends without `[DONE]`, as a crashed server's would.
    OnPurpose,
}

async fn send_all(
    tx: &mpsc::Sender<Bytes>,
    plan: StreamPlan,
    include_usage: bool,
    model: &Value,
) -> Result<(), Cut> {
    let send = |data: Value| {
        let event = Bytes::from(sse::event(data.to_string().as_bytes()));
        async move { tx.send(event).await.map_err(|_| Cut::ByClient) }
    };
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    for n in 0..plan.chunks {
        if plan.die_after == Some(n) {
            return Err(Cut::OnPurpose);
        }
        tokio::time::sleep(plan.interval).await;
        let delta = match n {
            0 => json!({"role": "assistant", "content": format!("w{n} ")}),
            _ => json!({"content": format!("w{n} ")}),
        };
        send(chunk(delta, Value::Null)).await?;
    }
    send(chunk(json!({}), json!("stop"))).await?;
    if include_usage {
        let usage = json!({"prompt_tokens": 5, "completion_tokens": plan.chunks, "total_tokens": 5 + plan.chunks});
        send(
            json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1,
                    "model": model, "choices": [], "usage": usage}),
        )
        .await?;
    }
    tx.send(Bytes::from_static(b"data: [DONE]\n\n"))
        .await
        .map_err(|_| Cut::ByClient)
}
