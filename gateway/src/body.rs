//! Reading request bodies and headers defensively: size limits before and while
//! reading, JSON errors with line and column, header values checked.

use crate::error::ApiError;
use crate::requests::Body;
use bytes::Bytes;
use gpubridge_protocol::Priority;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};
use serde_json::Value;
use std::time::Duration;

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body is larger than {max} bytes"),
        "Send large media by URL (image_url, audio_url, file_url) instead of inline.",
    )
}

/// What a route's body may be, put in each request's extensions by the
/// dispatcher: at most `max` bytes, all of them within `timeout`.
#[derive(Clone, Copy, Debug)]
pub struct BodyRules {
    pub max: usize,
    pub timeout: Duration,
}

impl BodyRules {
    /// For a request that reached no route's rules: small and quick.
    const FALLBACK: BodyRules = BodyRules {
        max: 64 * 1024,
        timeout: Duration::from_secs(10),
    };
}

/// Reads the whole body within its route's [`BodyRules`].
pub async fn read_limited(body: Incoming, parts: &Parts) -> Result<Bytes, ApiError> {
    let rules = parts
        .extensions
        .get::<BodyRules>()
        .copied()
        .unwrap_or(BodyRules::FALLBACK);
    match tokio::time::timeout(rules.timeout, read_within(body, &parts.headers, rules.max)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "The request body did not arrive within {} s",
                rules.timeout.as_secs_f64()
            ),
            "Send the whole body promptly; large media go by URL (image_url, audio_url, file_url).",
        )),
    }
}

async fn read_within(body: Incoming, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
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

/// Reads and parses a request body of type `T` within its route's rules.
pub async fn read<T: Body>(request: hyper::Request<Incoming>) -> Result<T, ApiError> {
    let (parts, incoming) = request.into_parts();
    let bytes = read_limited(incoming, &parts).await?;
    parse(&bytes)
}

/// Parses a body of type `T`; every failure names what is wrong and where.
pub fn parse<T: Body>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "Request body is empty",
            "Send a JSON object, with Content-Type: application/json.",
        ));
    }
    // Most bodies are fine: parsed once, without tracking where each field
    // sits (that costs an allocation per key). A body that fails is parsed
    // again, tracked, to say where.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| body_error(bytes, e, T::HINT))?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

fn malformed(error: serde_json::Error) -> ApiError {
    ApiError::bad_request(
        format!("Malformed JSON: {error}"),
        "Check the body is valid JSON (quotes, commas, braces).",
    )
}

fn body_error(
    bytes: &[u8],
    error: serde_path_to_error::Error<serde_json::Error>,
    hint: &str,
) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if !matches!(inner.classify(), serde_json::error::Category::Data) {
        return malformed(inner);
    }
    if path == "." {
        if let Ok(other) = serde_json::from_slice::<Value>(bytes).map(|v| kind(&v)) {
            if other != "an object" {
                return ApiError::bad_request(
                    format!("Request body must be a JSON object, not {other}"),
                    "Wrap the request in {...}.",
                );
            }
        }
        // Missing and unknown fields: serde names them in its message.
        let message = inner.to_string();
        let field = message.split('`').nth(1).unwrap_or_default().to_string();
        let error = format!("Invalid request body: {}", strip_position(&message));
        return ApiError::bad_request(error, hint).with_field(&field);
    }
    let error = format!("Invalid {path}: {}", strip_position(&inner.to_string()));
    ApiError::bad_request(error, hint).with_field(&path)
}

/// serde_json's " at line 1 column 42" says little in a one-line body.
fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
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

/// The longest `Prefer: wait=N` honoured, in seconds; more is cut to it.
pub const MAX_PREFER_WAIT: u64 = 60;

/// `Prefer: wait=N` (RFC 7240): how many seconds to hold the answer for the
/// job to finish, at most [`MAX_PREFER_WAIT`]. Other preferences are ignored,
/// as the RFC asks; a `wait` that is not a number of seconds is refused.
pub fn prefer_wait(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "Invalid Prefer header: wait must be a whole number of seconds",
            format!("Use Prefer: wait=N with N from 0 to {MAX_PREFER_WAIT}."),
        )
    };
    let mut wait = None;
    for value in headers.get_all("prefer") {
        let text = value.to_str().map_err(|_| bad())?;
        for preference in text.split(',') {
            let token = preference.split(';').next().unwrap_or_default().trim();
            let Some((name, seconds)) = token.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("wait") {
                let seconds: u64 = seconds
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .map_err(|_| bad())?;
                wait = Some(seconds.min(MAX_PREFER_WAIT));
            }
        }
    }
    Ok(wait)
}

/// `Idempotency-Key`: 1–255 visible ASCII characters when present.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let what = "Invalid Idempotency-Key header";
    let text = value.to_str().map_err(|_| bad_idempotency_key(what))?;
    checked_idempotency_key(text, what).map(Some)
}

/// An idempotency key from anywhere (a header, a tool argument): 1–255 visible
/// ASCII characters; `what` names where it came from in the refusal.
pub fn checked_idempotency_key(text: &str, what: &str) -> Result<String, ApiError> {
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad_idempotency_key(what));
    }
    Ok(text.to_string())
}

fn bad_idempotency_key(what: &str) -> ApiError {
    ApiError::bad_request(
        what,
        "Use 1 to 255 visible ASCII characters, unique per request you want deduplicated.",
    )
}

/// A text query parameter, if present.
pub fn query_text(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
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
    fn prefer_wait_is_read_capped_and_checked() {
        let wait = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append("prefer", HeaderValue::from_str(v).unwrap());
            }
            prefer_wait(&headers)
        };
        assert_eq!(wait(&[]).unwrap(), None);
        assert_eq!(wait(&["wait=5"]).unwrap(), Some(5));
        assert_eq!(wait(&["respond-async, wait=7"]).unwrap(), Some(7));
        assert_eq!(wait(&["handling=lenient", "Wait = 9"]).unwrap(), Some(9));
        assert_eq!(wait(&["wait=600"]).unwrap(), Some(MAX_PREFER_WAIT));
        assert_eq!(wait(&["return=minimal"]).unwrap(), None);
        assert!(wait(&["wait=soon"]).is_err());
        assert!(wait(&["wait=-1"]).is_err());
    }

    #[test]
    fn json_errors_are_specific() {
        type Object = serde_json::Map<String, Value>;
        assert!(parse::<Object>(b"  ").unwrap_err().error.contains("empty"));
        assert!(parse::<Object>(b"[1]")
            .unwrap_err()
            .error
            .contains("an array"));
        let e = parse::<Object>(b"{\"a\":").unwrap_err();
        assert!(e.error.starts_with("Malformed JSON"), "{}", e.error);
        assert!(parse::<Object>(b"{} {}")
            .unwrap_err()
            .error
            .starts_with("Malformed JSON"));
        assert_eq!(parse::<Object>(b"{\"a\":1}").unwrap()["a"], 1);
    }

    #[test]
    fn typed_bodies_name_the_field() {
        use crate::requests::RunBody;
        let wrong = parse::<RunBody>(br#"{"service": 42, "input": {}}"#).unwrap_err();
        assert_eq!(wrong.field(), Some("service"));
        assert!(
            wrong.error.contains("service") && wrong.error.contains("expected a string"),
            "{}",
            wrong.error
        );
        let missing = parse::<RunBody>(br#"{"service": "echo"}"#).unwrap_err();
        assert_eq!(missing.field(), Some("input"));
        let unknown =
            parse::<RunBody>(br#"{"service": "echo", "input": {}, "inputs": {}}"#).unwrap_err();
        assert_eq!(unknown.field(), Some("inputs"));
        let nested = parse::<RunBody>(br#"{"service": "echo", "input": "hi"}"#).unwrap_err();
        assert_eq!(nested.field(), Some("input"));
        let ok = parse::<RunBody>(br#"{"service": "echo", "input": {"a": 1}}"#).unwrap();
        assert_eq!((ok.service.as_str(), ok.webhook_url), ("echo", None));
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
