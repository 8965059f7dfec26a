//! Integration-test support for GPU-Bridge: a stand-in for the hosted providers,
//! the daemon in-process or as the real binary, node agents, a local chain, a
//! webhook receiver, and a JSON client. Shared by every test in `tests/tests/`
//! and by the bench.

pub mod accounts;
mod agent;
pub mod browser;
pub mod chain;
mod client;
mod daemon;
pub mod dashboard;
pub mod disk;
pub mod facilitator;
pub mod fleet;
pub mod floor;
mod inprocess;
pub mod loopback;
pub mod multiplexed;
mod process;
pub mod receiver;
mod serve;
pub mod soak;
mod sse_client;
mod standin;
mod standin_stream;
pub mod stripe;
pub mod tls;

pub use agent::{echo_service, AgentProcess};
pub use client::{assert_envelope, exchange_on, raw_exchange, JsonClient, Reply};
pub use daemon::{binary, create_token, Daemon, DaemonOptions, ADMIN_TOKEN};
pub use inprocess::InProcess;
pub use process::ChildProcess;
pub use sse_client::{streamed_content, EventStream};
pub use standin::{Behavior, Standin};
pub use standin_stream::{streamed_text, StreamCounts, StreamPlan};

/// TOML that points every hosted provider at `base_url` with `key`, with short
/// timeouts and a quick breaker so failure tests run fast.
/// Every hosted provider the daemon has an adapter for.
pub const ALL_PROVIDERS: [&str; 6] = [
    "groq",
    "together",
    "deepinfra",
    "fireworks",
    "replicate",
    "jina",
];

pub fn providers_config(base_url: &str, key: &str, providers: &[&str]) -> String {
    let mut text = String::from(
        "[scheduler]\nallow_private_urls = true\nestimates_flush_seconds = 1\n[scheduler.breaker]\nfailure_threshold = 2\nopen_seconds = 60\n",
    );
    for provider in providers {
        text.push_str(&format!(
            "[scheduler.providers.{provider}]\napi_key = \"{key}\"\nbase_url = \"{base_url}\"\nrequest_timeout_seconds = 2\nprefer_wait_seconds = 1\n"
        ));
    }
    text
}

/// The Python of `tests/clients/.venv` (made by `.ci/setup-deps`, with the
/// unmodified client libraries pinned there) and one of the scripts beside it.
pub fn python_client(script: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients");
    (dir.join(".venv/bin/python"), dir.join(script))
}

/// `POST /run` of `service` with `input`, no extra headers.
pub async fn submit(
    client: &JsonClient,
    base: &str,
    service: &str,
    input: serde_json::Value,
) -> anyhow::Result<Reply> {
    let body = serde_json::json!({"service": service, "input": input});
    client.post_json(&format!("{base}/run"), &body, &[]).await
}

/// The value of one sample line of a scrape, `name{labels} value`.
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Polls `GET /status/:id` until the job is terminal or `seconds` pass.
pub async fn wait_terminal(
    client: &JsonClient,
    base: &str,
    id: &str,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let reply = client.get(&format!("{base}/status/{id}")).await?;
        let status = reply.body["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
            return Ok(reply.body);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("job {id} still {status} after {seconds} s: {}", reply.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
