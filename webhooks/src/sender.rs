//! One delivery attempt over HTTP(S): the address checked after DNS resolution
//! at every attempt (private and loopback refused unless allowed), redirects
//! never followed, a short timeout, the receiver's body never read.

use crate::delivery::Attempted;
use bytes::Bytes;
use gpubridge_protocol::media::{
    error_chain, guarded_connector, is_private_refusal, refuses_literal, GuardedResolver,
};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, USER_AGENT};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// What goes with the body besides the signature.
pub struct Envelope<'a> {
    pub signature: &'a str,
    /// `job.completed`, `job.failed`, `job.cancelled`.
    pub event: &'a str,
    pub job_id: &'a str,
    pub attempt: u32,
}

#[derive(Clone)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    allow_private: bool,
    timeout: Duration,
}

impl Sender {
    pub fn new(allow_private: bool, timeout: Duration) -> Sender {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(guarded_connector(allow_private));
        Sender {
            client,
            allow_private,
            timeout,
        }
    }

    pub async fn post(&self, url: &str, body: Bytes, envelope: &Envelope<'_>) -> Attempted {
        let failed = |status: Option<u16>, error: String| Attempted::Failed { status, error };
        let parsed = match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => parsed,
            _ => return failed(None, "not an http(s) URL".into()),
        };
        match refuses_literal(&parsed, self.allow_private) {
            None => return failed(None, "the URL has no host".into()),
            Some(true) => return failed(None, PRIVATE.into()),
            Some(false) => {}
        }
        let request = match self.request(parsed.as_str(), body, envelope) {
            Ok(request) => request,
            Err(e) => return failed(None, format!("cannot build the request: {e}")),
        };
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Err(_) => return failed(None, format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) if is_private_refusal(&e) => return failed(None, PRIVATE.into()),
            Ok(Err(e)) => return failed(None, format!("could not connect: {}", error_chain(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        match status.as_u16() {
            200..=299 => Attempted::Delivered(status.as_u16()),
            410 => Attempted::Gone,
            300..=399 => {
                let to = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nowhere");
                let to: String = to.chars().take(200).collect();
                failed(
                    Some(status.as_u16()),
                    format!("HTTP {status}: redirects are not followed (to {to})"),
                )
            }
            code => failed(Some(code), format!("HTTP {status}")),
        }
    }

    fn request(
        &self,
        url: &str,
        body: Bytes,
        envelope: &Envelope<'_>,
    ) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        Request::post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static("GPU-Bridge-Webhooks/1"),
            )
            .header(crate::signature::SIGNATURE_HEADER, envelope.signature)
            .header("x-gpubridge-event", envelope.event)
            .header("x-gpubridge-job-id", envelope.job_id)
            .header("x-gpubridge-attempt", envelope.attempt.to_string())
            .body(Full::new(body))
    }
}

const PRIVATE: &str = "refused: the address is private or loopback (after DNS resolution)";
