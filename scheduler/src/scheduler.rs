//! The scheduler: validates and prices requests, persists accepted jobs, runs them
//! on the best backend with failover, and answers status queries. Lock-light: jobs
//! live in a sharded map, backends are atomics, the catalog is immutable.

use crate::adapters::ProviderClient;
use crate::backend::{BackendSet, Route};
use crate::catalog::{Catalog, InputProblem, ModelKind, ServiceSpec};
use crate::config::SchedulerConfig;
use crate::estimate::Ewma;
use crate::hooks::{JobHooks, NoHooks};
use crate::http::HttpClient;
use crate::job::{now_ms, JobBilling, JobRecord, Origin};
use crate::metrics::{MetricsError, SchedulerMetrics};
use crate::nodes::NodePool;
use crate::provider::Provider;
use crate::router::{self, Tried};
use crate::store::{Batch, Store, StoreError};
use dashmap::DashMap;
use gpubridge_protocol::media::MediaFetcher;
use gpubridge_protocol::{JobStatus, Micros, Priority};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("Unknown service: {0}")]
    UnknownService(String),
    #[error("Invalid input for {service}")]
    InvalidInput {
        service: String,
        problems: Vec<InputProblem>,
    },
    #[error("Unknown model {model:?} for {service}")]
    UnknownModel {
        service: String,
        model: String,
        available: Vec<String>,
    },
    #[error("No backend is configured for {service}")]
    NoLiveBackend {
        service: String,
        providers: Vec<Provider>,
    },
    #[error("Every backend for {service} is unavailable right now")]
    Unavailable { service: String },
    #[error("The scheduler is at capacity")]
    Overloaded,
    #[error("The scheduler is shutting down")]
    ShuttingDown,
    #[error("Storage failure: {0}")]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// What a client asked for, before validation.
pub struct JobRequest {
    pub service: String,
    pub input: Value,
    pub priority: Priority,
    pub origin: Origin,
    pub webhook_url: Option<String>,
}

/// A validated, priced request: what billing reserves against before `submit`.
pub struct PreparedJob {
    /// Assigned here so the reservation and the job are written under one id.
    pub id: String,
    pub service: String,
    pub model: Option<String>,
    pub input: Value,
    pub priority: Priority,
    pub origin: Origin,
    pub webhook_url: Option<String>,
    pub estimated_cost: Micros,
    pub estimated_seconds: f64,
    /// The quoted terms: the service's "from" price and price per second.
    pub from_price: Micros,
    pub price_per_second: Micros,
    /// Set by billing before `submit`.
    pub billing: Option<JobBilling>,
}

pub struct Estimate {
    pub service: String,
    pub estimated_seconds: f64,
    pub price_per_second: Micros,
    pub estimated_cost: Micros,
}

/// A job the scheduler holds in memory until it is terminal and persisted.
pub(crate) struct LiveJob {
    pub record: Mutex<JobRecord>,
    pub input: Value,
    pub done: watch::Sender<bool>,
}

pub(crate) struct Inner {
    pub cfg: SchedulerConfig,
    pub catalog: Catalog,
    pub backends: BackendSet,
    pub clients: HashMap<Provider, ProviderClient>,
    pub nodes: Arc<NodePool>,
    pub store: Arc<Store>,
    pub live: DashMap<String, Arc<LiveJob>>,
    pub live_count: AtomicUsize,
    /// Learned execution seconds per service, for upfront prices.
    pub service_seconds: HashMap<String, Ewma>,
    pub metrics: SchedulerMetrics,
    pub hooks: Arc<dyn JobHooks>,
    pub shutting_down: AtomicBool,
    pub idle: tokio::sync::Notify,
}

#[derive(Clone)]
pub struct Scheduler {
    pub(crate) inner: Arc<Inner>,
}

impl Scheduler {
    /// Restores estimates, resumes unfinished jobs (settling them through `hooks`)
    /// and starts the estimate flusher. Must run inside a Tokio runtime.
    pub async fn start(
        cfg: SchedulerConfig,
        catalog: Catalog,
        store: Arc<Store>,
        registry: &prometheus::Registry,
        hooks: Option<Arc<dyn JobHooks>>,
    ) -> Result<Scheduler, StartError> {
        let backends = BackendSet::build(&catalog, &cfg);
        let metrics = SchedulerMetrics::register(registry, &catalog, &backends)?;
        let http = HttpClient::new(cfg.max_upstream_body_bytes);
        let media = MediaFetcher::new(cfg.allow_private_urls, cfg.max_media_bytes);
        let clients = Provider::HOSTED
            .into_iter()
            .chain([Provider::Local])
            .map(|p| (p, ProviderClient::new(p, &cfg, http.clone(), media.clone())))
            .collect();
        let service_seconds = catalog
            .services()
            .iter()
            .map(|s| (s.key.clone(), Ewma::default()))
            .collect();
        let nodes = Arc::new(
            NodePool::new(cfg.nodes.clone(), &backends, cfg.ewma_alpha, registry)
                .map_err(MetricsError::from)?,
        );
        let inner = Arc::new(Inner {
            cfg,
            catalog,
            backends,
            clients,
            nodes,
            store,
            live: DashMap::new(),
            live_count: AtomicUsize::new(0),
            service_seconds,
            metrics,
            hooks: hooks.unwrap_or_else(|| Arc::new(NoHooks)),
            shutting_down: AtomicBool::new(false),
            idle: tokio::sync::Notify::new(),
        });
        crate::estimates::restore(&inner)?;
        crate::recovery::resume(&inner)?;
        crate::estimates::spawn_flusher(Arc::downgrade(&inner));
        Ok(Scheduler { inner })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn backends(&self) -> &BackendSet {
        &self.inner.backends
    }

    /// Connected node agents and their fleets.
    pub fn nodes(&self) -> &Arc<NodePool> {
        &self.inner.nodes
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.cfg
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Is at least one backend of this service configured (has credentials)?
    pub fn is_service_live(&self, service: &ServiceSpec) -> bool {
        let model = service.models.map(|k| self.inner.catalog.default_model(k));
        let any_model = service.models.is_some_and(|kind| {
            self.inner.catalog.models_of(kind).any(|m| {
                self.routes(&service.key, Some(&m.id))
                    .iter()
                    .any(|r| r.backend.is_live())
            })
        });
        any_model
            || self
                .routes(&service.key, model)
                .iter()
                .any(|r| r.backend.is_live())
    }

    fn routes(&self, service: &str, model: Option<&str>) -> &[Route] {
        self.inner
            .backends
            .routes(service, model)
            .unwrap_or_default()
    }

    /// Learned (or catalog default) execution seconds of a service.
    pub fn expected_seconds(&self, service: &ServiceSpec) -> f64 {
        self.inner
            .service_seconds
            .get(&service.key)
            .and_then(Ewma::get)
            .unwrap_or(service.default_seconds)
    }

    /// The upfront price: the service's "from" price or its per-second price over
    /// the expected duration, whichever is higher.
    pub fn estimate(&self, service: &str, seconds: Option<f64>) -> Result<Estimate, SubmitError> {
        let spec = self
            .inner
            .catalog
            .service(service)
            .ok_or_else(|| SubmitError::UnknownService(service.to_string()))?;
        let seconds = seconds.unwrap_or_else(|| self.expected_seconds(spec));
        let by_time = Micros::per_second_times(spec.price_per_second(), seconds);
        Ok(Estimate {
            service: spec.key.clone(),
            estimated_seconds: seconds,
            price_per_second: spec.price_per_second(),
            estimated_cost: by_time.max(spec.from_price()),
        })
    }

    /// Validates, resolves the model and prices a request; accepts nothing yet.
    pub fn prepare(&self, request: JobRequest) -> Result<PreparedJob, SubmitError> {
        let catalog = &self.inner.catalog;
        let spec = catalog
            .service(&request.service)
            .ok_or_else(|| SubmitError::UnknownService(request.service.clone()))?;
        catalog
            .validate(&spec.key, &request.input)
            .map_err(|problems| SubmitError::InvalidInput {
                service: spec.key.clone(),
                problems,
            })?;
        let asked_model = request.input.get("model").and_then(Value::as_str);
        let (model, excluded) = match spec.models {
            Some(kind) => (
                Some(self.resolve_model(spec, kind, asked_model)?),
                Tried::default(),
            ),
            None => (None, self.exclude_other_models(spec, asked_model)?),
        };
        let routes = self.routes(&spec.key, model.as_deref());
        if !routes.iter().any(|r| r.backend.is_live()) {
            return Err(SubmitError::NoLiveBackend {
                service: spec.key.clone(),
                providers: self
                    .inner
                    .backends
                    .providers_for(&spec.key, model.as_deref()),
            });
        }
        if router::pick(routes, request.priority, excluded, 1.0).is_none() {
            return Err(SubmitError::Unavailable {
                service: spec.key.clone(),
            });
        }
        let estimate = self.estimate(&spec.key, None)?;
        Ok(PreparedJob {
            id: uuid::Uuid::new_v4().to_string(),
            service: spec.key.clone(),
            model,
            input: request.input,
            priority: request.priority,
            origin: request.origin,
            webhook_url: request.webhook_url,
            estimated_cost: estimate.estimated_cost,
            estimated_seconds: estimate.estimated_seconds,
            from_price: spec.from_price(),
            price_per_second: spec.price_per_second(),
            billing: None,
        })
    }

    fn resolve_model(
        &self,
        spec: &ServiceSpec,
        kind: ModelKind,
        asked: Option<&str>,
    ) -> Result<String, SubmitError> {
        let catalog = &self.inner.catalog;
        let model = asked.unwrap_or_else(|| catalog.default_model(kind));
        match catalog.model(model) {
            Some(m) if m.kind == kind => Ok(m.id.clone()),
            _ => Err(SubmitError::UnknownModel {
                service: spec.key.clone(),
                model: model.to_string(),
                available: catalog.models_of(kind).map(|m| m.id.clone()).collect(),
            }),
        }
    }

    /// For services without a model list, `model` narrows the routes to one backend model.
    fn exclude_other_models(
        &self,
        spec: &ServiceSpec,
        asked: Option<&str>,
    ) -> Result<Tried, SubmitError> {
        let routes = self.routes(&spec.key, None);
        router::exclusions(routes, asked).ok_or_else(|| SubmitError::UnknownModel {
            service: spec.key.clone(),
            model: asked.unwrap_or_default().to_string(),
            available: routes.iter().map(|r| r.backend.model.clone()).collect(),
        })
    }

    /// Accepts a prepared job: persists it (with `extra` writes, atomically) and
    /// starts it. Once this returns `Ok`, the job survives a crash.
    pub fn submit(
        &self,
        job: PreparedJob,
        owner: Option<String>,
        extra: Batch,
    ) -> Result<JobRecord, SubmitError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        if inner.live_count.fetch_add(1, Ordering::AcqRel) >= inner.cfg.max_live_jobs {
            inner.live_count.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Overloaded);
        }
        let spec = inner.catalog.service(&job.service);
        let max_seconds = spec.map_or(300, |s| s.max_seconds);
        let created_ms = now_ms();
        let record = JobRecord {
            id: job.id,
            service: job.service,
            model: job.model,
            priority: job.priority,
            origin: job.origin,
            status: JobStatus::Pending,
            input: job.input.to_string(),
            output: None,
            error: None,
            attempts: Vec::new(),
            backend: None,
            created_ms,
            started_ms: None,
            finished_ms: None,
            deadline_ms: created_ms + max_seconds * 1000,
            estimated_cost: job.estimated_cost,
            estimated_seconds: job.estimated_seconds,
            execution_us: None,
            webhook_url: job.webhook_url,
            owner,
            recoveries: 0,
            billing: job.billing,
        };
        if let Err(e) = inner.store.insert_job(&record, extra) {
            inner.live_count.fetch_sub(1, Ordering::AcqRel);
            return Err(e.into());
        }
        if let Some(m) = inner.metrics.service(&record.service) {
            m.accepted.inc();
        }
        let snapshot = record.clone();
        crate::runner::spawn(inner.clone(), record, job.input);
        Ok(snapshot)
    }

    /// The job as it is now: from memory while it runs, else from RocksDB.
    pub fn status(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        if let Some(live) = self.inner.live.get(id) {
            return Ok(Some(live.record.lock().clone()));
        }
        self.inner.store.job(id)
    }

    /// Waits up to `wait` for a job to finish; returns its state either way.
    pub async fn wait(&self, id: &str, wait: Duration) -> Result<Option<JobRecord>, StoreError> {
        let receiver = self.inner.live.get(id).map(|live| live.done.subscribe());
        if let Some(mut receiver) = receiver {
            let _ = tokio::time::timeout(wait, receiver.wait_for(|done| *done)).await;
        }
        self.status(id)
    }

    pub fn live_jobs(&self) -> usize {
        self.inner.live_count.load(Ordering::Acquire)
    }

    pub fn metrics(&self) -> &SchedulerMetrics {
        &self.inner.metrics
    }

    /// Refreshes scrape-time gauges.
    pub fn refresh_metrics(&self) {
        self.inner.metrics.refresh(&self.inner.backends);
        self.inner.nodes.refresh_metrics();
    }

    /// Stops accepting jobs, waits up to `grace` for running ones, then saves
    /// estimates. Jobs still unfinished resume on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        let drained = async {
            loop {
                let notified = inner.idle.notified();
                if inner.live_count.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(
                unfinished = inner.live_count.load(Ordering::Acquire),
                "shutdown grace period over; unfinished jobs resume on next start"
            );
        }
        crate::estimates::flush(inner);
    }
}
