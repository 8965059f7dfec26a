//! `gpubridge-agent`: runs beside a GPU host, joins a scheduler over QUIC with a
//! join token that also pins the scheduler's certificate, registers the services
//! it serves, sends heartbeats with GPU telemetry, and runs each job the scheduler
//! assigns on a local runtime (OpenAI-compatible server, Cog, generic HTTP, a
//! command, or echo). SIGTERM drains: running jobs finish, then it leaves.
//!
//! Where to add what: a new kind of local model server is a `RuntimeKind`
//! variant (config.rs) and a module under `runtime/` implementing its call; a
//! new message to or from the scheduler belongs in `gpubridge-protocol`'s `node`
//! module first, then `agent.rs`.

mod agent;
mod config;
mod logging;
mod runtime;
mod telemetry;
mod transport;

pub use agent::{Agent, AgentError, Exit};
pub use config::{AgentConfig, ConfigError, RuntimeKind, ServiceConfig};
pub use logging::init_logging;
pub use runtime::{Runtime, RuntimeFailure};
pub use telemetry::Telemetry;
pub use transport::{client_endpoint, PinnedCertificate, TransportError};
