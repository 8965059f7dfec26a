//! Scheduler metrics. Per-service handles are resolved once at start and
//! per-backend ones on first use, so the hot path only touches atomics, never
//! the label maps' locks, and a scrape carries series only for backends that
//! ran something (hundreds are configured; most never see a job).

use crate::backend::{BackendId, BackendSet};
use crate::catalog::Catalog;
use gpubridge_protocol::JobStatus;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// One backend's attempt-duration series, registered with the first attempt.
pub struct BackendMetrics {
    attempts: HistogramVec,
    label: String,
    success: OnceLock<Histogram>,
    failure: OnceLock<Histogram>,
}

impl BackendMetrics {
    pub fn observe(&self, succeeded: bool, elapsed: Duration) {
        let (cell, outcome) = match succeeded {
            true => (&self.success, "success"),
            false => (&self.failure, "failure"),
        };
        cell.get_or_init(|| {
            self.attempts
                .with_label_values(&[self.label.as_str(), outcome])
        })
        .observe(elapsed.as_secs_f64());
    }
}

pub struct ServiceMetrics {
    pub accepted: IntCounter,
    pub completed: IntCounter,
    pub failed: IntCounter,
    pub cancelled: IntCounter,
}

pub struct SchedulerMetrics {
    backends: HashMap<BackendId, BackendMetrics>,
    services: HashMap<String, ServiceMetrics>,
    pub pending: IntGauge,
    pub running: IntGauge,
    pub failovers: IntCounter,
    pub recovered: IntCounter,
    /// Finished jobs whose input and output retention removed.
    pub expired: IntCounter,
    circuit_state: IntGaugeVec,
    queue_depth: IntGaugeVec,
    in_flight: IntGaugeVec,
}

#[derive(Debug, thiserror::Error)]
#[error("registering metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl SchedulerMetrics {
    pub fn register(
        registry: &Registry,
        catalog: &Catalog,
        backends: &BackendSet,
    ) -> Result<Self, MetricsError> {
        let buckets = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            120.0, 300.0,
        ];
        let attempts = HistogramVec::new(
            HistogramOpts::new(
                "gpubridge_backend_attempt_seconds",
                "Duration of attempts on each backend, by outcome",
            )
            .buckets(buckets),
            &["backend", "outcome"],
        )?;
        let jobs = IntCounterVec::new(
            Opts::new(
                "gpubridge_jobs_total",
                "Jobs by service and status: accepted, completed, failed",
            ),
            &["service", "status"],
        )?;
        let live = IntGaugeVec::new(
            Opts::new("gpubridge_jobs_live", "Jobs not yet finished, by status"),
            &["status"],
        )?;
        let failovers = IntCounter::new(
            "gpubridge_failovers_total",
            "Attempts retried on another backend",
        )?;
        let recovered = IntCounter::new(
            "gpubridge_jobs_recovered_total",
            "Unfinished jobs resumed after a restart",
        )?;
        let expired = IntCounter::new(
            "gpubridge_jobs_expired_total",
            "Finished jobs whose input and output were removed after their retention",
        )?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "gpubridge_backend_circuit_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ),
            &["backend"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "gpubridge_backend_queue_depth",
                "Jobs waiting for a backend slot",
            ),
            &["backend"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "gpubridge_backend_in_flight",
                "Attempts running on a backend",
            ),
            &["backend"],
        )?;
        for collector in [
            Box::new(attempts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(jobs.clone()),
            Box::new(live.clone()),
            Box::new(failovers.clone()),
            Box::new(recovered.clone()),
            Box::new(expired.clone()),
            Box::new(circuit_state.clone()),
            Box::new(queue_depth.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(collector)?;
        }
        let backend_metrics = backends
            .all()
            .iter()
            .map(|b| {
                let metrics = BackendMetrics {
                    attempts: attempts.clone(),
                    label: b.label.clone(),
                    success: OnceLock::new(),
                    failure: OnceLock::new(),
                };
                (b.id.clone(), metrics)
            })
            .collect();
        let services = catalog
            .services()
            .iter()
            .map(|s| {
                let key = s.key.as_str();
                let metrics = ServiceMetrics {
                    accepted: jobs.with_label_values(&[key, "accepted"]),
                    completed: jobs.with_label_values(&[key, JobStatus::Completed.as_str()]),
                    failed: jobs.with_label_values(&[key, JobStatus::Failed.as_str()]),
                    cancelled: jobs.with_label_values(&[key, JobStatus::Cancelled.as_str()]),
                };
                (s.key.clone(), metrics)
            })
            .collect();
        Ok(SchedulerMetrics {
            backends: backend_metrics,
            services,
            pending: live.with_label_values(&["pending"]),
            running: live.with_label_values(&["running"]),
            failovers,
            recovered,
            expired,
            circuit_state,
            queue_depth,
            in_flight,
        })
    }

    pub fn backend(&self, id: &BackendId) -> Option<&BackendMetrics> {
        self.backends.get(id)
    }

    pub fn service(&self, key: &str) -> Option<&ServiceMetrics> {
        self.services.get(key)
    }

    /// Refreshes the gauges that are read off the backends; called at scrape time only.
    pub fn refresh(&self, backends: &BackendSet) {
        for backend in backends.all().iter().filter(|b| b.is_live()) {
            let id = [backend.label.as_str()];
            self.circuit_state
                .with_label_values(&id)
                .set(backend.breaker.state().gauge());
            self.queue_depth
                .with_label_values(&id)
                .set(backend.waiting() as i64);
            self.in_flight
                .with_label_values(&id)
                .set(backend.in_flight() as i64);
        }
    }
}
