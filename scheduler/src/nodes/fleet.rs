//! A fleet as an [`Executor`]: a job goes to the agent of its tier with a free
//! slot and the lowest expected time, moves to another agent when one is lost
//! or fails, and waits for a slot when all are busy (the runner bounds the wait
//! with the job's deadline).

use super::dispatch::{self, Failure};
use super::session::Session;
use super::NodePool;
use crate::executor::{AttemptError, BoxFuture, Call, Executed, Executor};
use crate::job::{now_ms, Attempt};
use crate::stream::StreamTap;
use gpubridge_protocol::node::{Assignment, GpuTier};
use std::sync::Arc;
use std::time::Instant;

pub(super) struct FleetExecutor {
    pub(super) pool: Arc<NodePool>,
    pub(super) tier: GpuTier,
}

impl Executor for FleetExecutor {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>> {
        Box::pin(self.run(call))
    }
}

enum Pick {
    Session(Arc<Session>),
    Busy,
    Nobody,
}

impl FleetExecutor {
    async fn run(&self, call: &Call<'_>) -> Result<Executed, AttemptError> {
        let pool = &self.pool;
        let Some(fleet) = pool.fleets.get(&(self.tier, call.service.to_string())) else {
            return Err(AttemptError::Connect("no such fleet".into()));
        };
        let assignment = Assignment {
            job_id: call.job_id.to_string(),
            service: call.service.to_string(),
            model: call.model.map(str::to_string),
            input_json: call.input.to_string(),
            deadline_unix_ms: call.job_deadline_unix_ms,
            stream: call.stream.is_some(),
        };
        let mut avoid: Vec<u64> = Vec::new();
        let mut earlier: Vec<Attempt> = Vec::new();
        loop {
            let released = fleet.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let session = match self.pick(call, &avoid) {
                Pick::Session(session) => session,
                Pick::Busy => {
                    released.await;
                    continue;
                }
                Pick::Nobody => return Err(nobody_left(call.service, &earlier)),
            };
            let Some(slot) = session.take_slot(call.service, &fleet.released) else {
                continue; // Taken since it was scored: pick again.
            };
            let started = Instant::now();
            let started_ms = now_ms();
            match dispatch::run_on(&session, slot, &assignment, &pool.cfg, call).await {
                Ok(output) => {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    session.latency_ms.observe(ms, pool.ewma_alpha);
                    session.record_success();
                    return Ok(Executed {
                        output,
                        worker: Some(session.node_id.clone()),
                        earlier,
                    });
                }
                Err(Failure::Retry(reason)) if call.stream.is_some_and(StreamTap::started) => {
                    // Part of the output reached the client: no other agent may take over.
                    session.record_failure(now_ms());
                    return Err(AttemptError::Failed(format!(
                        "{}: {reason}",
                        session.node_id
                    )));
                }
                Err(Failure::Retry(reason)) => {
                    session.record_failure(now_ms());
                    tracing::warn!(node = %session.node_id, job_id = %call.job_id, %reason, "job moves to another agent");
                    earlier.push(Attempt {
                        backend: format!(
                            "node:{}:{}@{}",
                            self.tier.name(),
                            call.service,
                            session.node_id
                        ),
                        started_ms,
                        duration_ms: started.elapsed().as_millis() as u64,
                        error: Some(reason),
                    });
                    avoid.push(session.id);
                }
                Err(Failure::Final(error)) => return Err(error),
            }
        }
    }

    /// The best session with a free slot; `Busy` if some could serve but none is
    /// free, `Nobody` if none could.
    fn pick(&self, call: &Call<'_>, avoid: &[u64]) -> Pick {
        let now = now_ms();
        let mut best: Option<(f64, Arc<Session>)> = None;
        let mut any = false;
        for entry in self.pool.sessions.iter() {
            let session = entry.value();
            if session.tier != self.tier
                || avoid.contains(&session.id)
                || !session.serves(call.service, call.model)
            {
                continue;
            }
            any = true;
            let Some(mut score) = session.score(call.service, call.default_ms) else {
                continue;
            };
            // A benched session is a last resort, not excluded: it may be all there is.
            if session.is_benched(now) {
                score = score * 1000.0 + 1e9;
            }
            if best.as_ref().is_none_or(|(s, _)| score < *s) {
                best = Some((score, session.clone()));
            }
        }
        match (best, any) {
            (Some((_, session)), _) => Pick::Session(session),
            (None, true) => Pick::Busy,
            (None, false) => Pick::Nobody,
        }
    }
}

fn nobody_left(service: &str, earlier: &[Attempt]) -> AttemptError {
    if earlier.is_empty() {
        return AttemptError::Failed(format!("no agent serves {service}"));
    }
    let reasons: Vec<String> = earlier
        .iter()
        .map(|a| format!("{}: {}", a.backend, a.error.as_deref().unwrap_or_default()))
        .collect();
    AttemptError::Failed(reasons.join("; "))
}
