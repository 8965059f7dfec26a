//! One connected agent: what it registered, its free slots per service (the
//! scheduler's own count, so two dispatchers never take the same slot), its
//! latest telemetry and its learned latency.

use crate::estimate::Ewma;
use gpubridge_protocol::node::{Gpu, GpuTelemetry, GpuTier, Registration};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

pub struct ServiceSlots {
    pub slots: u32,
    free: AtomicU32,
    pub models: Vec<String>,
}

impl ServiceSlots {
    pub fn free(&self) -> u32 {
        self.free.load(Ordering::Acquire)
    }

    pub fn serves_model(&self, model: Option<&str>) -> bool {
        match model {
            Some(model) if !self.models.is_empty() => self.models.iter().any(|m| m == model),
            _ => true,
        }
    }
}

pub struct Session {
    /// Unique per connection; a reconnecting node gets a new one.
    pub id: u64,
    pub node_id: String,
    pub agent_version: String,
    pub tier: GpuTier,
    pub gpus: Vec<Gpu>,
    pub remote: SocketAddr,
    pub connected_ms: u64,
    pub connection: quinn::Connection,
    /// Shared with the fleets' member lists, which read a slot count
    /// without looking the service up again.
    pub services: HashMap<String, Arc<ServiceSlots>>,
    pub draining: AtomicBool,
    /// Wakes the control stream to tell the agent to drain.
    pub drain_requested: tokio::sync::Notify,
    pub last_heartbeat_ms: AtomicU64,
    pub telemetry: Mutex<Vec<GpuTelemetry>>,
    /// Milliseconds from assignment to result, successful jobs only.
    pub latency_ms: Ewma,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Failures in a row; past a few, the session sits out a while.
    failures_in_row: AtomicU32,
    benched_until_ms: AtomicU64,
}

/// Failures in a row that bench a session, and for how long.
const BENCH_AFTER: u32 = 3;
const BENCH_MS: u64 = 5_000;

/// A slot taken on a session; dropping it gives the slot back.
pub struct SlotGuard<'a> {
    slots: &'a ServiceSlots,
    on_release: &'a tokio::sync::Notify,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.slots.free.fetch_add(1, Ordering::AcqRel);
        self.on_release.notify_one();
    }
}

impl Session {
    pub fn new(
        id: u64,
        registration: &Registration,
        remote: SocketAddr,
        connection: quinn::Connection,
        now_ms: u64,
    ) -> Session {
        let services = registration
            .services
            .iter()
            .filter(|s| s.slots > 0)
            .map(|s| {
                (
                    s.service.clone(),
                    Arc::new(ServiceSlots {
                        slots: s.slots,
                        free: AtomicU32::new(s.slots),
                        models: s.models.clone(),
                    }),
                )
            })
            .collect();
        Session {
            id,
            node_id: registration.node_id.clone(),
            agent_version: registration.agent_version.clone(),
            tier: registration.tier,
            gpus: registration.gpus.clone(),
            remote,
            connected_ms: now_ms,
            connection,
            services,
            draining: AtomicBool::new(false),
            drain_requested: tokio::sync::Notify::new(),
            last_heartbeat_ms: AtomicU64::new(now_ms),
            telemetry: Mutex::new(Vec::new()),
            latency_ms: Ewma::default(),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures_in_row: AtomicU32::new(0),
            benched_until_ms: AtomicU64::new(0),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Could this session take a job of `service` (for `model`) at all?
    pub fn serves(&self, service: &str, model: Option<&str>) -> bool {
        !self.is_draining()
            && self
                .services
                .get(service)
                .is_some_and(|s| s.serves_model(model))
    }

    pub fn record_success(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.failures_in_row.store(0, Ordering::Relaxed);
    }

    /// Counts a failed job; a session failing again and again is benched for a
    /// while, so one broken host does not take every job's first attempt.
    pub fn record_failure(&self, now_ms: u64) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1 >= BENCH_AFTER {
            self.benched_until_ms
                .store(now_ms + BENCH_MS, Ordering::Relaxed);
        }
    }

    pub fn is_benched(&self, now_ms: u64) -> bool {
        self.benched_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Running jobs over all services.
    pub fn running(&self) -> u32 {
        self.services
            .values()
            .map(|s| s.slots.saturating_sub(s.free()))
            .sum()
    }

    /// Expected milliseconds to a result here: latency scaled by how busy it is.
    pub fn score(&self, service: &str, default_ms: f64) -> Option<f64> {
        self.score_on(self.services.get(service)?, default_ms)
    }

    /// [`Session::score`] for slots of this session already looked up.
    pub fn score_on(&self, slots: &ServiceSlots, default_ms: f64) -> Option<f64> {
        let free = slots.free();
        if free == 0 {
            return None;
        }
        let busy = (slots.slots - free) as f64 / slots.slots as f64;
        Some(self.latency_ms.get().unwrap_or(default_ms) * (1.0 + busy))
    }

    /// Takes a slot of `service` unless none is free.
    pub fn take_slot<'a>(
        &'a self,
        service: &str,
        on_release: &'a tokio::sync::Notify,
    ) -> Option<SlotGuard<'a>> {
        let slots = self.services.get(service)?;
        slots
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| f.checked_sub(1))
            .ok()
            .map(|_| SlotGuard { slots, on_release })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use gpubridge_protocol::node::ServiceSlots as Offered;
    use std::time::Duration;

    /// A session needs a live connection: one on loopback, as an agent makes it.
    pub(crate) async fn session(
        id: u64,
        node_id: &str,
        tier: GpuTier,
        services: Vec<Offered>,
    ) -> Session {
        let registration = Registration {
            node_id: node_id.into(),
            agent_version: "t".into(),
            join_token: String::new(),
            gpus: vec![],
            tier,
            services,
        };
        let dir = tempfile::tempdir().unwrap();
        let identity = crate::nodes::Identity::load_or_create(dir.path()).unwrap();
        let cfg = crate::nodes::NodesConfig::default();
        let config = crate::nodes::server::server_config(&identity, &cfg).unwrap();
        let server = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move { server.accept().await.unwrap().await });
        let pin = gpubridge_node_agent::PinnedCertificate::new(identity.fingerprint);
        let client =
            gpubridge_node_agent::client_endpoint(addr, pin, 4, Duration::from_secs(1)).unwrap();
        let _agent_side = client
            .connect(addr, crate::nodes::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let connection = accept.await.unwrap().unwrap();
        Session::new(id, &registration, addr, connection, 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubridge_protocol::node::ServiceSlots as Offered;

    async fn session() -> Session {
        let services = vec![
            Offered {
                service: "llm-4090".into(),
                slots: 2,
                models: vec!["m1".into()],
            },
            Offered {
                service: "echo".into(),
                slots: 1,
                models: vec![],
            },
        ];
        testing::session(7, "n", GpuTier::L4, services).await
    }

    #[tokio::test]
    async fn slots_models_draining_and_benching() {
        let session = session().await;
        let released = tokio::sync::Notify::new();
        assert!(session.serves("llm-4090", Some("m1")));
        assert!(!session.serves("llm-4090", Some("m2")), "models are listed");
        assert!(
            session.serves("echo", Some("anything")),
            "no list: any model"
        );
        assert!(!session.serves("rerank", None));

        let a = session.take_slot("llm-4090", &released).unwrap();
        let b = session.take_slot("llm-4090", &released).unwrap();
        assert!(session.take_slot("llm-4090", &released).is_none());
        assert_eq!(
            session.score("llm-4090", 10.0),
            None,
            "full: not a candidate"
        );
        assert_eq!(session.running(), 2);
        drop(a);
        assert!(session.score("llm-4090", 10.0).is_some());
        drop(b);
        assert_eq!(session.running(), 0);

        assert!(!session.is_benched(1_000));
        session.record_failure(1_000);
        session.record_failure(1_000);
        assert!(!session.is_benched(1_000), "two failures are bad luck");
        session.record_failure(1_000);
        assert!(session.is_benched(1_001));
        assert!(
            !session.is_benched(1_000 + BENCH_MS + 1),
            "benched for a while only"
        );
        session.record_success();
        session.record_failure(2_000_000);
        assert!(!session.is_benched(2_000_000), "a success resets the count");

        session.draining.store(true, Ordering::Release);
        assert!(!session.serves("echo", None), "draining takes no jobs");
    }
}
