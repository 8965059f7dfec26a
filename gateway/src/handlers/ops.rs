//! `GET /health` and `GET /metrics` for operators.

use crate::app::{json, App, HttpResponse};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use prometheus::Encoder;
use serde_json::json;

pub fn health(app: &App) -> HttpResponse {
    let backends = app.scheduler.backends().all();
    let live = backends.iter().filter(|b| b.is_live()).count();
    let open = backends
        .iter()
        .filter(|b| b.is_live() && b.breaker.state() != gpubridge_scheduler::CircuitState::Closed)
        .count();
    json(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": app.started.elapsed().as_secs(),
            "live_jobs": app.scheduler.live_jobs(),
            "live_backends": live,
            "degraded_backends": open,
        }),
    )
}

pub fn metrics(app: &App) -> HttpResponse {
    app.scheduler.refresh_metrics();
    let encoder = prometheus::TextEncoder::new();
    let mut buffer = Vec::with_capacity(16 * 1024);
    if let Err(e) = encoder.encode(&app.registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "encoding metrics");
    }
    let mut response = Response::new(Full::new(Bytes::from(buffer)));
    if let Ok(value) = HeaderValue::from_str(encoder.format_type()) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
