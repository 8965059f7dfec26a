//! Backends: one per provider × model, each with its own bounded queue, in-flight
//! slots, circuit breaker and learned latency. Routes bind a backend to a service.

use crate::breaker::Breaker;
use crate::catalog::{BackendSpec, Catalog, Operation, ServiceSpec};
use crate::config::{BackendLimits, SchedulerConfig};
use crate::estimate::Ewma;
use crate::provider::Provider;
use gpubridge_protocol::node::GpuTier;
use gpubridge_protocol::Micros;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::{Semaphore, SemaphorePermit};

pub struct Backend {
    /// `provider:model`, stable across restarts: estimates are persisted under it.
    pub id: String,
    pub provider: Provider,
    pub model: String,
    pub cost_per_second: Micros,
    /// Configured (hosted), or served by at least one agent (fleets).
    live: AtomicBool,
    pub limits: BackendLimits,
    /// Jobs it runs at once: the in-flight limit, or a fleet's agents' slots.
    capacity: AtomicU32,
    pub breaker: Breaker,
    /// Wall time of a successful attempt, in milliseconds.
    pub latency_ms: Ewma,
    slots: Semaphore,
    waiting: AtomicU32,
    in_flight: AtomicU32,
}

/// A place in a backend's queue; leaving it (drop) frees the place.
pub struct QueueTicket<'a> {
    backend: &'a Backend,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.backend.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running attempt's slot; dropping it frees the slot.
pub struct InFlight<'a> {
    backend: &'a Backend,
    _permit: SemaphorePermit<'a>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Backend {
    fn new(provider: Provider, spec_model: &str, cost: u64, cfg: &SchedulerConfig) -> Backend {
        Backend::with_id(
            format!("{provider}:{spec_model}"),
            provider,
            spec_model,
            cost,
            cfg,
        )
    }

    fn with_id(
        id: String,
        provider: Provider,
        spec_model: &str,
        cost: u64,
        cfg: &SchedulerConfig,
    ) -> Backend {
        let limits = cfg.limits(provider);
        Backend {
            id,
            provider,
            model: spec_model.to_string(),
            cost_per_second: Micros(cost),
            live: AtomicBool::new(cfg.is_live(provider)),
            capacity: AtomicU32::new(limits.max_in_flight),
            limits,
            breaker: Breaker::new(cfg.breaker.failure_threshold, cfg.breaker.open_seconds),
            latency_ms: Ewma::default(),
            slots: Semaphore::new(limits.max_in_flight as usize),
            waiting: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }

    pub(crate) fn set_capacity(&self, jobs: u32) {
        self.capacity.store(jobs.max(1), Ordering::Release);
    }

    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Can this backend take one more job right now (live, circuit allows, queue has room)?
    pub fn is_available(&self) -> bool {
        self.is_live() && self.breaker.is_available() && self.has_queue_room()
    }

    fn has_queue_room(&self) -> bool {
        self.waiting() < self.limits.queue_limit.max(1)
    }

    /// Joins the queue unless it is full.
    pub fn enter_queue(&self) -> Option<QueueTicket<'_>> {
        let limit = self.limits.queue_limit;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < limit.max(1)).then_some(w + 1)
            })
            .ok()
            .map(|_| QueueTicket { backend: self })
    }

    /// Waits for an in-flight slot, leaving the queue when it gets one.
    pub async fn start(&self, ticket: QueueTicket<'_>) -> InFlight<'_> {
        // The semaphore is never closed, so acquire cannot fail; map defensively anyway.
        let permit = loop {
            if let Ok(permit) = self.slots.acquire().await {
                break permit;
            }
            tokio::task::yield_now().await;
        };
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        drop(ticket);
        InFlight {
            backend: self,
            _permit: permit,
        }
    }

    /// Expected milliseconds from now to a result: latency plus the wait for a slot.
    pub fn expected_ms(&self, default_ms: f64) -> f64 {
        let latency = self.latency_ms.get().unwrap_or(default_ms);
        let max = self.capacity.load(Ordering::Acquire).max(1) as f64;
        let ahead = (self.waiting() as f64 + self.in_flight() as f64 + 1.0 - max).max(0.0);
        latency * (1.0 + ahead / max)
    }
}

/// How one service uses one backend.
pub struct Binding {
    pub service: String,
    pub operation: Operation,
    /// The provider's own model id.
    pub provider_model: String,
    pub input_map: HashMap<String, String>,
    pub defaults: Map<String, Value>,
}

#[derive(Clone)]
pub struct Route {
    pub backend: Arc<Backend>,
    pub binding: Arc<Binding>,
}

/// Every backend, and the routes of every service (and model, for model services).
pub struct BackendSet {
    backends: Vec<Arc<Backend>>,
    by_service: HashMap<String, Vec<Route>>,
    by_model: HashMap<String, HashMap<String, Vec<Route>>>,
}

/// Routes per service or model are tracked in a 64-bit "tried" mask by the router.
pub const MAX_ROUTES: usize = 64;

impl BackendSet {
    pub fn build(catalog: &Catalog, cfg: &SchedulerConfig) -> BackendSet {
        let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
        let mut backend_for = |provider: Provider, model: &str, cost: u64| -> Arc<Backend> {
            backends
                .entry(format!("{provider}:{model}"))
                .or_insert_with(|| Arc::new(Backend::new(provider, model, cost, cfg)))
                .clone()
        };
        let mut by_service = HashMap::new();
        let mut by_model: HashMap<String, HashMap<String, Vec<Route>>> = HashMap::new();
        let mut fleets: Vec<Arc<Backend>> = Vec::new();
        for service in catalog.services() {
            let fleet_routes: Vec<Route> = GpuTier::ALL
                .into_iter()
                .map(|tier| {
                    let cost = cfg.nodes.cost_per_second_micros.of(tier);
                    let backend = Arc::new(Backend::with_id(
                        crate::nodes::fleet_backend_id(tier, &service.key),
                        Provider::Node,
                        tier.name(),
                        cost,
                        cfg,
                    ));
                    fleets.push(backend.clone());
                    let spec = BackendSpec {
                        provider: Provider::Node,
                        model: tier.name().to_string(),
                        cost_per_second_micros: cost,
                        input_map: HashMap::new(),
                        defaults: Map::new(),
                    };
                    route(service, &spec, backend)
                })
                .collect();
            let mut routes = Vec::new();
            for spec in &service.backends {
                let backend = backend_for(spec.provider, &spec.model, spec.cost_per_second_micros);
                routes.push(route(service, spec, backend));
            }
            routes.extend(fleet_routes.iter().cloned());
            routes.truncate(MAX_ROUTES);
            by_service.insert(service.key.clone(), routes);
            if let Some(kind) = service.models {
                let per_model = by_model.entry(service.key.clone()).or_default();
                for model in catalog.models_of(kind) {
                    let mut routes: Vec<Route> = model
                        .providers
                        .iter()
                        .map(|(&provider, pm)| {
                            let backend = backend_for(provider, &pm.id, pm.cost_per_second_micros);
                            let spec = BackendSpec {
                                provider,
                                model: pm.id.clone(),
                                cost_per_second_micros: pm.cost_per_second_micros,
                                input_map: HashMap::new(),
                                defaults: Map::new(),
                            };
                            route(service, &spec, backend)
                        })
                        .collect();
                    // HashMap order is random; keep route order stable for ties.
                    routes.sort_by(|a, b| a.backend.id.cmp(&b.backend.id));
                    routes.extend(fleet_routes.iter().cloned());
                    routes.truncate(MAX_ROUTES);
                    per_model.insert(model.id.clone(), routes);
                }
            }
        }
        let mut backends: Vec<Arc<Backend>> = backends.into_values().chain(fleets).collect();
        backends.sort_by(|a, b| a.id.cmp(&b.id));
        BackendSet {
            backends,
            by_service,
            by_model,
        }
    }

    pub fn all(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Routes of a service; for model services, those of `model`.
    pub fn routes(&self, service: &str, model: Option<&str>) -> Option<&[Route]> {
        match (self.by_model.get(service), model) {
            (Some(models), Some(model)) => models.get(model).map(Vec::as_slice),
            _ => self.by_service.get(service).map(Vec::as_slice),
        }
    }

    /// Providers that could serve a service if they were configured.
    pub fn providers_for(&self, service: &str, model: Option<&str>) -> Vec<Provider> {
        let mut providers: Vec<Provider> = self
            .routes(service, model)
            .unwrap_or_default()
            .iter()
            .map(|r| r.backend.provider)
            .collect();
        providers.sort();
        providers.dedup();
        providers
    }
}

fn route(service: &ServiceSpec, spec: &BackendSpec, backend: Arc<Backend>) -> Route {
    Route {
        backend,
        binding: Arc::new(Binding {
            service: service.key.clone(),
            operation: service.operation,
            provider_model: spec.model.clone(),
            input_map: spec.input_map.clone(),
            defaults: spec.defaults.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_builds_shared_backends() {
        let catalog = Catalog::builtin().unwrap();
        let set = BackendSet::build(&catalog, &SchedulerConfig::default());
        let llm = set
            .routes("llm-4090", Some("meta-llama/Llama-3.3-70B-Instruct"))
            .unwrap();
        assert!(llm.len() >= 4);
        assert!(
            llm.iter().all(|r| !r.backend.is_live()),
            "no keys, nothing live"
        );
        let echo = set.routes("echo", None).unwrap();
        assert!(echo[0].backend.is_live(), "echo is live by default");
        assert!(
            echo.iter()
                .any(|r| r.backend.id == "node:rtx4090:echo" && !r.backend.is_live()),
            "every service has agent fleets, dead until an agent joins"
        );
        // Each service has at least one route.
        for service in catalog.services() {
            let model = service.models.map(|k| catalog.default_model(k));
            assert!(
                !set.routes(&service.key, model).unwrap().is_empty(),
                "{}",
                service.key
            );
        }
    }

    #[tokio::test]
    async fn queue_is_bounded_and_slots_limit_in_flight() {
        let mut cfg = SchedulerConfig::default();
        cfg.providers.insert(
            Provider::Groq,
            crate::config::ProviderConfig {
                max_in_flight: Some(1),
                queue_limit: Some(2),
                ..Default::default()
            },
        );
        let backend = Backend::new(Provider::Groq, "m", 1, &cfg);
        let a = backend.enter_queue().unwrap();
        let b = backend.enter_queue().unwrap();
        assert!(backend.enter_queue().is_none(), "queue of 2 is full");
        let running = backend.start(a).await;
        assert_eq!((backend.waiting(), backend.in_flight()), (1, 1));
        assert!(backend.enter_queue().is_some(), "a place freed up");
        drop(running);
        let _second = backend.start(b).await;
        assert_eq!(backend.in_flight(), 1);
    }
}
