//! Operators' own GPU hosts. Each `gpubridge-agent` holds one QUIC connection to
//! the scheduler; its services join a fleet per GPU tier and service, and each
//! fleet is one backend to the router, priced by tier. Within a fleet a job goes
//! to the agent with a free slot and the lowest expected time; an agent that
//! dies or fails mid-job is avoided and the job moves to another agent.

mod config;
mod dispatch;
mod identity;
mod metrics;
mod server;
mod session;

pub use config::{NodesConfig, TierCosts};
pub use identity::{Identity, IdentityError, IssuedToken, TokenRefusal, SERVER_NAME};
pub use server::{endpoint, serve, EndpointError};
pub use session::Session;

use crate::adapters::AttemptError;
use crate::backend::{Backend, BackendSet};
use crate::job::{now_ms, Attempt};
use crate::provider::Provider;
use dashmap::DashMap;
use gpubridge_protocol::node::{Assignment, GpuTier};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A tier's agents for one service, as the router sees them.
struct Fleet {
    backend: Arc<Backend>,
    /// Woken when a slot of this fleet frees or an agent joins.
    released: tokio::sync::Notify,
}

pub struct NodePool {
    pub cfg: NodesConfig,
    /// Sessions by node id: one per node, a reconnect replaces the old one.
    sessions: DashMap<String, Arc<Session>>,
    fleets: HashMap<(GpuTier, String), Fleet>,
    next_session: AtomicU64,
    ewma_alpha: f64,
    metrics: metrics::NodeMetrics,
}

/// A job done by an agent.
pub struct NodeSuccess {
    pub output: Value,
    pub node_id: String,
    /// Agents tried before, that failed or were lost, for the job's history.
    pub earlier: Vec<Attempt>,
}

/// What the pool knows of a job to place.
pub struct NodeJob<'a> {
    pub tier: GpuTier,
    pub job_id: &'a str,
    pub service: &'a str,
    pub model: Option<&'a str>,
    pub input: &'a Value,
    pub deadline_unix_ms: u64,
    pub default_ms: f64,
}

impl NodePool {
    pub fn new(
        cfg: NodesConfig,
        backends: &BackendSet,
        ewma_alpha: f64,
        registry: &prometheus::Registry,
    ) -> Result<NodePool, prometheus::Error> {
        let fleets = backends
            .all()
            .iter()
            .filter(|b| b.provider == Provider::Node)
            .filter_map(|b| {
                let (tier, service) = fleet_key(&b.id)?;
                Some((
                    (tier, service),
                    Fleet {
                        backend: b.clone(),
                        released: tokio::sync::Notify::new(),
                    },
                ))
            })
            .collect();
        Ok(NodePool {
            cfg,
            sessions: DashMap::new(),
            fleets,
            next_session: AtomicU64::new(1),
            ewma_alpha,
            metrics: metrics::NodeMetrics::register(registry)?,
        })
    }

    /// Refreshes the node gauges; scrape time only.
    pub fn refresh_metrics(&self) {
        self.metrics.refresh(&self.sessions(), now_ms());
    }

    /// Is `service` one the catalog knows (so agents may offer it)?
    pub fn knows(&self, service: &str) -> bool {
        self.fleets
            .contains_key(&(GpuTier::Other, service.to_string()))
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<_> = self.sessions.iter().map(|s| s.value().clone()).collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        all
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a session; returns the one it replaces (same node id), if any.
    pub(crate) fn admit(&self, session: Arc<Session>) -> Option<Arc<Session>> {
        let old = self
            .sessions
            .insert(session.node_id.clone(), session.clone());
        self.refresh();
        old
    }

    /// Removes a session unless a newer one of its node already took its place.
    pub(crate) fn remove(&self, session: &Session) {
        self.sessions
            .remove_if(&session.node_id, |_, current| current.id == session.id);
        self.refresh();
    }

    /// Marks a node draining: no new jobs; `true` if it is connected.
    pub fn drain(&self, node_id: &str) -> bool {
        let Some(session) = self.sessions.get(node_id).map(|s| s.value().clone()) else {
            return false;
        };
        session.draining.store(true, Ordering::Release);
        session.drain_requested.notify_one();
        self.refresh();
        true
    }

    /// Recomputes each fleet's liveness and capacity from its sessions, and wakes
    /// jobs waiting for a slot: the agent they wait on may have left, or a new one
    /// may serve them.
    pub(crate) fn refresh(&self) {
        let sessions = self.sessions();
        for ((tier, service), fleet) in &self.fleets {
            let slots: u32 = sessions
                .iter()
                .filter(|s| s.tier == *tier && s.serves(service, None))
                .filter_map(|s| s.services.get(service).map(|slots| slots.slots))
                .sum();
            fleet.backend.set_live(slots > 0);
            fleet.backend.set_capacity(slots);
            fleet.released.notify_waiters();
        }
    }

    /// Runs a job on the fleet of its tier, moving to another agent when one is
    /// lost or fails, waiting for a free slot when all are busy. The caller bounds
    /// the wait with the job's deadline.
    pub(crate) async fn run(&self, job: &NodeJob<'_>) -> Result<NodeSuccess, AttemptError> {
        let Some(fleet) = self.fleets.get(&(job.tier, job.service.to_string())) else {
            return Err(AttemptError::Connect("no such fleet".into()));
        };
        let assignment = Assignment {
            job_id: job.job_id.to_string(),
            service: job.service.to_string(),
            model: job.model.map(str::to_string),
            input_json: job.input.to_string(),
            deadline_unix_ms: job.deadline_unix_ms,
        };
        let mut avoid: Vec<u64> = Vec::new();
        let mut earlier: Vec<Attempt> = Vec::new();
        loop {
            let released = fleet.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.pick(job, &avoid) {
                Pick::Session(session) => {
                    let Some(slot) = session.take_slot(job.service, &fleet.released) else {
                        continue; // Taken since it was scored: pick again.
                    };
                    let started = std::time::Instant::now();
                    let started_ms = now_ms();
                    match dispatch::run_on(&session, slot, &assignment, &self.cfg).await {
                        Ok(output) => {
                            session
                                .latency_ms
                                .observe(started.elapsed().as_secs_f64() * 1000.0, self.ewma_alpha);
                            session.record_success();
                            return Ok(NodeSuccess {
                                output,
                                node_id: session.node_id.clone(),
                                earlier,
                            });
                        }
                        Err(dispatch::Failure::Retry(reason)) => {
                            session.record_failure(now_ms());
                            tracing::warn!(node = %session.node_id, job_id = job.job_id, %reason, "job moves to another agent");
                            earlier.push(Attempt {
                                backend: format!("{}@{}", fleet.backend.id, session.node_id),
                                started_ms,
                                duration_ms: started.elapsed().as_millis() as u64,
                                error: Some(reason),
                            });
                            avoid.push(session.id);
                        }
                        Err(dispatch::Failure::Final(error)) => {
                            return Err(error);
                        }
                    }
                }
                Pick::Busy => released.await,
                Pick::Nobody => {
                    let why = match earlier.is_empty() {
                        true => format!("no agent serves {}", job.service),
                        false => earlier
                            .iter()
                            .map(|a| {
                                format!("{}: {}", a.backend, a.error.as_deref().unwrap_or_default())
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    };
                    return Err(AttemptError::Failed(why));
                }
            }
        }
    }

    /// The best session with a free slot; `Busy` if some could serve but none is
    /// free, `Nobody` if none could.
    fn pick(&self, job: &NodeJob<'_>, avoid: &[u64]) -> Pick {
        let now = now_ms();
        let mut best: Option<(f64, Arc<Session>)> = None;
        let mut any = false;
        for entry in self.sessions.iter() {
            let session = entry.value();
            if session.tier != job.tier
                || avoid.contains(&session.id)
                || !session.serves(job.service, job.model)
            {
                continue;
            }
            any = true;
            let Some(mut score) = session.score(job.service, job.default_ms) else {
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

enum Pick {
    Session(Arc<Session>),
    Busy,
    Nobody,
}

/// The id of a fleet's backend: `node:<tier>:<service>`.
pub fn fleet_backend_id(tier: GpuTier, service: &str) -> String {
    format!("{}:{}:{service}", Provider::Node, tier.name())
}

fn fleet_key(id: &str) -> Option<(GpuTier, String)> {
    let rest = id.strip_prefix("node:")?;
    let (tier, service) = rest.split_once(':')?;
    let tier = GpuTier::from_name(tier)?;
    Some((tier, service.to_string()))
}
