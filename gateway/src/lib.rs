//! The GPU-Bridge HTTP gateway: turns `/run`, `/inference`, `/status`, `/catalog`
//! and operator endpoints into scheduler calls, with the spec's error envelope.

pub mod access;
pub mod admin_client;
mod app;
mod body;
pub mod config;
mod error;
mod handlers;
mod http_metrics;
mod server;
mod views;

pub use app::App;
pub use config::{AdminConfig, Config, ConfigError, HttpConfig, Overrides};
pub use error::ApiError;
pub use handlers::account::AccountRoutes;
pub use http_metrics::HttpMetrics;
pub use server::serve;
