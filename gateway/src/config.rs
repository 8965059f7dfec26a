//! The gateway's own settings: where it listens and what it accepts.

use hyper::header::HOST;
use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Largest body of a request that runs a job (`/run`, `/inference`,
    /// `/v1/*`, `/mcp`), in bytes.
    pub max_body_bytes: usize,
    /// Largest body of every other route (accounts, dashboard forms, admin).
    pub max_small_body_bytes: usize,
    /// Time a client has to send a whole request body, once its headers are in.
    pub body_read_timeout_ms: u64,
    /// How long `/inference` waits for a result before answering `pending`.
    pub inline_wait_ms: u64,
    /// Time a client has to send a request's head: from the accept, or from
    /// its first byte after the connection idled. Also the TLS handshake's limit.
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection (HTTP/1.1 or HTTP/2) may stay open
    /// with no request; above the 90 s idle limit of common clients' pools, so
    /// that they close first rather than race the close with a request.
    pub keep_alive_idle_ms: u64,
    /// Connections served at once; beyond it new ones wait to be accepted.
    pub max_connections: usize,
    /// Connections the kernel queues before they are accepted (`listen(2)`'s
    /// backlog, capped by `net.core.somaxconn`). The OS default of 128 makes
    /// a burst of a few hundred clients wait a 1 s SYN retransmit.
    pub listen_backlog: u32,
    /// Requests one HTTP/2 connection may have open at once.
    pub max_streams_per_connection: u32,
    /// TLS with these files; unset, plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// On SIGTERM: how long running jobs may take to finish before exit.
    pub shutdown_grace_seconds: u64,
    /// The URL clients reach this gateway at (`https://api.example.com`), for
    /// URLs it names, such as the `resource` an x402 payment pays for; unset,
    /// `http://` and the request's Host.
    pub public_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 10 * 1024 * 1024,
            max_small_body_bytes: 64 * 1024,
            body_read_timeout_ms: 30_000,
            inline_wait_ms: 25_000,
            header_read_timeout_ms: 10_000,
            keep_alive_idle_ms: 120_000,
            max_connections: 10_000,
            listen_backlog: 4096,
            max_streams_per_connection: 256,
            tls: None,
            shutdown_grace_seconds: 30,
            public_url: None,
        }
    }
}

impl HttpConfig {
    /// Where clients reach this gateway: `public_url` without its trailing
    /// `/`, else the scheme served and the request's Host (`localhost`
    /// without one). URLs it names (x402's `resource`, Checkout's return) use it.
    pub fn public_base(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.public_url {
            return base.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.is_ascii())
            .unwrap_or("localhost");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/*` and `gpubridge admin` (at least 16 characters);
    /// unset disables the admin API. `GPUBRIDGE_ADMIN_TOKEN` overrides it.
    pub token: Option<String>,
}
