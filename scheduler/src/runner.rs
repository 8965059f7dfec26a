//! Runs one job: pick a backend by priority, wait for a slot, call it, fail over
//! to the next candidate on error, until success, no candidate, or the deadline.
//! Then persist the terminal state (with billing's writes) and wake waiters.

use crate::adapters::{self, AttemptError, Call};
use crate::job::{now_ms, Attempt, JobRecord};
use crate::nodes::NodeJob;
use crate::provider::Provider;
use crate::router::{self, Tried};
use crate::scheduler::{Inner, LiveJob};
use crate::store::Batch;
use gpubridge_protocol::node::GpuTier;
use gpubridge_protocol::JobStatus;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Registers a persisted, unfinished job as live and starts running it.
/// The caller has already counted it in `live_count`.
pub(crate) fn spawn(inner: Arc<Inner>, record: JobRecord, input: Value) {
    let id = record.id.clone();
    let live = Arc::new(LiveJob {
        record: Mutex::new(record),
        input,
        done: watch::channel(false).0,
    });
    inner.live.insert(id, live.clone());
    inner.metrics.pending.inc();
    tokio::spawn(run(inner, live));
}

struct Success {
    output: Value,
    backend: String,
    execution_us: u64,
}

async fn run(inner: Arc<Inner>, live: Arc<LiveJob>) {
    let outcome = attempt_all(&inner, &live).await;
    finish(&inner, &live, outcome);
}

async fn attempt_all(inner: &Inner, live: &LiveJob) -> Result<Success, String> {
    let (job_id, service, model, priority, deadline_ms) = {
        let r = live.record.lock();
        (
            r.id.clone(),
            r.service.clone(),
            r.model.clone(),
            r.priority,
            r.deadline_ms,
        )
    };
    let default_ms = inner
        .catalog
        .service(&service)
        .map_or(1000.0, |s| s.default_seconds * 1000.0);
    let routes = inner
        .backends
        .routes(&service, model.as_deref())
        .unwrap_or_default();
    let mut tried: Tried = if model.is_none() {
        let asked = live.input.get("model").and_then(Value::as_str);
        router::exclusions(routes, asked).unwrap_or_default()
    } else {
        Tried::default()
    };
    let mut reasons: Vec<String> = Vec::new();
    loop {
        let now = now_ms();
        if now >= deadline_ms {
            reasons.push("deadline passed".into());
            return Err(summary(&service, &reasons));
        }
        let Some(index) = router::pick(routes, priority, tried, default_ms) else {
            if reasons.is_empty() {
                reasons.push("no live backend".into());
            }
            return Err(summary(&service, &reasons));
        };
        tried.insert(index);
        let route = &routes[index];
        let backend = &route.backend;
        let Some(admission) = backend.breaker.try_admit() else {
            reasons.push(format!("{}: circuit open", backend.id));
            continue;
        };
        let Some(ticket) = backend.enter_queue() else {
            backend.breaker.abandon(admission);
            reasons.push(format!("{}: queue full", backend.id));
            continue;
        };
        let until_deadline = Duration::from_millis(deadline_ms.saturating_sub(now));
        let queued_at = Instant::now();
        let Ok(slot) = tokio::time::timeout(until_deadline, backend.start(ticket)).await else {
            backend.breaker.abandon(admission);
            reasons.push(format!("{}: deadline passed while queued", backend.id));
            return Err(summary(&service, &reasons));
        };
        mark_running(inner, live);
        let budget =
            until_deadline
                .saturating_sub(queued_at.elapsed())
                .min(Duration::from_secs_f64(
                    backend.limits.request_timeout_seconds,
                ));
        let started = Instant::now();
        let started_ms = now_ms();
        let call = Call {
            input: &live.input,
            binding: &route.binding,
            deadline: started + budget,
        };
        let result = if backend.provider == Provider::Node {
            let job = NodeJob {
                tier: GpuTier::from_name(&backend.model).unwrap_or(GpuTier::Other),
                job_id: &job_id,
                service: &service,
                // Services without a model list may still name one for agents to match.
                model: model
                    .as_deref()
                    .or_else(|| live.input.get("model").and_then(Value::as_str)),
                input: &live.input,
                deadline_unix_ms: deadline_ms,
                default_ms,
            };
            tokio::time::timeout(budget, inner.nodes.run(&job))
                .await
                .unwrap_or(Err(AttemptError::Timeout))
                .map(|done| {
                    live.record.lock().attempts.extend(done.earlier);
                    (done.output, format!("{}@{}", backend.id, done.node_id))
                })
        } else {
            match inner.clients.get(&backend.provider) {
                Some(client) => tokio::time::timeout(budget, adapters::invoke(client, &call))
                    .await
                    .unwrap_or(Err(AttemptError::Timeout))
                    .map(|output| (output, backend.id.clone())),
                None => Err(AttemptError::Connect("provider has no client".into())),
            }
        };
        drop(slot);
        let elapsed = started.elapsed();
        let metrics = inner.metrics.backend(&backend.id);
        let mut attempt = Attempt {
            backend: backend.id.clone(),
            started_ms,
            duration_ms: elapsed.as_millis() as u64,
            error: None,
        };
        match result {
            Ok((output, served_by)) => {
                backend.breaker.record_success(admission);
                backend
                    .latency_ms
                    .observe(elapsed.as_secs_f64() * 1000.0, inner.cfg.ewma_alpha);
                if let Some(m) = metrics {
                    m.success_seconds.observe(elapsed.as_secs_f64());
                }
                attempt.backend.clone_from(&served_by);
                live.record.lock().attempts.push(attempt);
                return Ok(Success {
                    output,
                    backend: served_by,
                    execution_us: elapsed.as_micros() as u64,
                });
            }
            Err(error) => {
                if error.counts_against_backend() {
                    backend.breaker.record_failure(admission);
                } else if matches!(error, AttemptError::Rejected { .. }) {
                    // It answered coherently: healthy, whatever it thought of the input.
                    backend.breaker.record_success(admission);
                } else {
                    backend.breaker.abandon(admission);
                }
                if let Some(m) = metrics {
                    m.failure_seconds.observe(elapsed.as_secs_f64());
                }
                let reason = format!("{}: {error}", backend.id);
                tracing::warn!(backend = %backend.id, service = %service, error = %error, "attempt failed");
                attempt.error = Some(error.to_string());
                live.record.lock().attempts.push(attempt);
                reasons.push(reason);
                if error.is_final() {
                    return Err(summary(&service, &reasons));
                }
                inner.metrics.failovers.inc();
            }
        }
    }
}

fn summary(service: &str, reasons: &[String]) -> String {
    format!(
        "{service} failed on every candidate backend: {}",
        reasons.join("; ")
    )
}

fn mark_running(inner: &Inner, live: &LiveJob) {
    let mut record = live.record.lock();
    if record.status == JobStatus::Pending {
        record.status = JobStatus::Running;
        record.started_ms.get_or_insert_with(now_ms);
        inner.metrics.pending.dec();
        inner.metrics.running.inc();
    }
}

fn finish(inner: &Inner, live: &LiveJob, outcome: Result<Success, String>) {
    let record = {
        let mut record = live.record.lock();
        match record.status {
            JobStatus::Running => inner.metrics.running.dec(),
            _ => inner.metrics.pending.dec(),
        }
        record.finished_ms = Some(now_ms());
        match outcome {
            Ok(success) => {
                record.status = JobStatus::Completed;
                record.output = Some(success.output.to_string());
                record.backend = Some(success.backend);
                record.execution_us = Some(success.execution_us);
            }
            Err(error) => {
                record.status = JobStatus::Failed;
                record.error = Some(error);
            }
        }
        record.clone()
    };
    let mut record = record;
    persist_terminal(inner, &mut record);
    live.record.lock().billing = record.billing.clone();
    if let Some(seconds) = record.execution_seconds() {
        if let Some(ewma) = inner.service_seconds.get(&record.service) {
            ewma.observe(seconds, inner.cfg.ewma_alpha);
        }
    }
    live.done.send_replace(true);
    inner.live.remove(&record.id);
    if inner.live_count.fetch_sub(1, Ordering::AcqRel) == 1 {
        inner.idle.notify_waiters();
    }
}

/// Writes a terminal record with whatever billing adds, in one batch.
pub(crate) fn persist_terminal(inner: &Inner, record: &mut JobRecord) {
    let mut batch = Batch::default();
    inner.hooks.on_terminal(record, &mut batch);
    match inner.store.update_job(record, batch) {
        Ok(()) => inner.hooks.after_persist(record),
        // Still unfinished on disk, so the job runs again after a restart.
        Err(e) => {
            tracing::error!(job_id = %record.id, error = %e, "could not persist finished job")
        }
    }
    if let Some(m) = inner.metrics.service(&record.service) {
        match record.status {
            JobStatus::Completed => m.completed.inc(),
            _ => m.failed.inc(),
        }
    }
    tracing::debug!(job_id = %record.id, service = %record.service, status = record.status.as_str(), "job finished");
}
