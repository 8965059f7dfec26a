//! The scheduler: validates and prices requests, persists accepted jobs, runs them
//! on the best backend with failover, and answers status queries. Lock-light: jobs
//! live in a sharded map, backends are atomics, the catalog is immutable.

use crate::acceptance::Acceptance;
use crate::backend::{BackendSet, ExecutorSource, Route};
use crate::catalog::{Catalog, InputProblem, ModelKind, ServiceSpec};
use crate::clock::BackendClock;
use crate::config::SchedulerConfig;
use crate::deferred::Unwritten;
use crate::driver::{Driver, JobRun};
use crate::estimate::Ewma;
use crate::hooks::{JobHooks, NoHooks};
use crate::http::HttpClient;
use crate::job::{now_ms, JobBilling, JobPayment, JobRecord, Origin};
use crate::live::Refused;
use crate::live::{Keep, LiveJob, LiveJobs};
use crate::metrics::{MetricsError, SchedulerMetrics};
use crate::nodes::NodePool;
use crate::provider::Provider;
use crate::providers::{executor_for, ProviderClient};
use crate::router::{self, Tried};
use crate::runner::Start;
use crate::stream::StreamTap;
use crate::timeouts::{TimeoutCounters, Timeouts};
use crate::upstream::{Upstream, UpstreamTlsError};
use gpubridge_protocol::media::MediaFetcher;
use gpubridge_protocol::{AccountId, JobId, JobStatus, Micros, Priority};
use gpubridge_store::{Ack, Store, StoreError, WriteSet, WriteSlot};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    #[error("Every queue for {service} is full")]
    QueuesFull { service: String },
    #[error("This account already has {limit} unfinished jobs, its limit")]
    OwnerBusy { limit: u32 },
    #[error("The scheduler is shutting down")]
    ShuttingDown,
    #[error("Storage failure: {0}")]
    Store(#[from] StoreError),
}

impl SubmitError {
    /// Refused by the scheduler before anything was written.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, SubmitError::Store(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("provider {provider}: {source}")]
    Upstream {
        provider: Provider,
        source: UpstreamTlsError,
    },
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
    pub id: JobId,
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
    /// Set by the x402 payer before `submit`.
    pub payment: Option<JobPayment>,
    /// Set by a front door that streams the output to its client.
    pub stream: Option<StreamTap>,
    /// Set by a front door that reports its overhead: counts the job's time
    /// on backends.
    pub clock: Option<BackendClock>,
    /// Set by the front door's limits: at most this many of the owner's jobs
    /// may be unfinished at once, this one included.
    pub max_unfinished: Option<u32>,
}

/// What cancelling a job did.
pub enum Cancellation {
    /// It was pending or running; now it is cancelled, settled and persisted.
    Cancelled(JobRecord),
    /// The cancel is taking hold, but the job was not yet persisted as
    /// cancelled within the wait.
    Cancelling(JobRecord),
    /// It had already ended (or ended on its own before the cancel took hold).
    AlreadyEnded(JobRecord),
}

pub struct Estimate {
    pub service: String,
    pub estimated_seconds: f64,
    pub price_per_second: Micros,
    pub estimated_cost: Micros,
}

pub(crate) struct Inner {
    pub cfg: SchedulerConfig,
    pub catalog: Catalog,
    pub backends: BackendSet,
    pub nodes: Arc<NodePool>,
    pub store: Store,
    pub live: LiveJobs,
    /// Learned execution seconds per service, for upfront prices.
    pub service_seconds: HashMap<String, Ewma>,
    pub metrics: SchedulerMetrics,
    pub hooks: Arc<dyn JobHooks>,
    pub shutting_down: AtomicBool,
}

/// An accepted job whose first write is on its way to disk, and which already
/// runs (`acceptance.rs`). Await [`PendingJob::accepted`]: once it is `Ok` the
/// job survives a crash, and its id may be shown. Dropped unawaited, the
/// verdict still reaches the job: nothing accepted is lost.
pub struct PendingJob {
    parts: Option<Parts>,
}

type Parts = (Arc<Inner>, Arc<LiveJob>, Arc<Acceptance>, JobRecord, Ack);

/// What a front door attached to its job.
type Attached = (Option<StreamTap>, Option<BackendClock>);

impl PendingJob {
    pub async fn accepted(mut self) -> Result<JobRecord, SubmitError> {
        let Some(parts) = self.parts.take() else {
            return Err(SubmitError::ShuttingDown);
        };
        decide(parts).await
    }
}

impl Drop for PendingJob {
    fn drop(&mut self) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        // With no runtime left (a test's end) the job's task went with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = decide(parts).await;
            });
        }
    }
}

/// Waits for the job's first write and tells the running job how it went; a
/// job whose write failed is stopped.
async fn decide((inner, live, acceptance, record, ack): Parts) -> Result<JobRecord, SubmitError> {
    if let Err(e) = ack.await {
        live.cancel();
        acceptance.decide(false);
        return Err(e.into());
    }
    acceptance.decide(true);
    count_accepted(&inner, &record);
    Ok(record)
}

/// A job is accepted: durable, or started unwritten.
fn count_accepted(inner: &Inner, record: &JobRecord) {
    if let Some(m) = inner.metrics.service(&record.service) {
        m.accepted.inc();
    }
}

/// Registers a counted job as live; its whole run, for a task or a [`Driver`].
fn begin(
    inner: Arc<Inner>,
    record: &JobRecord,
    input: Value,
    (stream, clock): Attached,
    start: Start,
) -> (Arc<LiveJob>, JobRun) {
    crate::runner::job(inner, record.clone(), input, stream, clock, start)
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
        store: Store,
        registry: &prometheus::Registry,
        hooks: Option<Arc<dyn JobHooks>>,
    ) -> Result<Scheduler, StartError> {
        let nodes = Arc::new(
            NodePool::new(
                cfg.nodes.clone(),
                catalog.services().iter().map(|s| s.key.as_str()),
                cfg.ewma_alpha,
                registry,
            )
            .map_err(MetricsError::from)?,
        );
        let timeouts = TimeoutCounters::register(registry).map_err(MetricsError::from)?;
        let backends = build_backends(&catalog, &cfg, &nodes, &timeouts)?;
        nodes.attach(&backends);
        let metrics = SchedulerMetrics::register(registry, &catalog, &backends)?;
        let service_seconds = catalog
            .services()
            .iter()
            .map(|s| (s.key.clone(), Ewma::default()))
            .collect();
        let inner = Arc::new(Inner {
            live: LiveJobs::new(Keep {
                ms: cfg.finished_job_cache_seconds.saturating_mul(1000),
                entries: cfg.finished_job_cache_entries,
                bytes: cfg.finished_job_cache_bytes,
            }),
            cfg,
            catalog,
            backends,
            nodes,
            store,
            service_seconds,
            metrics,
            hooks: hooks.unwrap_or_else(|| Arc::new(NoHooks)),
            shutting_down: AtomicBool::new(false),
        });
        crate::estimates::restore(&inner).await?;
        crate::recovery::resume(&inner).await?;
        crate::estimates::spawn_maintenance(Arc::downgrade(&inner));
        crate::retention::spawn_sweeper(Arc::downgrade(&inner));
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
            let service = spec.key.clone();
            let saturated = (0..routes.len())
                .any(|i| !excluded.contains(i) && routes[i].backend.is_saturated());
            return Err(match saturated {
                true => SubmitError::QueuesFull { service },
                false => SubmitError::Unavailable { service },
            });
        }
        let estimate = self.estimate(&spec.key, None)?;
        Ok(PreparedJob {
            id: JobId::random(),
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
            payment: None,
            stream: None,
            clock: None,
            max_unfinished: None,
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
            available: routes
                .iter()
                .map(|r| r.backend.id.model().to_string())
                .collect(),
        })
    }

    /// Accepts a prepared job: hands its first write (with `writes`, atomically)
    /// to the store through `slot`, without waiting, and starts it meanwhile.
    /// The job is accepted once the returned [`PendingJob`] resolves; until
    /// then nothing of it is shown or settled (`acceptance.rs`).
    pub fn admit(
        &self,
        job: PreparedJob,
        owner: Option<AccountId>,
        writes: WriteSet,
        slot: WriteSlot,
    ) -> Result<PendingJob, SubmitError> {
        let (record, input, attached) = self.count(job, owner)?;
        let mut writes = writes;
        crate::jobs::write_new(&mut writes, &record);
        let ack = slot.submit(writes);
        let acceptance = Arc::new(Acceptance::default());
        let start = Start::Accepting(acceptance.clone());
        let (live, run) = begin(self.inner.clone(), &record, input, attached, start);
        tokio::spawn(run);
        Ok(PendingJob {
            parts: Some((self.inner.clone(), live, acceptance, record, ack)),
        })
    }

    /// Starts a job nobody pays for (no owner, billing, payment or webhook)
    /// before it is written: for a front door that shows its id only through
    /// [`Scheduler::wait_driving`] or [`Scheduler::durable`], which write it
    /// first if it has not ended. The terminal write of a job that ends first
    /// is its only one (`deferred.rs`). It runs as its [`Driver`] is polled, or
    /// once that is dropped.
    pub fn start_unwritten(&self, job: PreparedJob) -> Result<(JobRecord, Driver), SubmitError> {
        debug_assert!(job.billing.is_none() && job.payment.is_none() && job.webhook_url.is_none());
        let (record, input, attached) = self.count(job, None)?;
        count_accepted(&self.inner, &record);
        let start = Start::Unwritten(Unwritten::new());
        let (live, run) = begin(self.inner.clone(), &record, input, attached, start);
        Ok((record, Driver::new(live, run)))
    }

    /// Counts a prepared job among the unfinished and makes its record.
    fn count(
        &self,
        job: PreparedJob,
        owner: Option<AccountId>,
    ) -> Result<(JobRecord, Value, Attached), SubmitError> {
        let inner = &self.inner;
        if inner.shutting_down.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        inner
            .live
            .try_count(inner.cfg.max_live_jobs, owner, job.max_unfinished)
            .map_err(|refused| match refused {
                Refused::Full => SubmitError::Overloaded,
                Refused::Owner(limit) => SubmitError::OwnerBusy { limit },
            })?;
        let max_seconds = inner
            .catalog
            .service(&job.service)
            .map_or(300, |s| s.max_seconds);
        let created_ms = now_ms();
        let record = JobRecord {
            id: job.id,
            service: job.service,
            model: job.model,
            priority: job.priority,
            origin: job.origin,
            status: JobStatus::Pending,
            input: crate::job::json_text(&job.input),
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
            payment: job.payment,
            stopped: None,
            progress: None,
            routing: None,
            expired_ms: None,
        };
        Ok((record, job.input, (job.stream, job.clock)))
    }

    /// Accepts a prepared job and waits until it is durable and running.
    pub async fn submit(
        &self,
        job: PreparedJob,
        owner: Option<AccountId>,
        writes: WriteSet,
    ) -> Result<JobRecord, SubmitError> {
        let slot = self.inner.store.slot().await?;
        self.admit(job, owner, writes, slot)?.accepted().await
    }

    /// The job as it is now: from memory while it runs (and shortly after),
    /// shared rather than copied, else from the store.
    pub async fn status(&self, id: &JobId) -> Result<Option<Arc<JobRecord>>, StoreError> {
        if let Some(live) = self.inner.live.get(id.as_str()) {
            return Ok(Some(live.record.lock().clone()));
        }
        Ok(crate::jobs::get(&self.inner.store, id).await?.map(Arc::new))
    }

    /// [`Scheduler::wait`] for a job this request runs itself: its driver
    /// runs it for up to `wait`, then hands it to a task of its own.
    pub async fn wait_driving(
        &self,
        id: &JobId,
        wait: Duration,
        driver: Option<Driver>,
    ) -> Result<Option<Arc<JobRecord>>, StoreError> {
        let Some(driver) = driver else {
            return self.wait(id, wait).await;
        };
        let started = std::time::Instant::now();
        if let Some(ended) = driver.run_for(wait).await {
            return Ok(Some(ended));
        }
        self.wait(id, wait.saturating_sub(started.elapsed())).await
    }

    /// Waits up to `wait` for a job to finish; returns its state either way.
    /// A result this returns is not kept in memory for later status reads: the
    /// waiter is expected to pass it on. A job that has not ended is durable
    /// when this returns, so its id may be shown; if it cannot be made so, it
    /// is cancelled and this is the store's error.
    pub async fn wait(
        &self,
        id: &JobId,
        wait: Duration,
    ) -> Result<Option<Arc<JobRecord>>, StoreError> {
        let Some(live) = self.inner.live.get(id.as_str()) else {
            return self.status(id).await;
        };
        let record = live.wait(wait).await;
        if record.status.is_terminal() {
            return Ok(Some(record));
        }
        self.durable_live(&live).await?;
        // It may have ended meanwhile: then its end is the answer.
        let record = live.record.lock().clone();
        Ok(Some(record))
    }

    /// Makes a job started unwritten durable as it stands, so its id may be
    /// shown while it runs (with a stream's first chunk); nothing to do for a
    /// job written when accepted, or one that has ended. A job that cannot be
    /// made durable is cancelled, and this is the store's error.
    pub async fn durable(&self, id: &JobId) -> Result<(), StoreError> {
        match self.inner.live.get(id.as_str()) {
            Some(live) => self.durable_live(&live).await,
            None => Ok(()),
        }
    }

    async fn durable_live(&self, live: &LiveJob) -> Result<(), StoreError> {
        let made = crate::deferred::make_durable(&self.inner, live).await;
        if made.is_err() {
            live.cancel();
        }
        made
    }

    /// Cancels a pending or running job: a queued one leaves its queue, a
    /// running one is stopped at its backend; either is then settled and
    /// persisted as `cancelled` before this returns (up to `wait`). `None` when
    /// no such job exists.
    pub async fn cancel(
        &self,
        id: &JobId,
        wait: Duration,
    ) -> Result<Option<Cancellation>, StoreError> {
        let Some(live) = self.inner.live.get(id.as_str()) else {
            let stored = crate::jobs::get(&self.inner.store, id).await?;
            return Ok(stored.map(Cancellation::AlreadyEnded));
        };
        if live.done.is_set() {
            return Ok(Some(Cancellation::AlreadyEnded(live.snapshot())));
        }
        live.cancel();
        let finished = tokio::time::timeout(wait, live.done.wait()).await.is_ok();
        let record = live.snapshot();
        Ok(Some(match (finished, record.status) {
            (false, _) => Cancellation::Cancelling(record),
            (true, JobStatus::Cancelled) => Cancellation::Cancelled(record),
            // It ended on its own before the cancel took hold.
            (true, _) => Cancellation::AlreadyEnded(record),
        }))
    }

    /// Jobs accepted and not yet finished.
    pub fn live_jobs(&self) -> usize {
        self.inner.live.unfinished()
    }

    /// Resolves once no job is unfinished (as shutdown waits for them).
    pub async fn idle(&self) {
        self.inner.live.idle().await;
    }

    pub fn metrics(&self) -> &SchedulerMetrics {
        &self.inner.metrics
    }

    /// Refreshes scrape-time gauges.
    pub fn refresh_metrics(&self) {
        self.inner.metrics.refresh(&self.inner.backends);
        self.inner.nodes.refresh_metrics();
        self.inner.store.refresh_metrics();
    }

    /// Stops accepting jobs, waits up to `grace` for running ones, then saves
    /// estimates. Jobs still unfinished resume on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::Release);
        if tokio::time::timeout(grace, inner.live.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                unfinished = inner.live.unfinished(),
                "shutdown grace period over; unfinished jobs resume on next start, except inline answers not yet written, which end with their connections"
            );
        }
        crate::estimates::flush(inner).await;
    }
}

/// Every backend with its executor: one per hosted provider (shared by its
/// backends), and each node fleet's. A provider's TLS settings are read here,
/// so a bad `ca_file` stops the start instead of failing its first call.
fn build_backends(
    catalog: &Catalog,
    cfg: &SchedulerConfig,
    nodes: &Arc<NodePool>,
    timeouts: &TimeoutCounters,
) -> Result<BackendSet, StartError> {
    let media = MediaFetcher::new(cfg.allow_private_urls, cfg.max_media_bytes);
    let upstream = |provider: Provider| {
        Upstream::new(&cfg.provider(provider), cfg.phase_limits(provider)[0])
            .map_err(|source| StartError::Upstream { provider, source })
    };
    let mut upstreams = HashMap::new();
    for provider in Provider::HOSTED.into_iter().chain([Provider::Local]) {
        upstreams.insert(provider, upstream(provider)?);
    }
    let mut hosted: HashMap<Provider, Arc<dyn crate::executor::Executor>> = HashMap::new();
    Ok(BackendSet::build(
        catalog,
        cfg,
        ExecutorSource {
            hosted: &mut |provider| {
                hosted
                    .entry(provider)
                    .or_insert_with(|| {
                        // Each provider its own pool, under its own time limits.
                        let limits =
                            Timeouts::new(provider.name(), cfg.phase_limits(provider), timeouts);
                        let http = HttpClient::new(
                            &upstreams[&provider],
                            cfg.max_upstream_body_bytes,
                            limits,
                        );
                        executor_for(ProviderClient::new(provider, cfg, http, media.clone()))
                    })
                    .clone()
            },
            fleet: &mut |tier, _service| nodes.executor(tier),
        },
    ))
}
