//! `GET /health` and `GET /metrics` for operators.

use crate::app::{json, App, HttpResponse};
use crate::outgoing::Outgoing;
use gpubridge_scheduler::CircuitState;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use prometheus::Encoder;
use serde::Serialize;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    live_jobs: usize,
    live_backends: usize,
    degraded_backends: usize,
}

pub fn health(app: &App) -> HttpResponse {
    let backends = app.scheduler.backends().all();
    let live = backends.iter().filter(|b| b.is_live());
    json(
        StatusCode::OK,
        &Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: app.started.elapsed().as_secs(),
            live_jobs: app.scheduler.live_jobs(),
            live_backends: live.clone().count(),
            degraded_backends: live
                .filter(|b| b.breaker.state() != CircuitState::Closed)
                .count(),
        },
    )
}

pub fn metrics(app: &App) -> HttpResponse {
    app.scheduler.refresh_metrics();
    let encoder = prometheus::TextEncoder::new();
    let mut buffer = Vec::with_capacity(16 * 1024);
    if let Err(e) = encoder.encode(&app.registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "encoding metrics");
    }
    let mut response = Response::new(Outgoing::whole(buffer));
    if let Ok(value) = HeaderValue::from_str(encoder.format_type()) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
