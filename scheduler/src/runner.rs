//! Runs one job: pick a backend by priority, admit the attempt through its
//! breaker and queue, execute it, record it; on failure the next candidate,
//! until success, no candidate, or the deadline. Then persist the terminal
//! state with billing's writes, and wake whoever waits. A job whose client
//! leaves or whose owner cancels it stops wherever it is: queued, or running
//! (the attempt's future is dropped, which aborts its HTTP request or stops its
//! agent's job stream).

use crate::acceptance::Acceptance;
use crate::backend::{Backend, InFlight, Route};
use crate::breaker::Admission;
use crate::clock::BackendClock;
use crate::deferred::Unwritten;
use crate::driver::JobRun;
use crate::executor::{AttemptError, Call, Executed};
use crate::job::{json_text, now_ms, Attempt, JobRecord, Progress, Routing, Stopped};
use crate::live::LiveJob;
use crate::router::{self, Tried};
use crate::scheduler::Inner;
use crate::stream::StreamTap;
use crate::terminal;
use gpubridge_protocol::{JobId, JobStatus, Priority};
use gpubridge_store::Durability;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a job came to run.
pub(crate) enum Start {
    /// Its first write was durable before it started (or it was resumed).
    Written,
    /// Before anything was written (`deferred.rs`).
    Unwritten(Unwritten),
    /// While its first write is on its way (`acceptance.rs`).
    Accepting(Arc<Acceptance>),
}

/// Registers a counted job as live; its whole run, for a task of its own or a
/// [`crate::Driver`]. `stream` carries its output to a client as it is made,
/// and ends (is dropped) once the job is persisted.
pub(crate) fn job(
    inner: Arc<Inner>,
    record: JobRecord,
    input: Value,
    stream: Option<StreamTap>,
    clock: Option<BackendClock>,
    start: Start,
) -> (Arc<LiveJob>, JobRun) {
    let (unwritten, acceptance) = match start {
        Start::Written => (None, None),
        Start::Unwritten(unwritten) => (Some(unwritten), None),
        Start::Accepting(acceptance) => (None, Some(acceptance)),
    };
    let live = inner.live.insert(record, clock, unwritten);
    inner.metrics.pending.inc();
    let run = Box::pin({
        let live = live.clone();
        async move {
            let outcome = attempt_all(&inner, &live, &input, stream.as_ref()).await;
            if let Some(acceptance) = acceptance {
                if !acceptance.durable().await {
                    return terminal::abandoned(&inner, &live);
                }
            }
            // Boxed, as is each attempt's execution: a job waiting in a queue then
            // holds only what waiting needs (BENCHMARKS.md, queue scale).
            Box::pin(finish(&inner, &live, outcome, stream.as_ref())).await;
            drop(stream);
        }
    });
    (live, run)
}

/// What every attempt of one job shares.
struct Plan<'a> {
    id: JobId,
    service: String,
    model: Option<String>,
    priority: Priority,
    deadline_ms: u64,
    routes: &'a [Route],
    /// Routes it must not use (another model was asked for).
    excluded: Tried,
    default_ms: f64,
    input: &'a Value,
    stream: Option<&'a StreamTap>,
}

impl<'a> Plan<'a> {
    fn of(
        inner: &'a Inner,
        live: &LiveJob,
        input: &'a Value,
        stream: Option<&'a StreamTap>,
    ) -> Plan<'a> {
        let r = live.record.lock();
        let routes = inner
            .backends
            .routes(&r.service, r.model.as_deref())
            .unwrap_or_default();
        let excluded = match &r.model {
            Some(_) => Tried::default(),
            None => router::exclusions(routes, asked_model(input)).unwrap_or_default(),
        };
        Plan {
            id: r.id.clone(),
            service: r.service.clone(),
            model: r.model.clone(),
            priority: r.priority,
            deadline_ms: r.deadline_ms,
            routes,
            excluded,
            default_ms: inner
                .catalog
                .service(&r.service)
                .map_or(1000.0, |s| s.default_seconds * 1000.0),
            input,
            stream,
        }
    }

    /// The model for backends that choose workers by it: the resolved one, or
    /// the one a service without a model list was asked for.
    fn model(&self) -> Option<&str> {
        self.model.as_deref().or_else(|| asked_model(self.input))
    }
}

fn asked_model(input: &Value) -> Option<&str> {
    input.get("model").and_then(Value::as_str)
}

struct Success {
    output: Value,
    backend: String,
    execution_us: u64,
}

/// Why a job failed, and whether it was stopped for its client or owner.
struct Failure {
    reason: String,
    /// It was stopped: how long the stopped attempt ran, and what it delivered.
    stopped: Option<(u64, Stopped)>,
    /// Its owner cancelled it.
    cancelled: bool,
}

/// How one attempt ended, for the failover loop.
enum Outcome {
    Done(Success),
    /// Not attempted (circuit open, queue full): try the next.
    Skipped(String),
    /// Attempted and failed; `last` when no other backend would do better.
    Failed {
        reason: String,
        last: bool,
    },
    /// The job's deadline passed.
    Expired(String),
    /// The client left while this attempt ran for `execution_us`.
    Stopped {
        execution_us: u64,
    },
}

async fn attempt_all(
    inner: &Inner,
    live: &LiveJob,
    input: &Value,
    stream: Option<&StreamTap>,
) -> Result<Success, Failure> {
    let plan = Plan::of(inner, live, input, stream);
    let mut tried = plan.excluded;
    let mut reasons: Vec<String> = Vec::new();
    let failed = |reasons: &[String]| Failure {
        reason: summary(&plan.service, reasons),
        stopped: None,
        cancelled: false,
    };
    loop {
        if now_ms() >= plan.deadline_ms {
            reasons.push("deadline passed".into());
            return Err(failed(&reasons));
        }
        if live.is_cancelled() || stream.is_some_and(StreamTap::is_closed) {
            return Err(stopped(live, stream, 0));
        }
        let Some(index) = router::pick(plan.routes, plan.priority, tried, plan.default_ms) else {
            if reasons.is_empty() {
                reasons.push("no live backend".into());
            }
            return Err(failed(&reasons));
        };
        tried.insert(index);
        match attempt(inner, live, &plan, &plan.routes[index]).await {
            Outcome::Done(success) => return Ok(success),
            Outcome::Skipped(reason) => reasons.push(reason),
            Outcome::Failed { reason, last } => {
                reasons.push(reason);
                if last {
                    return Err(failed(&reasons));
                }
                inner.metrics.failovers.inc();
            }
            Outcome::Expired(reason) => {
                reasons.push(reason);
                return Err(failed(&reasons));
            }
            Outcome::Stopped { execution_us } => return Err(stopped(live, stream, execution_us)),
        }
    }
}

/// The job's end when its owner cancelled it or its client left.
fn stopped(live: &LiveJob, stream: Option<&StreamTap>, execution_us: u64) -> Failure {
    let chunks_delivered = stream.map_or(0, StreamTap::chunks);
    let cancelled = live.is_cancelled();
    let reason = match cancelled {
        true => format!(
            "cancelled by its owner after {:.3} s of execution",
            execution_us as f64 / 1e6
        ),
        false => format!("stopped: the client disconnected after {chunks_delivered} chunks"),
    };
    Failure {
        cancelled,
        reason: reason.clone(),
        stopped: Some((
            execution_us,
            Stopped {
                reason,
                chunks_delivered,
            },
        )),
    }
}

fn summary(service: &str, reasons: &[String]) -> String {
    format!(
        "{service} failed on every candidate backend: {}",
        reasons.join("; ")
    )
}

/// One attempt on one route: admit, execute, record.
async fn attempt(inner: &Inner, live: &LiveJob, plan: &Plan<'_>, route: &Route) -> Outcome {
    let backend = &route.backend;
    // Queued for a slot and running both count as waiting on the backend.
    let on_backend = live.clock.as_ref().map(BackendClock::span);
    let (admission, slot, budget) = match admit(backend, plan.deadline_ms, live).await {
        Ok(admitted) => admitted,
        Err(outcome) => return outcome,
    };
    mark_running(inner, live, backend, plan.default_ms);
    let started = Instant::now();
    let progress = |permille: u16, message: String| {
        let progress = Progress {
            permille: permille.min(1000),
            message,
            at_ms: now_ms(),
        };
        live.update(|record| record.progress = Some(progress));
    };
    let call = Call {
        job_id: &plan.id,
        service: &plan.service,
        model: plan.model(),
        input: plan.input,
        binding: &route.binding,
        deadline: started + budget,
        job_deadline_unix_ms: plan.deadline_ms,
        default_ms: plan.default_ms,
        stream: plan.stream.filter(|s| s.delivers()),
        progress: &progress,
    };
    let started_ms = now_ms();
    let result = Box::pin(execute(backend, &call, budget, plan.stream, live)).await;
    drop(slot);
    drop(on_backend);
    let attempt = Attempt {
        backend: backend.label.clone(),
        started_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        error: None,
    };
    record(
        inner,
        live,
        backend,
        admission,
        started.elapsed(),
        attempt,
        result,
    )
}

/// Runs the attempt within its budget. It stops (its future dropped) when its
/// owner cancels the job or its watching client leaves, and one that fails
/// after output went out to the client cannot fail over.
async fn execute(
    backend: &Backend,
    call: &Call<'_>,
    budget: Duration,
    client: Option<&StreamTap>,
    live: &LiveJob,
) -> Result<Executed, AttemptError> {
    let work = tokio::time::timeout(budget, backend.executor.execute(call));
    let client_left = async {
        match client {
            Some(client) => client.closed().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = work => result.unwrap_or(Err(AttemptError::Timeout)),
        () = client_left => Err(AttemptError::Cancelled),
        () = live.cancelled() => Err(AttemptError::Cancelled),
    };
    match (result, client) {
        (Err(error), Some(client)) if client.started() && !error.is_final() => {
            Err(AttemptError::MidStream(Box::new(error)))
        }
        (other, _) => other,
    }
}

/// Lets the attempt through the backend's breaker and queue, waits for a slot
/// within the job's deadline (or until the job is cancelled), and says how long
/// the attempt may take.
async fn admit<'b>(
    backend: &'b Backend,
    deadline_ms: u64,
    live: &LiveJob,
) -> Result<(Admission, InFlight<'b>, Duration), Outcome> {
    let Some(admission) = backend.breaker.try_admit() else {
        return Err(Outcome::Skipped(format!("{}: circuit open", backend.label)));
    };
    let Some(ticket) = backend.enter_queue() else {
        backend.breaker.abandon(admission);
        return Err(Outcome::Skipped(format!("{}: queue full", backend.label)));
    };
    let until_deadline = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    let queued_at = Instant::now();
    let waited = tokio::select! {
        waited = tokio::time::timeout(until_deadline, backend.start(ticket)) => waited,
        () = live.cancelled() => {
            backend.breaker.abandon(admission);
            return Err(Outcome::Stopped { execution_us: 0 });
        }
    };
    let Ok(slot) = waited else {
        backend.breaker.abandon(admission);
        return Err(Outcome::Expired(format!(
            "{}: deadline passed while queued",
            backend.label
        )));
    };
    let budget = until_deadline
        .saturating_sub(queued_at.elapsed())
        .min(Duration::from_secs_f64(
            backend.limits.request_timeout_seconds,
        ));
    Ok((admission, slot, budget))
}

/// Feeds the attempt's result to the backend's breaker, latency and metrics,
/// and to the job's history.
fn record(
    inner: &Inner,
    live: &LiveJob,
    backend: &Backend,
    admission: Admission,
    elapsed: Duration,
    mut attempt: Attempt,
    result: Result<Executed, AttemptError>,
) -> Outcome {
    let metrics = inner.metrics.backend(&backend.id);
    match result {
        Ok(executed) => {
            backend.breaker.record_success(admission);
            let ms = elapsed.as_secs_f64() * 1000.0;
            backend.latency_ms.observe(ms, inner.cfg.ewma_alpha);
            if let Some(m) = metrics {
                m.observe(true, elapsed);
            }
            if let Some(worker) = &executed.worker {
                attempt.backend = format!("{}@{worker}", backend.label);
            }
            let served_by = attempt.backend.clone();
            live.update(|record| {
                record.attempts.extend(executed.earlier);
                record.attempts.push(attempt);
            });
            Outcome::Done(Success {
                output: executed.output,
                backend: served_by,
                execution_us: elapsed.as_micros() as u64,
            })
        }
        Err(AttemptError::Cancelled) => {
            backend.breaker.abandon(admission);
            attempt.error = Some(match live.is_cancelled() {
                true => "stopped: cancelled by its owner".into(),
                false => AttemptError::Cancelled.to_string(),
            });
            live.update(|record| record.attempts.push(attempt));
            Outcome::Stopped {
                execution_us: elapsed.as_micros() as u64,
            }
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
                m.observe(false, elapsed);
            }
            tracing::warn!(backend = %backend.label, error = %error, "attempt failed");
            attempt.error = Some(error.to_string());
            live.update(|record| record.attempts.push(attempt));
            Outcome::Failed {
                reason: format!("{}: {error}", backend.label),
                last: error.is_final(),
            }
        }
    }
}

/// The job runs on `backend` now: shown with what it is expected to cost there.
fn mark_running(inner: &Inner, live: &LiveJob, backend: &Backend, default_ms: f64) {
    let routing = Routing {
        backend: backend.label.clone(),
        cost_per_second: backend.cost_per_second,
        expected_ms: backend.expected_duration_ms(default_ms),
        expected_cost: backend.expected_cost(default_ms),
    };
    live.update(|record| {
        record.routing = Some(routing);
        if record.status == JobStatus::Pending {
            record.status = JobStatus::Running;
            record.started_ms.get_or_insert_with(now_ms);
            inner.metrics.pending.dec();
            inner.metrics.running.inc();
        }
    });
}

/// Makes the job terminal: persisted (with its settlement) first, then shown, so
/// whoever reads `completed` or `failed` also sees what it was charged; a job
/// only its waiting submitter knows of is shown first ([`Durability::Logged`]).
async fn finish(
    inner: &Arc<Inner>,
    live: &Arc<LiveJob>,
    outcome: Result<Success, Failure>,
    stream: Option<&StreamTap>,
) {
    let durability = live
        .unwritten
        .as_ref()
        .map_or(Durability::Synced, |unwritten| unwritten.ending());
    match durability {
        // Only its submitter knows the job, and the answer carries all it
        // holds and nothing paid: shown first, written just after. It stays
        // in memory until then, so `/status` finds it meanwhile. Being shown
        // first, its record is ended in place, not copied.
        Durability::Logged => {
            let writes = live.update(|record| {
                end(inner, record, outcome, stream);
                terminal::writes(inner, record, durability)
            });
            let record = live.record.lock().clone();
            let handed = terminal::shown(inner, live, &record);
            terminal::write_shown(inner, live, record, writes, handed).await;
        }
        Durability::Synced => {
            let mut record = live.snapshot();
            end(inner, &mut record, outcome, stream);
            let writes = terminal::writes(inner, &mut record, durability);
            let durable = terminal::commit(inner, &record, writes).await;
            let handed = terminal::show(inner, live, Arc::new(record));
            terminal::ended(inner, live, durable, handed);
        }
    }
}

/// The job's record as its outcome leaves it.
fn end(
    inner: &Inner,
    record: &mut JobRecord,
    outcome: Result<Success, Failure>,
    stream: Option<&StreamTap>,
) {
    terminal::leaves_queue_or_run(inner, record);
    record.finished_ms = Some(now_ms());
    match outcome {
        Ok(success) => {
            record.status = JobStatus::Completed;
            record.output = Some(json_text(&success.output));
            record.backend = Some(success.backend);
            record.execution_us = Some(success.execution_us);
        }
        Err(failure) => {
            record.status = match failure.cancelled {
                true => JobStatus::Cancelled,
                false => JobStatus::Failed,
            };
            record.error = Some(failure.reason);
            if let Some((execution_us, stopped)) = failure.stopped {
                record.execution_us = Some(execution_us);
                if stopped.chunks_delivered > 0 {
                    record.output = stream.map(|s| json_text(&s.output()));
                }
                record.stopped = Some(stopped);
            }
        }
    }
}
