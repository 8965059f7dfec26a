//! One module per endpoint family.

pub mod account;
pub mod admin;
pub mod catalog;
pub mod inference;
pub mod nodes;
pub mod ops;
pub mod run;
pub mod status;
pub mod topup_crypto;

use crate::app::{App, HttpResponse};
use crate::error::ApiError;
use crate::intake::Accepted;
use crate::x402::{answer_headers, X_PAYMENT_VERSION};
use hyper::header::{HeaderName, HeaderValue};

/// Marks an answer that repeats an earlier job for the same Idempotency-Key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The headers every answer about an accepted job carries: a replay's mark,
/// and on the x402 path its version and settlement.
fn accepted_headers(app: &App, x402: Option<u8>, accepted: &Accepted, response: &mut HttpResponse) {
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

/// A refusal on the x402 path says which x402 version it speaks.
fn x402_tagged(
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
