//! `gpubridge-agent`: runs beside a GPU host, joins a scheduler over QUIC with a
//! join token that also pins the scheduler's certificate, registers the services
//! it serves, sends heartbeats with GPU telemetry, and runs each job the scheduler
//! assigns on a local runtime (OpenAI-compatible server, Cog, generic HTTP, a
//! command, or echo). SIGTERM drains: running jobs finish, then it leaves.

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
