//! A fleet as an [`Executor`]: a job goes to the agent of its tier with a free
//! slot and the lowest expected time, moves to another agent when one is lost
//! or fails, and waits for a slot when all are busy (the runner bounds the wait
//! with the job's deadline).

use super::dispatch::{self, Failure};
use super::session::Session;
use super::{Fleet, Member, NodePool};
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
            let session = match pick(fleet, call.model, call.default_ms, &avoid) {
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
}

/// The fleet's best session with a free slot; `Busy` if some could serve but
/// none is free, `Nobody` if none could.
fn pick(fleet: &Fleet, model: Option<&str>, default_ms: f64, avoid: &[u64]) -> Pick {
    let now = now_ms();
    let members = fleet.members.read().list.clone();
    let mut best: Option<(f64, &Arc<Session>)> = None;
    let mut any = false;
    for Member { session, slots } in members.iter() {
        if avoid.contains(&session.id) || session.is_draining() || !slots.serves_model(model) {
            continue;
        }
        any = true;
        let Some(mut score) = session.score_on(slots, default_ms) else {
            continue;
        };
        // A benched session is a last resort, not excluded: it may be all there is.
        if session.is_benched(now) {
            score = score * 1000.0 + 1e9;
        }
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, session));
        }
    }
    match (best, any) {
        (Some((_, session)), _) => Pick::Session(session.clone()),
        (None, true) => Pick::Busy,
        (None, false) => Pick::Nobody,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::session::testing::session;
    use crate::nodes::NodesConfig;
    use gpubridge_protocol::node::ServiceSlots as Offered;

    fn offer(service: &str, slots: u32, models: &[&str]) -> Offered {
        Offered {
            service: service.into(),
            slots,
            models: models.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn picked(pool: &NodePool, model: Option<&str>, avoid: &[u64]) -> Option<String> {
        let fleet = &pool.fleets[&(GpuTier::L4, "echo".to_string())];
        match pick(fleet, model, 10.0, avoid) {
            Pick::Session(session) => Some(session.node_id.clone()),
            Pick::Busy => Some("busy".into()),
            Pick::Nobody => None,
        }
    }

    /// The fleet a pick reads follows joins, leaves and drains, and holds
    /// only its tier's sessions that serve its service.
    #[tokio::test]
    async fn a_pick_reads_its_fleet_as_joins_leaves_and_drains_left_it() {
        let registry = prometheus::Registry::new();
        let services = ["echo", "llm-4090"].into_iter();
        let pool = NodePool::new(NodesConfig::default(), services, 0.3, &registry).unwrap();
        assert_eq!(picked(&pool, None, &[]), None, "nobody yet");

        let fast = Arc::new(session(1, "fast", GpuTier::L4, vec![offer("echo", 1, &["m"])]).await);
        let slow = Arc::new(session(2, "slow", GpuTier::L4, vec![offer("echo", 2, &[])]).await);
        let other_tier = session(3, "4090", GpuTier::Rtx4090, vec![offer("echo", 9, &[])]).await;
        let other_service = session(4, "llm", GpuTier::L4, vec![offer("llm-4090", 9, &[])]).await;
        fast.latency_ms.observe(1.0, 1.0);
        slow.latency_ms.observe(50.0, 1.0);
        for joined in [fast.clone(), slow.clone()] {
            pool.admit(joined);
        }
        pool.admit(Arc::new(other_tier));
        pool.admit(Arc::new(other_service));
        assert_eq!(
            picked(&pool, None, &[]).as_deref(),
            Some("fast"),
            "lowest expected time"
        );
        assert_eq!(
            picked(&pool, Some("x"), &[]).as_deref(),
            Some("slow"),
            "fast lists models"
        );
        assert_eq!(
            picked(&pool, None, &[1]).as_deref(),
            Some("slow"),
            "avoided"
        );

        let released = tokio::sync::Notify::new();
        let _taken = fast.take_slot("echo", &released).unwrap();
        assert_eq!(
            picked(&pool, None, &[]).as_deref(),
            Some("slow"),
            "fast is full"
        );
        let _both = [
            slow.take_slot("echo", &released),
            slow.take_slot("echo", &released),
        ];
        assert_eq!(picked(&pool, None, &[]).as_deref(), Some("busy"));

        assert!(pool.drain("slow"));
        assert_eq!(
            picked(&pool, None, &[1]),
            None,
            "a draining agent takes nothing"
        );
        pool.remove(&fast);
        assert_eq!(picked(&pool, None, &[]), None, "left");
        assert_eq!(
            pool.fleets[&(GpuTier::L4, "echo".to_string())]
                .members
                .read()
                .list
                .len(),
            0
        );
    }

    /// Remakes may finish out of order (their scans run unlocked): one that
    /// began earlier never replaces a later one's list.
    #[tokio::test]
    async fn an_earlier_remake_never_replaces_a_later_one() {
        let registry = prometheus::Registry::new();
        let services = ["echo"].into_iter();
        let pool = NodePool::new(NodesConfig::default(), services, 0.3, &registry).unwrap();
        let fleet = &pool.fleets[&(GpuTier::L4, "echo".to_string())];
        let joined = Arc::new(session(1, "a", GpuTier::L4, vec![offer("echo", 1, &[])]).await);
        let member = || Member {
            session: joined.clone(),
            slots: joined.services["echo"].clone(),
        };
        assert!(fleet.install(5, Arc::from([member()])));
        assert!(!fleet.install(3, Arc::from([])), "began before 5");
        assert_eq!(fleet.members.read().list.len(), 1);
        assert!(fleet.install(6, Arc::from([])));
        assert_eq!(fleet.members.read().list.len(), 0);
    }
}
