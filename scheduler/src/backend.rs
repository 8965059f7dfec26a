//! Backends: one per provider × model (and per GPU tier × service for node
//! fleets), each with its executor, a bounded queue, in-flight slots, a circuit
//! breaker and learned latency. Routes bind a backend to a service.

use crate::breaker::Breaker;
use crate::catalog::{BackendSpec, Catalog, ModelSpec, Operation, ServiceSpec};
use crate::config::{BackendLimits, BreakerConfig, SchedulerConfig};
use crate::estimate::Ewma;
use crate::executor::Executor;
use crate::provider::Provider;
use gpubridge_protocol::node::GpuTier;
use gpubridge_protocol::Micros;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Which backend: a hosted provider's model, or one GPU tier's agents for one service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendId {
    Hosted { provider: Provider, model: String },
    Fleet { tier: GpuTier, service: String },
}

impl BackendId {
    /// The provider as clients see it: a hosted provider's name, or `node`.
    pub fn provider_name(&self) -> &'static str {
        match self {
            BackendId::Hosted { provider, .. } => provider.name(),
            BackendId::Fleet { .. } => "node",
        }
    }

    /// The provider's model id, or the fleet's tier.
    pub fn model(&self) -> &str {
        match self {
            BackendId::Hosted { model, .. } => model,
            BackendId::Fleet { tier, .. } => tier.name(),
        }
    }

    pub fn is_fleet(&self) -> bool {
        matches!(self, BackendId::Fleet { .. })
    }
}

/// `provider:model` or `node:tier:service`: stable across restarts, so learned
/// estimates are persisted under it, and what metrics and job histories show.
impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendId::Hosted { provider, model } => write!(f, "{provider}:{model}"),
            BackendId::Fleet { tier, service } => write!(f, "node:{}:{service}", tier.name()),
        }
    }
}

pub struct Backend {
    pub id: BackendId,
    /// `id` as text, made once: labels and histories use it on the hot path.
    pub label: String,
    pub executor: Arc<dyn Executor>,
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
    pub fn new(
        id: BackendId,
        executor: Arc<dyn Executor>,
        cost: u64,
        live: bool,
        limits: BackendLimits,
        breaker: &BreakerConfig,
    ) -> Backend {
        Backend {
            label: id.to_string(),
            id,
            executor,
            cost_per_second: Micros(cost),
            live: AtomicBool::new(live),
            capacity: AtomicU32::new(limits.max_in_flight),
            limits,
            breaker: Breaker::new(breaker.failure_threshold, breaker.open_seconds),
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

    /// Live and admitting, but its queue is full: the service is busy, not broken.
    pub fn is_saturated(&self) -> bool {
        self.is_live() && self.breaker.is_available() && !self.has_queue_room()
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

    /// Expected execution milliseconds of one job here (learned, or the
    /// service's default before any).
    pub fn expected_duration_ms(&self, default_ms: f64) -> f64 {
        self.latency_ms.get().unwrap_or(default_ms)
    }

    /// Expected cost of one job here: price per second × expected duration.
    pub fn expected_cost(&self, default_ms: f64) -> Micros {
        Micros::per_second_times(
            self.cost_per_second,
            self.expected_duration_ms(default_ms) / 1000.0,
        )
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

/// Where backends get their executors: hosted providers by provider, fleets by tier and service.
pub struct ExecutorSource<'a> {
    pub hosted: &'a mut dyn FnMut(Provider) -> Arc<dyn Executor>,
    pub fleet: &'a mut dyn FnMut(GpuTier, &str) -> Arc<dyn Executor>,
}

impl BackendSet {
    pub fn build(
        catalog: &Catalog,
        cfg: &SchedulerConfig,
        source: ExecutorSource<'_>,
    ) -> BackendSet {
        let mut builder = Builder {
            cfg,
            source,
            shared: HashMap::new(),
            fleets: Vec::new(),
        };
        let mut by_service = HashMap::new();
        let mut by_model: HashMap<String, HashMap<String, Vec<Route>>> = HashMap::new();
        for service in catalog.services() {
            let fleet_routes = builder.fleet_routes(service);
            let mut routes: Vec<Route> = service
                .backends
                .iter()
                .map(|spec| {
                    let backend =
                        builder.hosted(spec.provider, &spec.model, spec.cost_per_second_micros);
                    route(service, backend, &spec.model, Some(spec))
                })
                .collect();
            routes.extend(fleet_routes.iter().cloned());
            routes.truncate(MAX_ROUTES);
            by_service.insert(service.key.clone(), routes);
            if let Some(kind) = service.models {
                let per_model = by_model.entry(service.key.clone()).or_default();
                for model in catalog.models_of(kind) {
                    let routes = builder.model_routes(service, model, &fleet_routes);
                    per_model.insert(model.id.clone(), routes);
                }
            }
        }
        let Builder { shared, fleets, .. } = builder;
        let mut backends: Vec<Arc<Backend>> = shared.into_values().chain(fleets).collect();
        backends.sort_by(|a, b| a.label.cmp(&b.label));
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

    /// Hosted providers that could serve a service if they were configured.
    pub fn providers_for(&self, service: &str, model: Option<&str>) -> Vec<Provider> {
        let mut providers: Vec<Provider> = self
            .routes(service, model)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| match &r.backend.id {
                BackendId::Hosted { provider, .. } => Some(*provider),
                BackendId::Fleet { .. } => None,
            })
            .collect();
        providers.sort();
        providers.dedup();
        providers
    }
}

/// Makes backends: one per hosted provider model, shared by every route to it,
/// and one per GPU tier for each service's node fleet.
struct Builder<'c, 's> {
    cfg: &'c SchedulerConfig,
    source: ExecutorSource<'s>,
    shared: HashMap<BackendId, Arc<Backend>>,
    fleets: Vec<Arc<Backend>>,
}

impl Builder<'_, '_> {
    fn hosted(&mut self, provider: Provider, model: &str, cost: u64) -> Arc<Backend> {
        let id = BackendId::Hosted {
            provider,
            model: model.to_string(),
        };
        let (cfg, hosted) = (self.cfg, &mut self.source.hosted);
        self.shared
            .entry(id.clone())
            .or_insert_with(|| {
                let (live, limits) = (cfg.is_live(provider), cfg.limits(provider));
                Arc::new(Backend::new(
                    id,
                    hosted(provider),
                    cost,
                    live,
                    limits,
                    &cfg.breaker,
                ))
            })
            .clone()
    }

    /// A service's fleet routes, one per GPU tier: dead until an agent joins.
    fn fleet_routes(&mut self, service: &ServiceSpec) -> Vec<Route> {
        GpuTier::ALL
            .into_iter()
            .map(|tier| {
                let id = BackendId::Fleet {
                    tier,
                    service: service.key.clone(),
                };
                let cost = self.cfg.nodes.cost_per_second_micros.of(tier);
                let executor = (self.source.fleet)(tier, &service.key);
                let limits = self.cfg.fleet_limits();
                let backend = Arc::new(Backend::new(
                    id,
                    executor,
                    cost,
                    false,
                    limits,
                    &self.cfg.breaker,
                ));
                self.fleets.push(backend.clone());
                route(service, backend, tier.name(), None)
            })
            .collect()
    }

    /// The routes of one model of a model service: its providers, then the fleets.
    fn model_routes(
        &mut self,
        service: &ServiceSpec,
        model: &ModelSpec,
        fleets: &[Route],
    ) -> Vec<Route> {
        let mut routes: Vec<Route> = model
            .providers
            .iter()
            .map(|(&provider, pm)| {
                let backend = self.hosted(provider, &pm.id, pm.cost_per_second_micros);
                route(service, backend, &pm.id, None)
            })
            .collect();
        // HashMap order is random; keep route order stable for ties.
        routes.sort_by(|a, b| a.backend.id.cmp(&b.backend.id));
        routes.extend(fleets.iter().cloned());
        routes.truncate(MAX_ROUTES);
        routes
    }
}

/// How `service` uses `backend`: the provider's model id, and the catalog's
/// input renames and defaults for this backend, if it has any.
fn route(
    service: &ServiceSpec,
    backend: Arc<Backend>,
    model: &str,
    spec: Option<&BackendSpec>,
) -> Route {
    Route {
        backend,
        binding: Arc::new(Binding {
            service: service.key.clone(),
            operation: service.operation,
            provider_model: model.to_string(),
            input_map: spec.map(|s| s.input_map.clone()).unwrap_or_default(),
            defaults: spec.map(|s| s.defaults.clone()).unwrap_or_default(),
        }),
    }
}

/// Backends whose executors never run (routing tests).
#[cfg(test)]
impl BackendSet {
    pub(crate) fn for_tests(catalog: &Catalog, cfg: &SchedulerConfig) -> BackendSet {
        let idle = || -> Arc<dyn Executor> { Arc::new(crate::providers::Idle) };
        BackendSet::build(
            catalog,
            cfg,
            ExecutorSource {
                hosted: &mut |_| idle(),
                fleet: &mut |_, _| idle(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_builds_shared_backends() {
        let catalog = Catalog::builtin().unwrap();
        let set = BackendSet::for_tests(&catalog, &SchedulerConfig::default());
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
                .any(|r| r.backend.label == "node:rtx4090:echo" && !r.backend.is_live()),
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
        let id = BackendId::Hosted {
            provider: Provider::Groq,
            model: "m".into(),
        };
        let limits = cfg.limits(Provider::Groq);
        let backend = Backend::new(
            id,
            Arc::new(crate::providers::Idle),
            1,
            true,
            limits,
            &cfg.breaker,
        );
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
