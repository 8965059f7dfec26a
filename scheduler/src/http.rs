//! The pooled HTTP(S) client used to call hosted providers.

use crate::executor::AttemptError;
use crate::lanes::{Lanes, MAX_LANES};
use crate::upstream::{HttpVersion, Upstream};
use bytes::Bytes;
use gpubridge_protocol::media::error_chain;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

use crate::timeouts::{BodyError, Phase, TimedBody, Timeouts};

fn unreadable(error: &dyn std::error::Error) -> AttemptError {
    AttemptError::BadResponse(format!("reading response body: {error}"))
}

/// Did the connector give up connecting (its own timeout)?
fn timed_out(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as text for error messages, cut short: upstream errors can be huge.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut cut: String = text.chars().take(300).collect();
        if cut.len() < text.len() {
            cut.push('…');
        }
        cut
    }
}

type Pool = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One provider's pooled client, under that provider's time limits.
#[derive(Clone)]
pub struct HttpClient {
    lanes: Arc<Lanes<Pool>>,
    max_body: usize,
    timeouts: Timeouts,
}

/// A pool of keep-alive connections. An idle HTTP/2 connection is pinged, so
/// one the network dropped is found before a request is sent on it.
fn pool(upstream: &Upstream) -> Pool {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(upstream.version == HttpVersion::Http2)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .http2_keep_alive_while_idle(true)
        .build(upstream.connector.clone())
}

impl HttpClient {
    pub fn new(upstream: &Upstream, max_body: usize, timeouts: Timeouts) -> HttpClient {
        // HTTP/1.1 already opens a connection per request in flight.
        let lanes = match upstream.version {
            HttpVersion::Http1 => 1,
            HttpVersion::Auto | HttpVersion::Http2 => MAX_LANES,
        };
        HttpClient {
            lanes: Arc::new(Lanes::new(lanes, upstream.streams, |_| pool(upstream))),
            max_body,
            timeouts,
        }
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<HttpResponse, AttemptError> {
        let response = self.open(request).await?;
        self.collect(response).await
    }

    /// Sends a request and returns as soon as the headers are in: the body is
    /// the caller's to read as it arrives.
    pub async fn open(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<TimedBody>, AttemptError> {
        let limits = &self.timeouts;
        let (client, slot) = self.lanes.pick();
        let response = match tokio::time::timeout(limits.headers, client.request(request)).await {
            Err(_) => return Err(limits.expired(Phase::Headers).into()),
            Ok(Err(e)) if timed_out(&e) => return Err(limits.expired(Phase::Connect).into()),
            Ok(Err(e)) => return Err(AttemptError::Connect(error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        Ok(response.map(|body| limits.body(body, slot)))
    }

    /// Reads a whole body, up to the limit.
    pub async fn collect(
        &self,
        response: Response<TimedBody>,
    ) -> Result<HttpResponse, AttemptError> {
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| match e.downcast::<BodyError>().map(|e| *e) {
                Ok(BodyError::Stalled(stalled)) => AttemptError::Stalled(stalled),
                Ok(other) => unreadable(&other),
                Err(other) => unreadable(&*other),
            })?
            .to_bytes();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
