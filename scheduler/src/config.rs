//! Typed scheduler settings. Every field has a default that runs; the daemon fills
//! them from TOML, then the environment, then flags.

use crate::nodes::NodesConfig;
use crate::provider::Provider;
use crate::retention::RetentionConfig;
use crate::upstream::HttpVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    pub data_dir: PathBuf,
    /// fsync before a job or a payment is acknowledged, so they survive power
    /// loss and not only a crash. Writes arriving together share one fsync.
    pub sync_writes: bool,
    /// Jobs accepted but not finished, across all services; beyond it `/run` answers 503.
    pub max_live_jobs: usize,
    /// How long a finished job stays in memory for fast `/status` reads (it stays in RocksDB).
    pub finished_job_cache_seconds: u64,
    /// Most finished jobs kept in memory at once; the oldest leave first.
    pub finished_job_cache_entries: usize,
    /// Most memory those finished jobs may hold (their inputs and outputs, roughly).
    pub finished_job_cache_bytes: usize,
    /// How often learned latency and duration estimates are written to RocksDB.
    pub estimates_flush_seconds: u64,
    /// Weight of the newest observation in latency and duration averages (0..1].
    pub ewma_alpha: f64,
    pub breaker: BreakerConfig,
    /// How long finished jobs keep their input and output.
    pub retention: RetentionConfig,
    /// Allow media and webhook URLs on private, loopback and link-local addresses.
    pub allow_private_urls: bool,
    /// Largest media file fetched on a user's behalf, in bytes.
    pub max_media_bytes: usize,
    /// Largest upstream response body read, in bytes.
    pub max_upstream_body_bytes: usize,
    /// Catalog file replacing the built-in one.
    pub catalog_path: Option<PathBuf>,
    /// Serve `echo` inside the daemon. Off, `echo` runs only on node agents (load
    /// tests of the agent path turn it off).
    pub builtin_echo: bool,
    pub providers: BTreeMap<Provider, ProviderConfig>,
    pub nodes: NodesConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    /// Requests in flight per backend (provider × model) of this provider.
    pub max_in_flight: Option<u32>,
    /// Requests waiting per backend beyond those in flight.
    pub queue_limit: Option<u32>,
    /// Longest single attempt, in seconds.
    pub request_timeout_seconds: Option<f64>,
    /// Longest wait for a TCP (and TLS) connection, in ms (default 5000).
    pub connect_timeout_ms: Option<u64>,
    /// Longest wait for the response's headers once sent, in ms (default:
    /// the attempt's limit; a non-streamed answer comes after its whole work).
    pub headers_timeout_ms: Option<u64>,
    /// Longest wait for the body's first byte after the headers, in ms (default 30000).
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest silence between bytes of a body, streams included, in ms (default 30000).
    pub idle_timeout_ms: Option<u64>,
    /// Replicate only: longest `Prefer: wait` before polling, in seconds (1–60).
    pub prefer_wait_seconds: Option<u64>,
    /// `auto` (default): HTTP/2 over TLS where the provider offers it, else
    /// HTTP/1.1; `http1`; `http2` (h2c on a plain `http://` base URL).
    pub http_version: Option<HttpVersion>,
    /// Requests carried by one HTTP/2 connection before another is opened (100).
    pub max_streams_per_connection: Option<u32>,
    /// PEM file of certificate authorities trusted for this provider beside
    /// the public ones (a server behind a private CA).
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open a backend's circuit.
    pub failure_threshold: u32,
    /// How long an open circuit waits before letting one probe through.
    pub open_seconds: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_seconds: 30.0,
        }
    }
}

/// Per-backend limits after defaults are applied.
#[derive(Clone, Copy, Debug)]
pub struct BackendLimits {
    pub max_in_flight: u32,
    pub queue_limit: u32,
    pub request_timeout_seconds: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            data_dir: PathBuf::from("./data"),
            sync_writes: true,
            max_live_jobs: 100_000,
            finished_job_cache_seconds: 10,
            finished_job_cache_entries: 50_000,
            finished_job_cache_bytes: 32 * 1024 * 1024,
            estimates_flush_seconds: 5,
            ewma_alpha: 0.2,
            breaker: BreakerConfig::default(),
            retention: RetentionConfig::default(),
            allow_private_urls: false,
            max_media_bytes: 25 * 1024 * 1024,
            max_upstream_body_bytes: 64 * 1024 * 1024,
            catalog_path: None,
            builtin_echo: true,
            providers: BTreeMap::new(),
            nodes: NodesConfig::default(),
        }
    }
}

impl SchedulerConfig {
    pub fn provider(&self, provider: Provider) -> ProviderConfig {
        self.providers.get(&provider).cloned().unwrap_or_default()
    }

    pub fn limits(&self, provider: Provider) -> BackendLimits {
        self.limits_of(self.providers.get(&provider), provider == Provider::Local)
    }

    /// Limits of node fleets: they queue in their own way (agents' slots).
    pub fn fleet_limits(&self) -> BackendLimits {
        self.limits_of(None, true)
    }

    fn limits_of(&self, cfg: Option<&ProviderConfig>, local: bool) -> BackendLimits {
        let pick =
            |f: fn(&ProviderConfig) -> Option<u32>, default| cfg.and_then(f).unwrap_or(default);
        BackendLimits {
            max_in_flight: pick(|c| c.max_in_flight, if local { 4096 } else { 64 }).max(1),
            queue_limit: pick(|c| c.queue_limit, if local { 100_000 } else { 1024 }),
            request_timeout_seconds: cfg
                .and_then(|c| c.request_timeout_seconds)
                .filter(|s| s.is_finite() && *s > 0.0)
                .unwrap_or(120.0),
        }
    }

    /// A provider's phase limits: connect, headers, first byte, idle.
    pub fn phase_limits(&self, provider: Provider) -> [Duration; 4] {
        let cfg = self.provider(provider);
        let request = self.limits(provider).request_timeout_seconds;
        let ms = |value: Option<u64>, default: u64| {
            Duration::from_millis(value.unwrap_or(default).max(1))
        };
        [
            ms(cfg.connect_timeout_ms, 5_000),
            ms(cfg.headers_timeout_ms, (request * 1000.0) as u64),
            ms(cfg.first_byte_timeout_ms, 30_000),
            ms(cfg.idle_timeout_ms, 30_000),
        ]
    }

    /// The base URL in force for a provider.
    pub fn base_url(&self, provider: Provider) -> String {
        self.providers
            .get(&provider)
            .and_then(|c| c.base_url.clone())
            .unwrap_or_else(|| provider.default_base_url().to_string())
            .trim_end_matches('/')
            .to_string()
    }

    /// A hosted provider is live only with a credential; `local` unless turned off.
    pub fn is_live(&self, provider: Provider) -> bool {
        if provider == Provider::Local {
            return self.builtin_echo;
        }
        self.providers
            .get(&provider)
            .and_then(|c| c.api_key.as_deref())
            .is_some_and(|k| !k.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_without_a_key_are_not_live() {
        let mut cfg = SchedulerConfig::default();
        assert!(!cfg.is_live(Provider::Groq));
        assert!(cfg.is_live(Provider::Local));
        cfg.providers.insert(
            Provider::Groq,
            ProviderConfig {
                api_key: Some("  ".into()),
                ..Default::default()
            },
        );
        assert!(!cfg.is_live(Provider::Groq), "blank keys do not count");
        cfg.providers.get_mut(&Provider::Groq).unwrap().api_key = Some("k".into());
        assert!(cfg.is_live(Provider::Groq));
    }

    #[test]
    fn base_url_overrides_drop_trailing_slashes() {
        let mut cfg = SchedulerConfig::default();
        assert_eq!(cfg.base_url(Provider::Jina), "https://api.jina.ai/v1");
        cfg.providers.insert(
            Provider::Jina,
            ProviderConfig {
                base_url: Some("http://127.0.0.1:9/v1/".into()),
                ..Default::default()
            },
        );
        assert_eq!(cfg.base_url(Provider::Jina), "http://127.0.0.1:9/v1");
    }
}
