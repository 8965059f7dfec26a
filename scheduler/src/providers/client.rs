//! What every hosted provider's executor shares: its base URL and key, the
//! pooled HTTP client, the media fetcher, and how answers are classified.

use crate::config::SchedulerConfig;
use crate::executor::AttemptError;
use crate::http::{HttpClient, HttpResponse};
use crate::provider::Provider;
use crate::timeouts::TimedBody;
use bytes::Bytes;
use gpubridge_protocol::media::MediaFetcher;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request};
use serde::Serialize;
use serde_json::Value;

/// What an executor needs to call one provider.
#[derive(Clone)]
pub struct ProviderClient {
    pub provider: Provider,
    pub base_url: String,
    /// `Bearer <key>`, made once; `Err` keeps a key that is no valid header
    /// value, so each request fails to build as it would have.
    authorization: Option<Result<HeaderValue, String>>,
    pub prefer_wait_seconds: u64,
    pub http: HttpClient,
    pub media: MediaFetcher,
}

const AGENT: &str = concat!("gpubridge/", env!("CARGO_PKG_VERSION"));

/// The provider's credential as a header, marked sensitive: HTTP/2's header
/// compression never indexes it, and it prints as `Sensitive`.
fn bearer(key: &str) -> Result<HeaderValue, String> {
    let text = format!("Bearer {key}");
    match HeaderValue::from_str(&text) {
        Ok(mut value) => {
            value.set_sensitive(true);
            Ok(value)
        }
        Err(_) => Err(text),
    }
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
            authorization: pc
                .api_key
                .filter(|k| !k.trim().is_empty())
                .map(|key| bearer(&key)),
            prefer_wait_seconds: pc.prefer_wait_seconds.unwrap_or(60).clamp(1, 60),
            http,
            media,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path))
            .header(USER_AGENT, HeaderValue::from_static(AGENT));
        // Replicate documents `Bearer` too; every provider here takes it.
        match &self.authorization {
            Some(Ok(value)) => builder = builder.header(AUTHORIZATION, value.clone()),
            Some(Err(text)) => builder = builder.header(AUTHORIZATION, text.as_str()),
            None => {}
        }
        builder
    }

    /// Sends a request and returns the successful response; any other status is an error.
    pub async fn send(
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
            Err(from_status(&response))
        }
    }

    /// POSTs JSON and parses a JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, AttemptError> {
        // A closure: `from_slice` names one lifetime, `read` takes any.
        self.post_json_read(path, body, |bytes| serde_json::from_slice(bytes))
            .await
    }

    /// POSTs JSON and reads the answer with `read`, for answers that have a
    /// faster reading than a JSON tree; a `read` error means "not JSON".
    pub async fn post_json_read<T>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
        read: impl FnOnce(&[u8]) -> Result<T, serde_json::Error>,
    ) -> Result<T, AttemptError> {
        let response = self
            .send(self.json_request(path), json_bytes(body)?)
            .await?;
        read(&response.body).map_err(|_| not_json(&response))
    }

    /// POSTs JSON and hands back the successful answer's body unread, for
    /// streams; any other status is read and classified as usual.
    pub async fn post_for_stream(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<TimedBody, AttemptError> {
        let request = self
            .json_request(path)
            .header(ACCEPT, "text/event-stream")
            .body(Full::new(json_bytes(body)?))
            .map_err(|e| AttemptError::Connect(format!("building request: {e}")))?;
        let response = self.http.open(request).await?;
        if response.status().is_success() {
            return Ok(response.into_body());
        }
        Err(from_status(&self.http.collect(response).await?))
    }

    fn json_request(&self, path: &str) -> hyper::http::request::Builder {
        self.request(Method::POST, path)
            .header(CONTENT_TYPE, "application/json")
    }

    pub async fn get_json(&self, path_or_url: &str) -> Result<Value, AttemptError> {
        let builder = if path_or_url.starts_with("http") {
            self.request(Method::GET, "").uri(path_or_url)
        } else {
            self.request(Method::GET, path_or_url)
        };
        let response = self.send(builder, Bytes::new()).await?;
        parse_json(&response)
    }
}

fn json_bytes(body: &(impl Serialize + ?Sized)) -> Result<Bytes, AttemptError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| AttemptError::BadResponse(e.to_string()))
}

pub fn parse_json(response: &HttpResponse) -> Result<Value, AttemptError> {
    serde_json::from_slice(&response.body).map_err(|_| not_json(response))
}

fn not_json(response: &HttpResponse) -> AttemptError {
    AttemptError::BadResponse(format!("not JSON: {}", response.snippet()))
}

/// Classifies a non-success HTTP answer: the request's fault, or the provider's.
fn from_status(response: &HttpResponse) -> AttemptError {
    let status = response.status.as_u16();
    let body = response.snippet();
    match status {
        400 | 404 | 413 | 415 | 422 => AttemptError::Rejected { status, body },
        _ => AttemptError::Upstream { status, body },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_header_is_sensitive_and_a_bad_key_still_fails_later() {
        let value = bearer("gsk_live").expect("a valid key");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().ok(), Some("Bearer gsk_live"));
        assert!(!format!("{value:?}").contains("gsk_live"));
        let bad = bearer("line\nbreak");
        assert_eq!(bad.err().as_deref(), Some("Bearer line\nbreak"));
    }
}
