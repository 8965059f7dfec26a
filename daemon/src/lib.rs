//! The GPU-Bridge daemon as a library: [`Config`] (TOML, then environment, then
//! flags) and [`Daemon::start`], which opens the store (migrating older
//! layouts), loads accounts, starts the scheduler, the node listener and the
//! HTTP gateway, and returns a handle to stop them. `main.rs` only parses the
//! command line; tests start the daemon in-process with the same call.
//!
//! Where to add what: a setting goes in the config struct of the crate it
//! configures (with its environment variable in `config.rs`); a component that
//! runs beside the others is started in `daemon.rs` and stopped in `Daemon::shutdown`;
//! a change to a stored layout gets a step in `schema.rs`.

pub mod admin_client;
mod config;
mod daemon;
mod local_agent;
mod schema;

#[cfg(test)]
mod config_fuzz;

pub use config::{Config, ConfigError, Overrides};
pub use daemon::{node_identity, open_read_only, open_store, Daemon, DaemonError, TABLES};
pub use schema::SCHEMA_VERSION;
