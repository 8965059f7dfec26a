//! A small JSON-over-HTTP client for local model servers (plain HTTP on the host
//! or its private network), with a cap on what it reads back.

use super::RuntimeFailure;
use bytes::Bytes;
use gpubridge_protocol::node::FailureKind;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
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
        body: &(impl Serialize + ?Sized),
    ) -> Result<Value, RuntimeFailure> {
        self.post_read(url, bearer, body, |bytes| serde_json::from_slice(bytes))
            .await
    }

    /// The same, with the 2xx answer's bytes read by `read` (straight into
    /// the shape the caller wants, not through a JSON tree).
    pub async fn post_read<T>(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &(impl Serialize + ?Sized),
        read: impl FnOnce(&[u8]) -> Result<T, serde_json::Error>,
    ) -> Result<T, RuntimeFailure> {
        let body = self.collect(self.open(url, bearer, body).await?).await?;
        read(&body).map_err(|e| {
            RuntimeFailure::new(FailureKind::Runtime, format!("answer is not JSON: {e}"))
        })
    }

    /// POSTs `body` as JSON and hands back a 2xx answer's body unread (a stream).
    pub async fn post_for_stream(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &(impl Serialize + ?Sized),
    ) -> Result<Incoming, RuntimeFailure> {
        Ok(self.open(url, bearer, body).await?.into_body())
    }

    /// Sends the request; an answer that is not 2xx is read and classified.
    async fn open(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &(impl Serialize + ?Sized),
    ) -> Result<Response<Incoming>, RuntimeFailure> {
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
        if status.is_success() {
            return Ok(response);
        }
        let body = self.collect(response).await?;
        let snippet: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        let kind = match status.as_u16() {
            400 | 404 | 413 | 415 | 422 => FailureKind::Rejected,
            503 => FailureKind::Unavailable,
            _ => FailureKind::Runtime,
        };
        Err(failure(kind, format!("HTTP {status}: {snippet}")))
    }

    async fn collect(&self, response: Response<Incoming>) -> Result<Bytes, RuntimeFailure> {
        Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| {
                RuntimeFailure::new(FailureKind::Runtime, format!("reading the answer: {e}"))
            })
    }
}
