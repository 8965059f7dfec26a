//! A small JSON-over-HTTP client for tests and the bench's direct baseline.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Clone)]
pub struct JsonClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Sent as `Authorization: Bearer …` unless a request names its own.
    bearer: Option<std::sync::Arc<str>>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

impl Default for JsonClient {
    fn default() -> Self {
        JsonClient::new()
    }
}

impl JsonClient {
    pub fn new() -> JsonClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        JsonClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            bearer: None,
        }
    }

    /// The same client (and connection pool), authenticating with `key`.
    pub fn with_bearer(&self, key: &str) -> JsonClient {
        JsonClient {
            client: self.client.clone(),
            bearer: Some(key.into()),
        }
    }

    /// Sends a request with a raw body and extra headers.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Reply> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(key) = &self.bearer {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                builder = builder.header("authorization", format!("Bearer {key}"));
            }
        }
        let response = self
            .client
            .request(builder.body(Full::new(body.into()))?)
            .await?;
        let (parts, body) = response.into_parts();
        let raw = body.collect().await?.to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            raw,
        })
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<Reply> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn post_json(
        &self,
        url: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, url, &all, body.to_string()).await
    }
}
