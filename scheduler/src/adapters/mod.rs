//! Adapters turn a job's input into a provider's documented request and its
//! response back into GPU-Bridge output, one module per wire format.

mod echo;
mod jina;
mod openai;
mod replicate;
mod together;

use crate::backend::Binding;
use crate::catalog::Operation;
use crate::config::SchedulerConfig;
use crate::http::{HttpClient, HttpResponse};
use crate::provider::Provider;
use bytes::Bytes;
use gpubridge_protocol::media::{MediaError, MediaFetcher};
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Why one attempt on one backend failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("upstream answered HTTP {status}: {body}")]
    Upstream { status: u16, body: String },
    #[error("upstream rejected the request (HTTP {status}): {body}")]
    Rejected { status: u16, body: String },
    #[error("upstream answered something unreadable: {0}")]
    BadResponse(String),
    #[error("upstream reported failure: {0}")]
    Failed(String),
    #[error("{0}")]
    Media(#[from] MediaError),
    #[error("backend does not support {0:?}")]
    Unsupported(Operation),
}

impl AttemptError {
    /// Does this failure say the backend is unhealthy (feeds its circuit breaker)?
    pub fn counts_against_backend(&self) -> bool {
        !matches!(self, AttemptError::Rejected { .. } | AttemptError::Media(_))
    }

    /// Is there no point trying another backend? A user's unreachable media URL
    /// fails the same everywhere.
    pub fn is_final(&self) -> bool {
        matches!(self, AttemptError::Media(_))
    }

    /// Classifies a non-success HTTP answer.
    fn from_status(response: &HttpResponse) -> AttemptError {
        let status = response.status.as_u16();
        let body = response.snippet();
        match status {
            400 | 404 | 413 | 415 | 422 => AttemptError::Rejected { status, body },
            _ => AttemptError::Upstream { status, body },
        }
    }
}

/// What an adapter needs to call one provider.
pub struct ProviderClient {
    pub provider: Provider,
    pub base_url: String,
    api_key: Option<String>,
    pub prefer_wait_seconds: u64,
    pub http: HttpClient,
    pub media: MediaFetcher,
}

impl ProviderClient {
    pub fn new(
        provider: Provider,
        cfg: &SchedulerConfig,
        http: HttpClient,
        media: MediaFetcher,
    ) -> Self {
        let pc = cfg.provider(provider);
        ProviderClient {
            provider,
            base_url: cfg.base_url(provider),
            api_key: pc.api_key.filter(|k| !k.trim().is_empty()),
            prefer_wait_seconds: pc.prefer_wait_seconds.unwrap_or(60).clamp(1, 60),
            http,
            media,
        }
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path))
            .header(
                "user-agent",
                concat!("gpubridge/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = &self.api_key {
            // Replicate documents `Bearer` too; every provider here takes it.
            builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        builder
    }

    /// Sends a request and returns the successful response; any other status is an error.
    async fn send(
        &self,
        request: hyper::http::request::Builder,
        body: Bytes,
    ) -> Result<HttpResponse, AttemptError> {
        let request = request
            .body(Full::new(body))
            .map_err(|e| AttemptError::Connect(format!("building request: {e}")))?;
        let response = self.http.send(request).await?;
        if response.status.is_success() {
            Ok(response)
        } else {
            Err(AttemptError::from_status(&response))
        }
    }

    /// POSTs JSON and parses a JSON answer.
    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, AttemptError> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| AttemptError::BadResponse(e.to_string()))?;
        let response = self
            .send(
                self.request(Method::POST, path)
                    .header(CONTENT_TYPE, "application/json"),
                Bytes::from(bytes),
            )
            .await?;
        parse_json(&response)
    }

    async fn get_json(&self, path_or_url: &str) -> Result<Value, AttemptError> {
        let builder = if path_or_url.starts_with("http") {
            self.request(Method::GET, "").uri(path_or_url)
        } else {
            self.request(Method::GET, path_or_url)
        };
        let response = self.send(builder, Bytes::new()).await?;
        parse_json(&response)
    }
}

fn parse_json(response: &HttpResponse) -> Result<Value, AttemptError> {
    serde_json::from_slice(&response.body)
        .map_err(|_| AttemptError::BadResponse(format!("not JSON: {}", response.snippet())))
}

/// One call of one job on one backend.
pub struct Call<'a> {
    pub input: &'a Value,
    pub binding: &'a Binding,
    /// When the attempt must be over; long-running adapters poll until then.
    pub deadline: Instant,
}

impl Call<'_> {
    fn str_field(&self, name: &str) -> Option<&str> {
        self.input.get(name).and_then(Value::as_str)
    }
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs one attempt: picks the wire format from the provider and the operation.
pub async fn invoke(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    use Operation::*;
    match (client.provider, call.binding.operation) {
        (Provider::Local, Echo) => Ok(echo::run(call)),
        (Provider::Local, op) => Err(AttemptError::Unsupported(op)),
        (Provider::Replicate, _) => replicate::run(client, call).await,
        (Provider::Jina | Provider::Together, Rerank) => jina::rerank(client, call).await,
        (Provider::Together, Image) => together::images(client, call).await,
        (_, Chat) => openai::chat(client, call).await,
        (_, Vision) => openai::vision(client, call).await,
        (_, Embedding) => openai::embeddings(client, call).await,
        (_, Transcription) => openai::transcription(client, call).await,
        (_, Speech) => openai::speech(client, call).await,
        (_, op) => Err(AttemptError::Unsupported(op)),
    }
}
