//! A small JSON-over-HTTP client for local model servers (plain HTTP on the host
//! or its private network), with a cap on what it reads back.

use super::RuntimeFailure;
use bytes::Bytes;
use gpubridge_protocol::node::FailureKind;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct JsonPoster {
    client: Client<HttpConnector, Full<Bytes>>,
    max_bytes: usize,
}

impl JsonPoster {
    pub fn new(max_bytes: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        JsonPoster {
            client: Client::builder(TokioExecutor::new()).build(connector),
            max_bytes,
        }
    }

    /// POSTs `body` as JSON (with `Authorization: Bearer` when the server wants a
    /// key); a 2xx JSON answer is the result.
    pub async fn post(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<Value, RuntimeFailure> {
        let failure = |kind, message: String| RuntimeFailure::new(kind, message);
        let bytes = serde_json::to_vec(body)
            .map_err(|e| failure(FailureKind::Rejected, format!("input: {e}")))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(CONTENT_TYPE, "application/json");
        if let Some(key) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| failure(FailureKind::Runtime, format!("bad runtime URL {url}: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            // Nothing answering on the host: another agent may have its server up.
            failure(
                FailureKind::Unavailable,
                format!("model server at {url} unreachable: {e}"),
            )
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|e| failure(FailureKind::Runtime, format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let snippet: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            let kind = match status.as_u16() {
                400 | 404 | 413 | 415 | 422 => FailureKind::Rejected,
                503 => FailureKind::Unavailable,
                _ => FailureKind::Runtime,
            };
            return Err(failure(kind, format!("HTTP {status}: {snippet}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| failure(FailureKind::Runtime, format!("answer is not JSON: {e}")))
    }
}
