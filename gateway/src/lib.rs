//! The GPU-Bridge HTTP gateway: the hyper server and every route, turning
//! requests into scheduler and billing calls, errors into the spec's envelope.
//!
//! Where to add what:
//! - a front door that runs jobs (OpenAI-compatible routes, MCP, x402): one
//!   handler in `handlers/` that parses its request into an
//!   [`intake::IntakeRequest`] and calls [`App::intake`] — validation, pricing,
//!   payment, idempotency and persistence are the intake's;
//! - a route: its `Route` variant and path in `router.rs`, its handler in `handlers/`;
//! - a request body: a type in `requests.rs` (`deny_unknown_fields`), read with `body::read`;
//! - a response: a `Serialize` type in `views.rs`;
//! - a way to pay: a variant of [`access::Access`]; x402's HTTP side (its
//!   headers, the 402, refusals) is `x402.rs`;
//! - OpenAI-compatible routes: `openai/` (its own request shapes and error
//!   shape, SSE streaming); MCP tools: `mcp/`; the web dashboard: `dashboard/`.

pub mod access;
mod app;
mod body;
pub mod config;
mod dashboard;
mod error;
mod handlers;
mod http_metrics;
pub mod intake;
mod keepalive;
pub mod limits;
mod mcp;
mod openai;
pub mod outgoing;
mod requests;
mod router;
mod server;
pub mod tls;
mod views;
pub mod x402;

#[cfg(test)]
mod fuzz;

pub use app::App;
pub use config::{AdminConfig, HttpConfig};
pub use error::ApiError;
pub use http_metrics::HttpMetrics;
pub use limits::{Limits, LimitsConfig};
pub use mcp::Mcp;
pub use server::{bind, serve};
pub use views::webhook_body;
