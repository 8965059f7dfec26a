//! One module per endpoint family.

pub mod account;
pub mod admin;
pub mod cancel;
pub mod catalog;
pub mod inference;
pub mod nodes;
pub mod ops;
pub mod run;
pub mod status;
pub mod topup_card;
pub mod topup_crypto;

use crate::access::{Caller, Credentials};
use crate::app::{App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::intake::Accepted;
use crate::x402::{answer_headers, X_PAYMENT_VERSION};
use bytes::Bytes;
use gpubridge_protocol::Priority;
use gpubridge_scheduler::BackendClock;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Request;

/// Marks an answer that repeats an earlier job for the same Idempotency-Key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The job behind an answer that does not otherwise show it (`/v1` routes).
pub const JOB_ID: HeaderName = HeaderName::from_static("x-gpubridge-job-id");

/// What every door that runs jobs reads before its body's meaning.
pub struct Arrival {
    pub priority: Priority,
    pub idempotency_key: Option<String>,
    /// Who pays: an account's key, or (without one) an x402 payment.
    pub caller: Caller,
    pub bytes: Bytes,
    /// Set by `App::handle` on every request: time on backends, for the overhead metric.
    pub clock: Option<BackendClock>,
}

/// Reads the headers every job-running door shares, then the body within its limit.
pub async fn arrive(app: &App, request: Request<Incoming>) -> Result<Arrival, ApiError> {
    let (parts, incoming) = request.into_parts();
    let priority = body::priority(&parts.headers)?;
    let idempotency_key = body::idempotency_key(&parts.headers)?;
    let credentials = Credentials::from_parts(&parts.headers, &parts.extensions);
    let caller = app
        .access
        .identify_payer(credentials, &parts.uri, &app.http)?;
    let bytes = body::read_limited(incoming, &parts).await?;
    Ok(Arrival {
        priority,
        idempotency_key,
        caller,
        bytes,
        clock: parts.extensions.get::<BackendClock>().cloned(),
    })
}

/// The headers every answer about an accepted job carries: a replay's mark,
/// and on the x402 path its version and settlement.
pub fn accepted_headers(
    app: &App,
    x402: Option<u8>,
    accepted: &Accepted,
    response: &mut HttpResponse,
) {
    if accepted.replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    if let (Some(version), Some(door)) = (x402, app.access.x402()) {
        answer_headers(
            response.headers_mut(),
            version,
            door,
            accepted.paid.as_ref(),
        );
    }
}

/// A top-up (card or USDC) for a package that does not exist.
pub fn unknown_package(package: &str) -> ApiError {
    ApiError::bad_request(
        format!("Unknown package {package:?}"),
        "Send {\"package\": \"credits_25\"}; packages are credits_10, credits_25 (+5%), credits_50 (+10%) and credits_100 (+15%).",
    )
    .with_details(serde_json::json!({"field": "package", "packages": gpubridge_billing::package_keys()}))
}

/// A refusal on the x402 path says which x402 version it speaks.
pub fn x402_tagged(
    x402: Option<u8>,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    match (x402, result) {
        (Some(version), Err(e)) => {
            Err(e.with_header(X_PAYMENT_VERSION, HeaderValue::from(u16::from(version))))
        }
        (_, result) => result,
    }
}
