//! Request counts, latencies and the gateway's own overhead by route. Routes
//! are a fixed set, so each handle is resolved once (on the route's first
//! request) and observing costs a few atomic operations.

use hyper::StatusCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use std::sync::OnceLock;
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
    /// Stays the last variant: it sizes the per-route series (`ROUTE_COUNT`).
    Other,
}

impl RouteLabel {
    /// How it is labelled; streamed answers are timed to their first byte.
    fn name(self) -> &'static str {
        match self {
            RouteLabel::Run => "/run",
            RouteLabel::Inference => "/inference",
            RouteLabel::Status => "/status",
            RouteLabel::Cancel => "/cancel",
            RouteLabel::Catalog => "/catalog",
            RouteLabel::Estimate => "/catalog/estimate",
            RouteLabel::Health => "/health",
            RouteLabel::Metrics => "/metrics",
            RouteLabel::Account => "/account",
            RouteLabel::Admin => "/admin",
            RouteLabel::ChatCompletions => "/v1/chat/completions",
            RouteLabel::Embeddings => "/v1/embeddings",
            RouteLabel::Models => "/v1/models",
            RouteLabel::Mcp => "/mcp",
            RouteLabel::Other => "other",
        }
    }
}

/// One entry per route: `Other` is the last variant, so every discriminant indexes it.
const ROUTE_COUNT: usize = RouteLabel::Other as usize + 1;
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per route: request counts by status class, latency, and overhead. Each
/// route's series are registered with its first request, so a scrape carries
/// only the routes in use.
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    overhead: HistogramVec,
    routes: [RouteSeries; ROUTE_COUNT],
}

#[derive(Default)]
struct RouteSeries {
    /// By status class, 1xx to 5xx.
    requests: [OnceLock<IntCounter>; 5],
    latency: OnceLock<Histogram>,
    overhead: OnceLock<Histogram>,
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
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "gpubridge_overhead_seconds",
                "Time in the gateway minus time waiting on backends (queued for a slot or \
                 running), by route; streamed answers to their first byte",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01,
                0.025, 0.1, 1.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        Ok(HttpMetrics {
            requests,
            latency,
            overhead,
            routes: std::array::from_fn(|_| RouteSeries::default()),
        })
    }

    /// One answered request: `elapsed` in all, `on_backends` of it waiting on backends.
    pub fn observe(
        &self,
        route: RouteLabel,
        status: StatusCode,
        elapsed: Duration,
        on_backends: Duration,
    ) {
        let (series, name) = (&self.routes[route as usize], route.name());
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        series.requests[class]
            .get_or_init(|| self.requests.with_label_values(&[name, CLASSES[class]]))
            .inc();
        series
            .latency
            .get_or_init(|| self.latency.with_label_values(&[name]))
            .observe(elapsed.as_secs_f64());
        series
            .overhead
            .get_or_init(|| self.overhead.with_label_values(&[name]))
            .observe(elapsed.saturating_sub(on_backends).as_secs_f64());
    }
}
