//! Request counts and latencies by route. Routes are a fixed set, so every
//! handle is resolved at start and observing costs a few atomic operations.

use hyper::StatusCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteLabel {
    Run,
    Inference,
    Status,
    Cancel,
    Catalog,
    Estimate,
    Health,
    Metrics,
    Account,
    Admin,
    ChatCompletions,
    Embeddings,
    Models,
    Mcp,
    Other,
}

/// Streamed answers are timed to their first byte.
const ROUTES: [(RouteLabel, &str); 15] = [
    (RouteLabel::Run, "/run"),
    (RouteLabel::Inference, "/inference"),
    (RouteLabel::Status, "/status"),
    (RouteLabel::Cancel, "/cancel"),
    (RouteLabel::Catalog, "/catalog"),
    (RouteLabel::Estimate, "/catalog/estimate"),
    (RouteLabel::Health, "/health"),
    (RouteLabel::Metrics, "/metrics"),
    (RouteLabel::Account, "/account"),
    (RouteLabel::Admin, "/admin"),
    (RouteLabel::ChatCompletions, "/v1/chat/completions"),
    (RouteLabel::Embeddings, "/v1/embeddings"),
    (RouteLabel::Models, "/v1/models"),
    (RouteLabel::Mcp, "/mcp"),
    (RouteLabel::Other, "other"),
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct HttpMetrics {
    /// `[route][status class]`
    requests: Vec<[IntCounter; 5]>,
    latency: Vec<Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "gpubridge_http_requests_total",
                "HTTP requests by route and status class",
            ),
            &["route", "class"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gpubridge_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(HttpMetrics {
            requests: ROUTES
                .iter()
                .map(|(_, name)| CLASSES.map(|class| requests.with_label_values(&[*name, class])))
                .collect(),
            latency: ROUTES
                .iter()
                .map(|(_, name)| latency.with_label_values(&[*name]))
                .collect(),
        })
    }

    pub fn observe(&self, route: RouteLabel, status: StatusCode, elapsed: Duration) {
        let index = route as usize;
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.requests[index][class].inc();
        self.latency[index].observe(elapsed.as_secs_f64());
    }
}
