//! Stripe's REST API as Stripe documents it: form-encoded requests with the
//! secret key as bearer, an `Idempotency-Key` on every call, JSON answers.

use crate::poster::{JsonPoster, PostError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe: {0}")]
    Http(#[from] PostError),
    #[error("Stripe answered something unreadable: {0}")]
    Unreadable(String),
}

impl StripeError {
    /// Stripe's own message for a refused request (a declined card).
    pub fn stripe_message(&self) -> Option<String> {
        let StripeError::Http(PostError::Status { body, .. }) = self else {
            return None;
        };
        let parsed: Value = serde_json::from_str(body).ok()?;
        let error = parsed.get("error")?;
        let text = error
            .get("message")
            .or_else(|| error.get("decline_code"))
            .or_else(|| error.get("code"))?;
        text.as_str().map(str::to_string)
    }
}

#[derive(Clone)]
pub struct StripeClient {
    http: JsonPoster,
    base_url: String,
    bearer: String,
}

impl StripeClient {
    pub fn new(base_url: &str, secret_key: &str, timeout: Duration) -> StripeClient {
        StripeClient {
            http: JsonPoster::new(timeout, 1 << 20),
            base_url: base_url.trim_end_matches('/').to_string(),
            bearer: format!("Bearer {secret_key}"),
        }
    }

    /// `POST /v1/{path}` with `form`; `idempotency_key` makes a retried call
    /// the same call at Stripe.
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let body = form
            .iter()
            .fold(
                url::form_urlencoded::Serializer::new(String::new()),
                |mut body, (name, value)| {
                    body.append_pair(name, value);
                    body
                },
            )
            .finish();
        let request = self
            .request(Method::POST, path)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("idempotency-key", idempotency_key)
            .body(Full::new(Bytes::from(body)));
        self.send(request).await
    }

    /// `GET /v1/{path}`.
    pub async fn get(&self, path: &str) -> Result<Value, StripeError> {
        let request = self
            .request(Method::GET, path)
            .body(Full::new(Bytes::new()));
        self.send(request).await
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}/v1/{path}", self.base_url))
            .header(AUTHORIZATION, &self.bearer)
    }

    async fn send(
        &self,
        request: Result<Request<Full<Bytes>>, hyper::http::Error>,
    ) -> Result<Value, StripeError> {
        let request = request.map_err(|e| StripeError::Unreadable(e.to_string()))?;
        let bytes = self.http.send(request).await?;
        serde_json::from_slice(&bytes).map_err(|e| StripeError::Unreadable(e.to_string()))
    }
}
