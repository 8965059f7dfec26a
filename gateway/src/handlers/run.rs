//! `POST /run`: the universal contract. Validates, prices, admits (auth and
//! payment seam), persists, then answers 202 with where to poll.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::REPLAYED;
use crate::views::status_url;
use gpubridge_scheduler::accounts::IdempotencyClaim;
use gpubridge_scheduler::{is_private, JobRequest, Origin};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let (parts, incoming) = request.into_parts();
    let priority = body::priority(&parts.headers)?;
    let idempotency_key = body::idempotency_key(&parts.headers)?;
    let caller = app.access.identify(&parts.headers)?;
    let bytes = body::read_limited(incoming, &parts.headers, app.http.max_body_bytes).await?;
    let mut fields = body::json_object(&bytes)?;
    let idempotency = idempotency_key
        .map(|key| IdempotencyClaim::new(key, "/run", &Value::Object(fields.clone())));

    let service = match fields.remove("service") {
        Some(Value::String(service)) => service,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("service must be a string, not {}", body::kind(&other)),
                "Use a service key from GET /catalog, e.g. \"llm-4090\".",
            ))
        }
        None => {
            let mut error = ApiError::bad_request(
                "service is required",
                "Use GET /catalog to see all available services.",
            );
            error.available_services = Some(app.scheduler.catalog().service_keys());
            return Err(error);
        }
    };
    let input = match fields.remove("input") {
        Some(input @ Value::Object(_)) => input,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("input must be an object, not {}", body::kind(&other)),
                "Send input as a JSON object, e.g. {\"prompt\": \"...\"}.",
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "input is required",
                "GET /catalog shows each service's input schema.",
            ))
        }
    };
    let webhook_url = match fields.remove("webhook_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(checked_webhook(
            &url,
            app.scheduler.config().allow_private_urls,
        )?),
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("webhook_url must be a string, not {}", body::kind(&other)),
                "Use an https:// URL that accepts POST.",
            ))
        }
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(ApiError::bad_request(
            format!("Unknown field {unknown:?} in the request body"),
            "A /run body has service, input and an optional webhook_url.",
        ));
    }

    let prepared = app
        .scheduler
        .prepare(JobRequest {
            service,
            input,
            priority,
            origin: Origin::Run,
            webhook_url,
        })
        .map_err(|e| app.submit_error(e))?;
    let admission = app
        .access
        .accept(&app.scheduler, &caller, prepared, idempotency.as_ref())?;
    let (record, replayed) = app.admitted(admission)?;
    let url = status_url(&record.id);
    let mut response = json(
        StatusCode::ACCEPTED,
        &json!({
            "job_id": record.id,
            "service": record.service,
            "status": record.status.as_str(),
            "status_url": url,
            "estimated_cost_usd": record.estimated_cost.as_dollars(),
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(LOCATION, value);
    }
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A webhook must be an absolute http(s) URL, and not a private address unless allowed.
fn checked_webhook(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(
            format!("Invalid webhook_url: {why}"),
            "Use a public https:// URL that accepts POST.",
        )
    };
    if raw.len() > 2048 {
        return Err(bad("longer than 2048 characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    let private = match url.host() {
        Some(url::Host::Ipv4(ip)) => is_private(ip.into()),
        Some(url::Host::Ipv6(ip)) => is_private(ip.into()),
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost") || domain.ends_with(".localhost")
        }
        None => return Err(bad("no host")),
    };
    if private && !allow_private {
        return Err(bad("private and loopback addresses are not allowed"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_must_be_public_http() {
        assert!(checked_webhook("https://example.com/cb", false).is_ok());
        assert!(checked_webhook("ftp://example.com/cb", false).is_err());
        assert!(checked_webhook("http://127.0.0.1/cb", false).is_err());
        assert!(checked_webhook("http://localhost:8/cb", false).is_err());
        assert!(checked_webhook("http://[::1]/cb", false).is_err());
        assert!(checked_webhook("http://127.0.0.1/cb", true).is_ok());
        assert!(checked_webhook("not a url", true).is_err());
    }
}
