//! Reading request bodies and headers defensively: size limits before and while
//! reading, JSON errors with line and column, header values checked.

use crate::error::ApiError;
use bytes::Bytes;
use gpubridge_protocol::Priority;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body is larger than {max} bytes"),
        "Send large media by URL (image_url, audio_url, file_url) instead of inline.",
    )
}

pub async fn read_limited(
    body: Incoming,
    headers: &HeaderMap,
    max: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Err(e) => Err(ApiError::bad_request(
            format!("Could not read the request body: {e}"),
            "Send a complete JSON body.",
        )),
    }
}

/// Reads a request whose body must be one JSON object, within `max` bytes.
pub async fn json_request(
    request: hyper::Request<Incoming>,
    max: usize,
) -> Result<Map<String, Value>, ApiError> {
    let (parts, incoming) = request.into_parts();
    let bytes = read_limited(incoming, &parts.headers, max).await?;
    json_object(&bytes)
}

/// Parses a body that must be one JSON object.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "Request body is empty",
            "Send a JSON object, with Content-Type: application/json.",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad_request(
            format!("Request body must be a JSON object, not {}", kind(&other)),
            "Wrap the request in {...}.",
        )),
        Err(e) => Err(ApiError::bad_request(
            format!("Malformed JSON: {e}"),
            "Check the body is valid JSON (quotes, commas, braces).",
        )),
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `X-Priority`: absent means fast.
pub fn priority(headers: &HeaderMap) -> Result<Priority, ApiError> {
    let Some(value) = headers.get("x-priority") else {
        return Ok(Priority::Fast);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "Invalid X-Priority header",
                "Use X-Priority: fast or X-Priority: cheap.",
            )
        })
}

/// `Idempotency-Key`: 1–255 visible ASCII characters when present.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "Invalid Idempotency-Key header",
            "Use 1 to 255 visible ASCII characters, unique per request you want deduplicated.",
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(text.to_string()))
}

/// A whole-number query parameter: `default` when absent, at most `max`.
pub fn query_number(
    query: &str,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some((_, value)) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name)
    else {
        return Ok(default);
    };
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("{name} must be a whole number from 0 to {max}, not {value:?}"),
                format!("Example: ?{name}={default}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn json_errors_are_specific() {
        assert!(json_object(b"  ").unwrap_err().error.contains("empty"));
        assert!(json_object(b"[1]").unwrap_err().error.contains("an array"));
        let e = json_object(b"{\"a\":").unwrap_err();
        assert!(e.error.starts_with("Malformed JSON"), "{}", e.error);
        assert_eq!(json_object(b"{\"a\":1}").unwrap()["a"], 1);
    }

    #[test]
    fn headers_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(priority(&headers).unwrap(), Priority::Fast);
        headers.insert("x-priority", HeaderValue::from_static("cheap"));
        assert_eq!(priority(&headers).unwrap(), Priority::Cheap);
        headers.insert("x-priority", HeaderValue::from_static("urgent"));
        assert_eq!(
            priority(&headers).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        headers.insert("idempotency-key", HeaderValue::from_static("req_001"));
        assert_eq!(
            idempotency_key(&headers).unwrap().as_deref(),
            Some("req_001")
        );
        headers.insert("idempotency-key", HeaderValue::from_static("has space"));
        assert!(idempotency_key(&headers).is_err());
    }

    #[test]
    fn query_numbers_are_bounded() {
        assert_eq!(query_number("", "limit", 50, 200).unwrap(), 50);
        assert_eq!(query_number("limit=7&offset=2", "offset", 0, 9).unwrap(), 2);
        assert!(query_number("limit=201", "limit", 50, 200).is_err());
        assert!(query_number("limit=-1", "limit", 50, 200).is_err());
        assert!(query_number("limit=abc", "limit", 50, 200).is_err());
    }
}
