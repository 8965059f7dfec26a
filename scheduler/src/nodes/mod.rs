//! Operators' own GPU hosts. Each `gpubridge-agent` holds one QUIC connection to
//! the scheduler; its services join a fleet per GPU tier and service, and each
//! fleet is one backend to the router, priced by tier. Within a fleet a job goes
//! to the agent with a free slot and the lowest expected time; an agent that
//! dies or fails mid-job is avoided and the job moves to another agent.

mod config;
mod dispatch;
mod fleet;
mod identity;
mod metrics;
mod server;
mod session;

pub use config::{NodesConfig, TierCosts};
pub use identity::{Identity, IdentityError, IssuedToken, TokenRefusal, SERVER_NAME};
pub use server::{endpoint, serve, EndpointError};
pub use session::Session;

use crate::backend::{Backend, BackendId, BackendSet};
use crate::executor::Executor;
use crate::job::now_ms;
use dashmap::DashMap;
use gpubridge_protocol::node::GpuTier;
use parking_lot::RwLock;
use session::ServiceSlots;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// A tier's agents for one service, as the router sees them.
struct Fleet {
    /// Its backend, whose liveness and capacity follow the agents.
    backend: OnceLock<Weak<Backend>>,
    /// Woken when a slot of this fleet frees or an agent joins.
    released: tokio::sync::Notify,
    /// The sessions serving it, remade when one joins, leaves or drains: a
    /// pick reads these, not every session of every fleet.
    members: RwLock<Members>,
}

impl Fleet {
    /// Puts in a remake's member list, and its backend's liveness and
    /// capacity, unless a later remake's is in (it saw all this one saw).
    fn install(&self, remake: u64, list: Arc<[Member]>) -> bool {
        let slots = list.iter().map(|m| m.slots.slots).sum();
        let mut members = self.members.write();
        if members.remake > remake {
            return false;
        }
        *members = Members { remake, list };
        // Under the lock, so capacity and list never come from two remakes.
        if let Some(backend) = self.backend.get().and_then(Weak::upgrade) {
            backend.set_live(slots > 0);
            backend.set_capacity(slots);
        }
        true
    }
}

/// A fleet's member list and the remake that made it.
struct Members {
    /// Taken before its scan of the sessions: a remake that began earlier
    /// (and may have missed a later join) never replaces it.
    remake: u64,
    list: Arc<[Member]>,
}

/// A session in a fleet, with its slots for the fleet's service.
struct Member {
    session: Arc<Session>,
    slots: Arc<ServiceSlots>,
}

pub struct NodePool {
    pub cfg: NodesConfig,
    /// Sessions by node id: one per node, a reconnect replaces the old one.
    sessions: DashMap<String, Arc<Session>>,
    fleets: HashMap<(GpuTier, String), Fleet>,
    /// Numbers the remakes of fleets, in the order their scans began.
    remakes: AtomicU64,
    next_session: AtomicU64,
    ewma_alpha: f64,
    metrics: metrics::NodeMetrics,
}

impl NodePool {
    /// A pool with a fleet per GPU tier for each of `services`.
    pub fn new<'a>(
        cfg: NodesConfig,
        services: impl Iterator<Item = &'a str>,
        ewma_alpha: f64,
        registry: &prometheus::Registry,
    ) -> Result<NodePool, prometheus::Error> {
        let fleets = services
            .flat_map(|service| GpuTier::ALL.map(|tier| (tier, service.to_string())))
            .map(|key| {
                let fleet = Fleet {
                    backend: OnceLock::new(),
                    released: tokio::sync::Notify::new(),
                    members: RwLock::new(Members {
                        remake: 0,
                        list: Arc::from([]),
                    }),
                };
                (key, fleet)
            })
            .collect();
        Ok(NodePool {
            cfg,
            sessions: DashMap::new(),
            fleets,
            remakes: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            ewma_alpha,
            metrics: metrics::NodeMetrics::register(registry)?,
        })
    }

    /// The executor of a tier's fleets (each call names its service).
    pub fn executor(self: &Arc<Self>, tier: GpuTier) -> Arc<dyn Executor> {
        Arc::new(fleet::FleetExecutor {
            pool: self.clone(),
            tier,
        })
    }

    /// Links each fleet to its backend, so agents joining and leaving set its
    /// liveness and capacity.
    pub(crate) fn attach(&self, backends: &BackendSet) {
        for backend in backends.all() {
            if let BackendId::Fleet { tier, service } = &backend.id {
                if let Some(fleet) = self.fleets.get(&(*tier, service.clone())) {
                    let _ = fleet.backend.set(Arc::downgrade(backend));
                }
            }
        }
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
        self.refresh(&session);
        if let Some(old) = &old {
            self.refresh(old);
        }
        old
    }

    /// Removes a session unless a newer one of its node already took its place.
    pub(crate) fn remove(&self, session: &Session) {
        self.sessions
            .remove_if(&session.node_id, |_, current| current.id == session.id);
        self.refresh(session);
    }

    /// Marks a node draining: no new jobs; `true` if it is connected.
    pub fn drain(&self, node_id: &str) -> bool {
        let Some(session) = self.sessions.get(node_id).map(|s| s.value().clone()) else {
            return false;
        };
        session.draining.store(true, Ordering::Release);
        session.drain_requested.notify_one();
        self.refresh(&session);
        true
    }

    /// Recomputes the liveness and capacity of the fleets `session` belongs to
    /// (it joined, left or is draining), and wakes their jobs waiting for a
    /// slot: the agent they wait on may have left, or a new one may serve them.
    /// Other fleets did not change, so a join costs one pass over the sessions
    /// per service it offers, not one per fleet of the catalog.
    pub(crate) fn refresh(&self, session: &Session) {
        for service in session.services.keys() {
            let Some(fleet) = self.fleets.get(&(session.tier, service.clone())) else {
                continue;
            };
            let remake = self.remakes.fetch_add(1, Ordering::AcqRel);
            let list: Arc<[Member]> = self
                .sessions
                .iter()
                .filter(|s| s.tier == session.tier && s.serves(service, None))
                .filter_map(|s| {
                    let slots = s.services.get(service)?.clone();
                    let session = s.value().clone();
                    Some(Member { session, slots })
                })
                .collect();
            if fleet.install(remake, list) {
                fleet.released.notify_waiters();
            }
        }
    }
}
