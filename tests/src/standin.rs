//! A local stand-in for the hosted providers, speaking their documented wire
//! formats: OpenAI-compatible chat, embeddings, audio (Groq, Together, DeepInfra,
//! Fireworks, Jina), Together images, Jina/Together rerank and Replicate
//! predictions. Its behaviour can be switched at run time to inject failures;
//! streamed chat completions are `standin_stream`'s.

use crate::standin_stream::{StreamCounts, StreamPlan};
use bytes::Bytes;
use gpubridge_gateway::outgoing::Outgoing;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    Ok,
    /// HTTP 500 with a JSON error body.
    ServerError,
    /// Accepts the request and never answers.
    Hang,
    /// Answers 200 headers, then never sends a byte of the body.
    Stall,
    /// Answers 200 and the start of a JSON body, then goes silent.
    Trickle,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// Answers correctly after the given delay.
    Slow(Duration),
    /// HTTP 400: the provider rejects the request.
    Reject,
}

struct State {
    behavior: Mutex<Behavior>,
    api_key: String,
    requests: AtomicU64,
    by_path: Mutex<HashMap<String, u64>>,
    predictions: Mutex<HashMap<String, (Value, u32)>>,
    next_id: AtomicU64,
    stream_plan: Mutex<StreamPlan>,
    streams: Arc<StreamCounts>,
}

/// A running stand-in; stops when dropped.
pub struct Standin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Standin {
    /// Starts on an ephemeral loopback port, expecting `Authorization: Bearer {api_key}`.
    pub async fn start(api_key: &str) -> std::io::Result<Standin> {
        Standin::start_on("127.0.0.1:0".parse().expect("literal address"), api_key).await
    }

    pub async fn start_on(addr: SocketAddr, api_key: &str) -> std::io::Result<Standin> {
        Standin::start_with(addr, api_key, None).await
    }

    /// On `addr`, over TLS (HTTP/2 or HTTP/1.1 by ALPN) when `tls` is set.
    pub async fn start_with(
        addr: SocketAddr,
        api_key: &str,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Standin> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            behavior: Mutex::new(Behavior::Ok),
            api_key: api_key.to_string(),
            requests: AtomicU64::new(0),
            by_path: Mutex::new(HashMap::new()),
            predictions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stream_plan: Mutex::new(StreamPlan::default()),
            streams: Arc::default(),
        });
        let task =
            crate::serve::spawn_with(listener, tls, state.clone(), |state, request| async move {
                handle(&state, request).await
            });
        Ok(Standin { addr, state, task })
    }

    /// The OpenAI-style base URL to give GPU-Bridge (`GPUBRIDGE_<PROVIDER>_BASE_URL`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        *self.state.behavior.lock() = behavior;
    }

    /// How the next streamed chat completions go.
    pub fn set_stream_plan(&self, plan: StreamPlan) {
        *self.state.stream_plan.lock() = plan;
    }

    /// What became of the streams served so far.
    pub fn streams(&self) -> &StreamCounts {
        &self.state.streams
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    pub fn requests_to(&self, path: &str) -> u64 {
        self.state.by_path.lock().get(path).copied().unwrap_or(0)
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Outgoing> {
    let mut response = Response::new(Outgoing::whole(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// 200 with `first` (if any) as the body's start, and nothing after, ever.
fn silent_after(first: Bytes) -> Response<Outgoing> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first).await.is_err() {
            return;
        }
        // Holding the sender open keeps the body unfinished until the reader leaves.
        tx.closed().await;
    });
    let mut response = Response::new(Outgoing::Chunks(rx));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn json_response(status: StatusCode, body: Value) -> Response<Outgoing> {
    respond(status, "application/json", body.to_string())
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Outgoing> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path().to_string();
    *state.by_path.lock().entry(path.clone()).or_default() += 1;
    if path == "/media/clip.wav" {
        return respond(
            StatusCode::OK,
            "audio/wav",
            Bytes::from_static(b"RIFF\x24\x00\x00\x00WAVEfmt "),
        );
    }
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.api_key));
    if !authorized {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"message": "Invalid API key"}}),
        );
    }
    let behavior = *state.behavior.lock();
    match behavior {
        Behavior::Ok => {}
        Behavior::ServerError => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"message": "upstream exploded"}}),
            )
        }
        Behavior::Hang => {
            std::future::pending::<()>().await;
        }
        Behavior::Stall => return silent_after(Bytes::new()),
        Behavior::Trickle => return silent_after(Bytes::from_static(b"{\"id\": \"chatcmpl-")),
        Behavior::Garbage => {
            return respond(
                StatusCode::OK,
                "application/json",
                "<html>definitely not json",
            )
        }
        Behavior::Slow(delay) => tokio::time::sleep(delay).await,
        Behavior::Reject => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": "invalid request"}}),
            )
        }
    }
    let method = request.method().clone();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"error": "unreadable body"}))
        }
    };
    if content_type.starts_with("multipart/form-data") {
        return transcription(&body);
    }
    let input: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "body is not JSON"}),
                )
            }
        }
    };
    match (method, path.as_str()) {
        (Method::POST, "/v1/chat/completions") if input["stream"] == json!(true) => {
            crate::standin_stream::respond(&state.stream_plan, state.streams.clone(), &input)
        }
        (Method::POST, "/v1/chat/completions") => chat(&input),
        (Method::POST, "/v1/completions") => completion(&input),
        // Cog's own HTTP API, as a model container on a GPU host serves it.
        (Method::POST, "/cog/predictions") => json_response(
            StatusCode::OK,
            json!({"status": "succeeded", "output": {"echo": input["input"].clone()}, "metrics": {"predict_time": 0.01}}),
        ),
        (Method::POST, "/v1/embeddings") => embeddings(&input),
        (Method::POST, "/v1/rerank") => rerank(&input),
        (Method::POST, "/v1/images/generations") => images(&input),
        (Method::POST, "/v1/audio/speech") => respond(
            StatusCode::OK,
            "audio/mpeg",
            Bytes::from_static(b"ID3\x04fake-mp3-frames"),
        ),
        (Method::POST, "/v1/predictions") => create_prediction(state, &input),
        (Method::POST, p) if p.starts_with("/v1/models/") && p.ends_with("/predictions") => {
            create_prediction(state, &input)
        }
        (Method::POST, p) if p.starts_with("/v1/predictions/") && p.ends_with("/cancel") => {
            json_response(StatusCode::OK, json!({"status": "canceled"}))
        }
        (Method::GET, p) if p.starts_with("/v1/predictions/") => {
            poll_prediction(state, &p["/v1/predictions/".len()..])
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no route {path}")}),
        ),
    }
}

fn chat(input: &Value) -> Response<Outgoing> {
    let last = input["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].clone())
        .unwrap_or(Value::Null);
    let text = match last {
        Value::String(s) => format!("stand-in reply to: {s}"),
        // Vision requests send a list of content parts.
        Value::Array(parts) => format!("stand-in saw {} content parts", parts.len()),
        _ => "stand-in reply".to_string(),
    };
    json_response(
        StatusCode::OK,
        json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "model": input["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }),
    )
}

fn vector(text: &str) -> Vec<f64> {
    let mut v = vec![0.0; 8];
    for (i, b) in text.bytes().enumerate() {
        v[i % 8] += f64::from(b) / 255.0;
    }
    v
}

fn embeddings(input: &Value) -> Response<Outgoing> {
    let texts: Vec<String> = match &input["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return json_response(StatusCode::BAD_REQUEST, json!({"error": "input required"})),
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t)}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "model": input["model"], "data": data}),
    )
}

fn rerank(input: &Value) -> Response<Outgoing> {
    let query = input["query"].as_str().unwrap_or_default().to_lowercase();
    let documents = input["documents"].as_array().cloned().unwrap_or_default();
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let doc = d.as_str().unwrap_or_default().to_lowercase();
            let hits = query.split_whitespace().filter(|w| doc.contains(w)).count();
            (
                i,
                hits as f64 / (1.0 + query.split_whitespace().count() as f64),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_n = input["top_n"].as_u64().unwrap_or(documents.len() as u64) as usize;
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(i, s)| json!({"index": i, "relevance_score": s}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"model": input["model"], "results": results, "usage": {"total_tokens": 10}}),
    )
}

fn images(input: &Value) -> Response<Outgoing> {
    let n = input["n"].as_u64().unwrap_or(1);
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"url": format!("https://standin.invalid/image-{i}.png")}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"id": "img-standin", "model": input["model"], "data": data}),
    )
}

fn transcription(body: &[u8]) -> Response<Outgoing> {
    let text = String::from_utf8_lossy(body);
    if !text.contains("name=\"file\"") || !text.contains("name=\"model\"") {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "file and model are required"}),
        );
    }
    json_response(
        StatusCode::OK,
        json!({"text": format!("transcribed {} bytes", body.len())}),
    )
}

/// OpenAI legacy completions: the prompt continued.
fn completion(body: &Value) -> Response<Outgoing> {
    let prompt = body["prompt"].as_str().unwrap_or_default();
    json_response(
        StatusCode::OK,
        json!({"model": body["model"].clone(), "choices": [{"text": format!("{prompt} … continued"), "finish_reason": "stop"}]}),
    )
}

/// Replicate: a new prediction starts, is processing on the first poll, and
/// succeeds on the second, echoing its input as output.
fn create_prediction(state: &State, body: &Value) -> Response<Outgoing> {
    let id = format!("pred{}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let input = body["input"].clone();
    state
        .predictions
        .lock()
        .insert(id.clone(), (input.clone(), 0));
    json_response(
        StatusCode::CREATED,
        json!({"id": id, "status": "starting", "input": input, "output": null, "urls": {"get": format!("/v1/predictions/{id}")}}),
    )
}

fn poll_prediction(state: &State, id: &str) -> Response<Outgoing> {
    let mut predictions = state.predictions.lock();
    let Some((input, polls)) = predictions.get_mut(id) else {
        return json_response(StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    };
    *polls += 1;
    if *polls < 2 {
        return json_response(
            StatusCode::OK,
            json!({"id": id, "status": "processing", "output": null}),
        );
    }
    let output = if input.get("prompt").is_some() && input.get("system_prompt").is_some() {
        json!(["stand-in ", "replicate ", "tokens"])
    } else {
        json!({"echo": input})
    };
    json_response(
        StatusCode::OK,
        json!({"id": id, "status": "succeeded", "output": output, "metrics": {"predict_time": 0.01}}),
    )
}
