//! Reading a streamed answer (Server-Sent Events) event by event, as a client
//! does, and leaving in the middle of one: dropping the stream closes its
//! connection.

use bytes::Bytes;
use gpubridge_protocol::sse::SseDecoder;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::VecDeque;

pub struct EventStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    decoder: SseDecoder,
    ready: VecDeque<String>,
}

impl EventStream {
    /// POSTs `body` as JSON on a connection of its own.
    pub async fn open(
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> anyhow::Result<EventStream> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = client
            .request(request.body(Full::new(Bytes::from(body.to_string())))?)
            .await?;
        let (parts, body) = response.into_parts();
        Ok(EventStream {
            status: parts.status,
            headers: parts.headers,
            body,
            decoder: SseDecoder::new(1 << 20),
            ready: VecDeque::new(),
        })
    }

    /// The next event's data; `None` when the body ends.
    pub async fn next(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            if let Some(bytes) = frame?.data_ref() {
                self.ready.extend(self.decoder.push(bytes)?);
            }
        }
    }

    /// Every remaining event's data, to the end of the body.
    pub async fn rest(mut self) -> anyhow::Result<Vec<String>> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await? {
            events.push(event);
        }
        Ok(events)
    }
}

/// The text the chunk events of a chat completion stream add up to.
pub fn streamed_content(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
