//! x402's HTTP side: which requests are on the x402 path (no API key, x402 on),
//! what they pay with, the 402 a request without payment gets, payment
//! refusals in the spec's envelope, and x402's answer headers.

use crate::error::ApiError;
use gpubridge_billing::x402::{
    parse_payment, Offer, PaidBy, Payment, Refusal, X402Error, PAYMENT_SIGNATURE, X402, X_PAYMENT,
};
use gpubridge_scheduler::{PreparedJob, Scheduler};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, StatusCode, Uri};
use serde_json::{json, Value};

pub const X_PAYMENT_VERSION: HeaderName = HeaderName::from_static("x-payment-version");
pub const PAYMENT_REQUIRED: HeaderName = HeaderName::from_static("payment-required");
pub const PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("payment-response");
pub const X_PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("x-payment-response");

/// A request on the x402 path: what it pays with, and the URL it pays for.
#[derive(Clone, Debug)]
pub struct Payer {
    pub payment: Option<Payment>,
    pub resource: String,
}

impl Payer {
    /// Reads the payment headers; a malformed one is a 400 naming what is wrong.
    pub fn from_request(
        headers: &HeaderMap,
        uri: &Uri,
        http: &crate::config::HttpConfig,
    ) -> Result<Payer, ApiError> {
        let payment = parse_payment(
            headers.get(X_PAYMENT).map(HeaderValue::as_bytes),
            headers.get(PAYMENT_SIGNATURE).map(HeaderValue::as_bytes),
        )
        .map_err(|e| {
            ApiError::bad_request(
                e.to_string(),
                "X-Payment is base64 of {\"txHash\": \"0x…64 hex\", \"from\": \"0x…40 hex\"} (or an x402 exact payload); PAYMENT-SIGNATURE is an x402 v2 payload. Nothing was consumed.",
            )
            .with_details(json!({"header": e.header, "reason": e.reason}))
        })?;
        Ok(Payer {
            payment,
            resource: format!("{}{}", http.public_base(headers), uri.path()),
        })
    }
}

/// Whether a request carries a payment header at all.
pub fn has_payment(headers: &HeaderMap) -> bool {
    headers.contains_key(X_PAYMENT) || headers.contains_key(PAYMENT_SIGNATURE)
}

/// What this job costs over x402.
pub fn offer(x402: &X402, scheduler: &Scheduler, job: &PreparedJob, payer: &Payer) -> Offer {
    let about = scheduler
        .catalog()
        .service(&job.service)
        .map(|s| s.description.as_str())
        .unwrap_or_default();
    x402.offer(
        job.estimated_cost,
        payer.resource.clone(),
        format!("GPU-Bridge {}: {about}", job.service),
    )
}

/// A 402 carrying what to pay: the contract's v1 body beside the envelope, and
/// x402 v2's `PAYMENT-REQUIRED` header.
pub fn payment_required(x402: &X402, offer: &Offer, error: String, hint: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::PAYMENT_REQUIRED, error, hint);
    if let Ok(Value::Object(body)) = serde_json::to_value(x402.rules().required_v1(offer)) {
        e.extra = Some(body);
    }
    match HeaderValue::from_str(&x402.rules().required_v2_header(offer, &e.error)) {
        Ok(value) => e.with_header(PAYMENT_REQUIRED, value),
        Err(_) => e,
    }
}

/// The 402 for a request that sent no payment.
pub fn unpaid(x402: &X402, offer: &Offer) -> ApiError {
    payment_required(
        x402,
        offer,
        "Payment required".into(),
        "Send accepts[0].maxAmountRequired atomic units of accepts[0].asset on Base to accepts[0].payTo, then retry this request with X-Payment: base64({\"txHash\",\"from\"}) — or sign an x402 exact (EIP-3009) payment. Or use an API key: POST /account/register.",
    )
}

/// A payment refusal in the envelope; nothing was consumed unless it says so.
pub fn refused(x402: &X402, offer: &Offer, scheduler: &Scheduler, error: X402Error) -> ApiError {
    let text = error.to_string();
    match error {
        X402Error::Refused(refusal) => refusal_error(x402, offer, refusal),
        X402Error::Spent => ApiError::new(
            StatusCode::CONFLICT,
            "This payment has already paid for a job",
            "Each payment pays for one job; send a new payment for a new request. The job it paid for is readable with its job id.",
        ),
        X402Error::CannotSettle => payment_required(
            x402,
            offer,
            text,
            "Send the asset yourself and prove it: X-Payment: base64({\"txHash\",\"from\"}).",
        ),
        X402Error::Settlement(reason) => {
            tracing::error!(%reason, "settling an x402 authorization failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Settling the payment on chain failed",
                "Retry shortly with the same payment; it has not paid for anything yet.",
            )
            .retry_after(5)
        }
        X402Error::Store(e) => ApiError::from_store(&e, "Retry with the same payment; it has not paid for anything yet."),
        X402Error::Submit(e) => ApiError::from_scheduler(scheduler, e),
    }
}

fn refusal_error(x402: &X402, offer: &Offer, refusal: Refusal) -> ApiError {
    let text = refusal.to_string();
    let unused = "The payment has not been used.";
    match refusal {
        Refusal::Sanctioned(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            text,
            "Payments from addresses on the sanctions list are refused; no job was run.",
        ),
        Refusal::Chain(e) => {
            tracing::warn!(error = %e, "x402: the chain's RPC node failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The payment cannot be checked right now: the chain's RPC node is unreachable",
                format!("Retry shortly with the same payment. {unused}"),
            )
            .retry_after(5)
        }
        Refusal::Unconfirmed { has, needs } => payment_required(
            x402,
            offer,
            text,
            &format!("Retry with the same X-Payment once the transaction has {needs} confirmation(s). {unused}"),
        )
        .with_details(json!({"confirmations": has, "required_confirmations": needs}))
        .retry_after(2),
        Refusal::NotFound(_) => payment_required(
            x402,
            offer,
            text,
            &format!("Retry with the same X-Payment once the transaction is mined. {unused}"),
        )
        .retry_after(2),
        Refusal::TooOld { .. } | Refusal::Reverted(_) | Refusal::NoTransfer { .. } => {
            payment_required(x402, offer, text, "Send a new payment as accepts[0] describes, then retry with its proof.")
        }
        Refusal::Authorization(_) => payment_required(
            x402,
            offer,
            text,
            "Sign a new authorization as accepts[0] describes (EIP-712 domain from accepts[0].extra).",
        ),
    }
}

/// Marks an answer on the x402 path, adding the settlement header when an
/// authorization was settled.
pub fn answer_headers(headers: &mut HeaderMap, version: u8, x402: &X402, paid: Option<&PaidBy>) {
    headers.insert(X_PAYMENT_VERSION, HeaderValue::from(u16::from(version)));
    let Some(paid) = paid else {
        return;
    };
    let Some(settled) = paid.settled_version else {
        return;
    };
    let value = x402
        .rules()
        .settled_header(settled, paid.transaction, paid.payer);
    let name = match settled {
        1 => X_PAYMENT_RESPONSE,
        _ => PAYMENT_RESPONSE,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}
