//! The pooled HTTP(S) client used to call hosted providers.

use crate::executor::AttemptError;
use bytes::Bytes;
use gpubridge_protocol::media::{error_chain, https_connector};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

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

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_body: usize,
}

impl HttpClient {
    pub fn new(max_body: usize) -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let https = https_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        HttpClient { client, max_body }
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
    ) -> Result<Response<Incoming>, AttemptError> {
        self.client
            .request(request)
            .await
            .map_err(|e| AttemptError::Connect(error_chain(&e)))
    }

    /// Reads a whole body, up to the limit.
    pub async fn collect(
        &self,
        response: Response<Incoming>,
    ) -> Result<HttpResponse, AttemptError> {
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, self.max_body)
            .collect()
            .await
            .map_err(|e| AttemptError::BadResponse(format!("reading response body: {e}")))?
            .to_bytes();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
