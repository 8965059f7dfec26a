//! The GPU-Bridge job core: the service catalog and its prices, backends with
//! bounded queues and circuit breakers, fast/cheap routing with failover, the
//! executors that run jobs, node-agent fleets over QUIC, and jobs kept in the
//! store. Money is billing's (`gpubridge-billing`), reached through [`JobHooks`].
//!
//! Where to add what:
//! - a hosted provider: one file in `providers/` implementing [`Executor`], its
//!   `Provider` variant in `provider.rs`, and its line in `providers::executor_for`;
//! - a service or model: `catalog.json` (or a catalog file named in the config);
//! - a new way to run jobs on operators' machines: an [`Executor`] like `nodes::fleet`;
//! - a front door: call [`Scheduler::prepare`] then [`Scheduler::admit`] (the
//!   gateway's intake does both for every route), or [`Scheduler::start_unwritten`]
//!   for a job nobody pays for whose answer it waits for (and runs, through its
//!   [`Driver`]); one that streams output
//!   attaches a [`StreamTap`] to the prepared job, and one that reports its
//!   overhead a [`BackendClock`];
//! - streaming in a backend: send chunks to `Call::stream` when it is set.

mod acceptance;
mod backend;
mod breaker;
mod catalog;
mod clock;
mod config;
mod deferred;
mod driver;
mod estimate;
mod estimates;
mod executor;
mod flag;
mod hooks;
mod http;
mod job;
pub mod jobs;
mod lanes;
mod live;
mod metrics;
pub mod nodes;
mod provider;
mod providers;
mod recovery;
pub mod retention;
mod router;
mod runner;
mod scheduler;
mod stream;
mod terminal;
mod timeouts;
mod upstream;

#[cfg(test)]
mod fuzz;

pub use backend::{Backend, BackendId, BackendSet, Binding, Route};
pub use breaker::CircuitState;
pub use catalog::{
    Catalog, CatalogError, InputProblem, ModelKind, ModelSpec, Operation, ServiceSpec,
    DEFAULT_CATALOG_JSON,
};
pub use clock::BackendClock;
pub use config::{BreakerConfig, ProviderConfig, SchedulerConfig};
pub use driver::Driver;
pub use executor::{AttemptError, Call, Executed, Executor};
pub use gpubridge_protocol::media::{is_private, MediaError, MediaFetcher};
pub use hooks::{AllHooks, Expiry, JobHooks, NoHooks};
#[cfg(any(test, feature = "test-support"))]
pub use job::sample;
pub use job::{
    now_ms, Attempt, JobBilling, JobPayment, JobRecord, Origin, Progress, Routing, Settlement,
    Stopped,
};
pub use provider::Provider;
pub use retention::RetentionConfig;
pub use scheduler::{
    Cancellation, Estimate, JobRequest, PendingJob, PreparedJob, Scheduler, StartError, SubmitError,
};
pub use stream::{Disconnected, StreamReceiver, StreamTap};
pub use upstream::{HttpVersion, UpstreamTlsError};
