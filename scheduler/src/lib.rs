//! The GPU-Bridge scheduler: the service catalog and its prices, backends with
//! bounded queues and circuit breakers, fast/cheap routing with failover, provider
//! adapters, node-agent fleets over QUIC, and jobs persisted in RocksDB.

pub mod accounts;
pub mod adapters;
mod backend;
mod breaker;
mod catalog;
mod config;
mod estimate;
mod estimates;
mod hooks;
mod http;
mod job;
mod metrics;
pub mod nodes;
mod provider;
mod recovery;
mod router;
mod runner;
mod scheduler;
mod store;

pub use backend::{Backend, BackendSet, Route};
pub use breaker::CircuitState;
pub use catalog::{
    Catalog, CatalogError, InputProblem, ModelKind, ModelSpec, Operation, ServiceSpec,
    DEFAULT_CATALOG_JSON,
};
pub use config::{BreakerConfig, ProviderConfig, SchedulerConfig};
pub use gpubridge_protocol::media::{is_private, MediaError, MediaFetcher};
pub use hooks::{JobHooks, NoHooks};
pub use job::{now_ms, Attempt, JobBilling, JobRecord, Origin, Settlement};
pub use provider::Provider;
pub use scheduler::{Estimate, JobRequest, PreparedJob, Scheduler, StartError, SubmitError};
pub use store::{Batch, Store, StoreError};
