//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
//! with the status the contract's envelope would have had. The envelope's hint
//! is kept, beside the message, and x402's terms stay at the top level where
//! x402 clients look for them.

use crate::app::HttpResponse;
use crate::error::ApiError;
use crate::outgoing::Outgoing;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Serialize)]
struct Envelope<'a> {
    error: Detail<'a>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

#[derive(Serialize)]
pub(super) struct Detail<'a> {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'a str>,
    pub code: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub hint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a Value>,
}

/// OpenAI's error `type` and `code` for a status.
pub(super) fn kind_and_code(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        401 => ("invalid_request_error", "invalid_api_key"),
        402 => ("insufficient_quota", "payment_required"),
        403 => ("permission_error", "forbidden"),
        404 => ("invalid_request_error", "not_found"),
        409 => ("invalid_request_error", "conflict"),
        413 => ("invalid_request_error", "request_too_large"),
        422 => ("invalid_request_error", "invalid_value"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        502 => ("server_error", "backend_failed"),
        503 => ("server_error", "unavailable"),
        _ => ("server_error", "internal_error"),
    }
}

pub fn into_response(error: ApiError) -> HttpResponse {
    let (kind, code) = kind_and_code(error.status);
    let body = Envelope {
        error: Detail {
            message: error.error.clone(),
            kind,
            param: error.field().filter(|f| !f.is_empty()),
            code,
            hint: &error.hint,
            details: error.details.as_ref().filter(|d| d.get("field").is_none()),
        },
        extra: error.extra.as_ref(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"error":{"message":"internal error","type":"server_error"}}"#.to_vec()
    });
    let mut response = Response::new(Outgoing::whole(bytes));
    *response.status_mut() = error.status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = error.retry_after_seconds {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    for (name, value) in &error.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_shape_is_openais_with_the_same_status() {
        let error = ApiError::bad_request("Invalid messages: bad", "Send messages.")
            .with_field("messages")
            .retry_after(2);
        let response = into_response(error);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "Invalid messages: bad",
                "type": "invalid_request_error", "param": "messages",
                "code": "invalid_request", "hint": "Send messages."}})
        );
    }
}
