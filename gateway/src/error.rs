//! The spec's error envelope: `error` always, `hint` to fix it, optional
//! `details` and `available_services`. Every failure a client can cause ends here.

use crate::outgoing::Outgoing;
use gpubridge_scheduler::{Scheduler, SubmitError};
use gpubridge_store::StoreError;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use std::ops::{Deref, DerefMut};

/// A refusal on its way to the client. Boxed so `Result<_, ApiError>` stays one
/// pointer wide on the hot path.
#[derive(Debug)]
pub struct ApiError(Box<ErrorBody>);

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    pub hint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_services: Option<Vec<String>>,
    /// Top-level fields a protocol adds beside the envelope (x402's
    /// `x402Version` and `accepts`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, Value>>,
    #[serde(skip)]
    pub retry_after_seconds: Option<u64>,
    /// Extra response headers (`WWW-Authenticate`, …).
    #[serde(skip)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Deref for ApiError {
    type Target = ErrorBody;
    fn deref(&self) -> &ErrorBody {
        &self.0
    }
}

impl DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorBody {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError(Box::new(ErrorBody {
            status,
            error: error.into(),
            hint: hint.into(),
            details: None,
            available_services: None,
            extra: None,
            retry_after_seconds: None,
            headers: Vec::new(),
        }))
    }

    /// The store failed; the request changed nothing and may be retried.
    pub fn storage_unavailable(hint: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Storage is unavailable",
            hint,
        )
        .retry_after(1)
    }

    /// A store failure: an unreadable record is a 500 (logged and counted where
    /// it was read); anything else is transient, a 503 to retry.
    pub fn from_store(error: &StoreError, hint: &str) -> ApiError {
        if error.is_undecodable() {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "A stored record could not be read",
                "This is a fault on our side and has been logged for the operator; retrying will not help.",
            );
        }
        tracing::error!(error = %error, "storage failure");
        ApiError::storage_unavailable(hint)
    }

    pub fn bad_request(error: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, hint)
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// Names the request field at fault, as `details.field`.
    pub fn with_field(self, field: &str) -> ApiError {
        self.with_details(serde_json::json!({ "field": field }))
    }

    /// The field named by [`ApiError::with_field`], if any.
    pub fn field(&self) -> Option<&str> {
        self.details.as_ref()?.get("field")?.as_str()
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    pub fn into_response(self) -> Response<Outgoing> {
        let body = serde_json::to_vec(&*self.0)
            .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
        let mut response = Response::new(Outgoing::whole(body));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.0.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }

    /// A scheduler refusal, with the scheduler's catalog and breaker settings.
    pub fn from_scheduler(scheduler: &Scheduler, error: SubmitError) -> ApiError {
        ApiError::from_submit(
            error,
            || scheduler.catalog().service_keys(),
            scheduler.config().breaker.open_seconds,
        )
    }

    /// Maps a scheduler refusal; `available_services` names what exists.
    pub fn from_submit(
        error: SubmitError,
        available_services: impl FnOnce() -> Vec<String>,
        breaker_open_seconds: f64,
    ) -> ApiError {
        let message = error.to_string();
        match error {
            SubmitError::UnknownService(_) => {
                let mut e = ApiError::bad_request(message, "Use GET /catalog to see all available services.");
                e.available_services = Some(available_services());
                e
            }
            SubmitError::InvalidInput { service, problems } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                message,
                format!("Fix the fields listed in details; GET /catalog shows the input schema of {service}."),
            )
            .with_details(serde_json::to_value(problems).unwrap_or_default()),
            SubmitError::UnknownModel { available, .. } => ApiError::bad_request(
                message,
                "Use one of the model ids in details, or GET /catalog for the live list.",
            )
            .with_details(Value::from(available)),
            SubmitError::NoLiveBackend { providers, .. } => {
                let names: Vec<String> = providers
                    .iter()
                    .filter_map(|p| p.key_env().map(|env| format!("{env} (or GPUBRIDGE_{}_BASE_URL for a compatible server)", p.name().to_uppercase())))
                    .collect();
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    message,
                    format!("The operator must configure one of: {}.", names.join(", ")),
                )
                .with_details(Value::from(providers.iter().map(|p| p.name()).collect::<Vec<_>>()))
            }
            SubmitError::Unavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                "Backends are failing or saturated; retry after the delay in Retry-After.",
            )
            .retry_after(breaker_open_seconds.ceil() as u64),
            SubmitError::Overloaded => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                "Too many unfinished jobs; retry shortly.",
            )
            .retry_after(1),
            SubmitError::QueuesFull { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                message,
                "Every backend for this service has a full queue; retry after the delay in Retry-After.",
            )
            .retry_after(1),
            SubmitError::OwnerBusy { limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                message,
                "Wait for some of your running jobs to finish (GET /account/jobs), or ask the operator for a higher limit.",
            )
            .with_details(serde_json::json!({ "limit": "concurrent jobs per account", "max_concurrent_jobs": limit }))
            .retry_after(1),
            SubmitError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                message,
                "Retry in a few seconds; the scheduler is restarting.",
            )
            .retry_after(5),
            SubmitError::Store(e) => {
                tracing::error!(error = %e, "storage failure while accepting a job");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Storage is unavailable; the job was not accepted",
                    "Nothing was queued or charged; retry shortly.",
                )
                .retry_after(5)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_error_and_hint_and_skips_empty_fields() {
        let e = ApiError::bad_request("Unknown service: foo", "Use GET /catalog.");
        let body = serde_json::to_value(&*e).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "Unknown service: foo", "hint": "Use GET /catalog."})
        );
        let response =
            ApiError::from_submit(SubmitError::Overloaded, Vec::new, 30.0).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }
}
