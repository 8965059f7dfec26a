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
    /// `Bearer …`, sent as `Authorization` unless a request names its own.
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
            bearer: Some(format!("Bearer {key}").into()),
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
        let (parts, raw) = self.exchange(method, url, headers, body).await?;
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            raw,
        })
    }

    /// [`JsonClient::send`] without reading the answer as JSON: for load
    /// generators, which look at a body only when the status is not the one
    /// expected, and should spend their cores sending.
    pub async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(hyper::http::response::Parts, Bytes)> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(bearer) = &self.bearer {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                builder = builder.header("authorization", &**bearer);
            }
        }
        let response = self
            .client
            .request(builder.body(Full::new(body.into()))?)
            .await?;
        let (parts, body) = response.into_parts();
        Ok((parts, body.collect().await?.to_bytes()))
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

/// Writes `request` as raw bytes to `addr` (keeping the socket open for
/// writing) and reads one HTTP/1.1 answer: its status and JSON body.
pub async fn raw_exchange(addr: &str, request: Vec<u8>) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        // Held open: a request cut short must look slow, not finished.
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut buffer = [0u8; 8192];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if whole_answer(&answer).is_some() {
                break;
            }
        }
    })
    .await;
    writing.abort();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// The HTTP/1.1 answer that `bytes` start with, once its body (by
/// Content-Length) is all there: its status and body.
pub fn whole_answer(bytes: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length: ")
            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
    })?;
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (body.len() >= length).then(|| (status, body.to_string()))
}

/// Sends `request` on an open connection and reads its whole answer; panics
/// if the connection closes first.
pub async fn exchange_on(stream: &mut tokio::net::TcpStream, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
        if let Some(whole) = whole_answer(&answer) {
            return whole;
        }
    }
}

/// The answer is the contract's envelope (`error`, `hint`) with `status`.
pub fn assert_envelope(reply: &Reply, status: u16) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{}",
        String::from_utf8_lossy(&reply.raw)
    );
    assert!(
        reply.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "no error: {}",
        reply.body
    );
    assert!(
        reply.body["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "no hint: {}",
        reply.body
    );
    assert_eq!(reply.headers["content-type"], "application/json");
}
