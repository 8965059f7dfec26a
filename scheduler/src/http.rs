//! The pooled HTTP(S) client used to call hosted providers.

use crate::executor::AttemptError;
use bytes::Bytes;
use gpubridge_protocol::media::{error_chain, https_connector};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
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

/// One provider's pooled client, under that provider's time limits.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_body: usize,
    timeouts: Timeouts,
}

impl HttpClient {
    pub fn new(max_body: usize, timeouts: Timeouts) -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let https = https_connector(http, timeouts.connect);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        HttpClient {
            client,
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
        let response =
            match tokio::time::timeout(limits.headers, self.client.request(request)).await {
                Err(_) => return Err(limits.expired(Phase::Headers).into()),
                Ok(Err(e)) if timed_out(&e) => return Err(limits.expired(Phase::Connect).into()),
                Ok(Err(e)) => return Err(AttemptError::Connect(error_chain(&e))),
                Ok(Ok(response)) => response,
            };
        Ok(response.map(|body| limits.body(body)))
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
