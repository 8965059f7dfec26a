//! POSTing JSON and reading the JSON answer, for the services billing calls —
//! the chain's RPC node, x402 facilitators and Stripe: a pooled hyper client with
//! rustls (ring, the TLS stack the rest of GPU-Bridge uses), a deadline, and a
//! cap on what the other side may send back.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("reading the answer: {0}")]
    Read(String),
}

#[derive(Clone)]
pub struct JsonPoster {
    client: Client<Https, Full<Bytes>>,
    timeout: Duration,
    max_answer: usize,
}

impl JsonPoster {
    pub fn new(timeout: Duration, max_answer: usize) -> JsonPoster {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let https =
            gpubridge_protocol::media::https_connector(http, std::time::Duration::from_secs(10));
        JsonPoster {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            max_answer,
        }
    }

    /// POSTs `body` (JSON) to `url`; a 2xx answer's body, else an error.
    pub async fn post(&self, url: &Uri, body: Bytes) -> Result<Bytes, PostError> {
        let request = Request::post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| PostError::Connect(e.to_string()))?;
        self.send(request).await
    }

    /// Sends any request; a 2xx answer's body, else an error.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Bytes, PostError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| PostError::Connect(gpubridge_protocol::media::error_chain(&e)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), self.max_answer)
                .collect()
                .await
                .map_err(|e| PostError::Read(e.to_string()))?
                .to_bytes();
            match status.is_success() {
                true => Ok(bytes),
                false => Err(PostError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                }),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(PostError::Timeout(self.timeout)))
    }
}
