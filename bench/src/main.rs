//! `gpubridge-bench`: open-loop load against GPU-Bridge on loopback. Starts a
//! provider stand-in and (unless `--gateway` is given) the real daemon, then
//! measures the same LLM request sent directly to the upstream, through
//! `/inference`, and through `/run` + `/status`, plus `/run` for `echo`. With
//! `--agents N` it also starts N `gpubridge-agent` processes and `echo` runs on
//! them: scheduler → QUIC → agent and back.

mod load;

use anyhow::Context;
use clap::Parser;
use gpubridge_tests::{
    accounts, echo_service, providers_config, AgentProcess, Daemon, DaemonOptions, JsonClient,
    Standin,
};
use hdrhistogram::Histogram;
use load::{LoadResult, LoadSpec};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gpubridge-bench",
    about = "Open-loop latency benchmark for GPU-Bridge (loopback only)"
)]
struct Args {
    /// Requests per second, per scenario.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds per scenario (load stops by itself).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight at most; scheduled requests beyond it count as dropped.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: u64,
    /// Scenarios to run, comma separated: direct, inference, run, echo, paid,
    /// echo-run (echo jobs until completed: through agents with --agents).
    #[arg(long, default_value = "direct,inference,run,echo,paid")]
    scenarios: String,
    /// Use an already running gateway (its Groq base URL must point at --upstream).
    #[arg(long)]
    gateway: Option<String>,
    /// Stand-in address when --gateway is given.
    #[arg(long, default_value = "127.0.0.1:9100")]
    upstream: std::net::SocketAddr,
    /// Run the daemon with accounts: every request carries an API key and every
    /// job reserves credits (ignored with --gateway).
    #[arg(long)]
    accounts: bool,
    /// Start this many node agents serving echo (the built-in echo is then off).
    #[arg(long, default_value_t = 0)]
    agents: usize,
    /// Echo slots per agent.
    #[arg(long, default_value_t = 1024)]
    agent_slots: u32,
}

const KEY: &str = "bench-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0.0 && args.seconds > 0,
        "--rate and --seconds must be positive"
    );
    let standin = match &args.gateway {
        Some(_) => Standin::start_on(args.upstream, KEY).await,
        None => Standin::start(KEY).await,
    }
    .context("starting the provider stand-in")?;
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let mut config = providers_config(&standin.base_url(), KEY, &["groq"]);
    if args.agents > 0 {
        config = config.replacen("[scheduler]\n", "[scheduler]\nbuiltin_echo = false\n", 1);
    }
    let mut agents = Vec::new();
    let (_daemon, gateway) = match &args.gateway {
        Some(url) => (None, url.trim_end_matches('/').to_string()),
        None => {
            let mut options = DaemonOptions::new(dir.path().join("data"));
            options.config = Some(&config);
            options.accounts = args.accounts;
            options.env.push(("GPUBRIDGE_LOG".into(), "warn".into()));
            let daemon = Daemon::start(options);
            let token = daemon.join_token();
            let nodes = daemon.nodes_addr.clone().context("node listener")?;
            for n in 0..args.agents {
                let agent = AgentProcess::start(
                    dir.path(),
                    &format!("bench-{n}"),
                    &nodes,
                    &token,
                    &echo_service(args.agent_slots, 0),
                );
                agent.wait_joined();
                agents.push(agent);
            }
            let base = daemon.base.clone();
            (Some(daemon), base)
        }
    };
    let spec = LoadSpec {
        rate_per_second: args.rate,
        duration: Duration::from_secs(args.seconds),
        max_in_flight: args.max_in_flight,
    };
    let mut client = JsonClient::new();
    if args.accounts && args.gateway.is_none() {
        client = funded_client(&client, &gateway).await?;
    }
    println!(
        "gpubridge-bench: {} req/s for {} s per scenario, open loop, latency from scheduled send time (µs), accounts {}, agents {}",
        args.rate,
        args.seconds,
        if args.accounts { "on" } else { "off" },
        args.agents
    );
    println!(
        "{:<28} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "ok", "errors", "dropped", "p50", "p90", "p99", "p99.9", "max"
    );
    // Warm connection pools and estimates so the first scenario is not penalised.
    let _ = client.get(&format!("{gateway}/health")).await;
    for scenario in args.scenarios.split(',').map(str::trim) {
        let result = match scenario {
            "direct" => direct(&client, &standin, &spec).await?,
            "inference" => inference(&client, &gateway, &spec).await?,
            "run" => run_and_poll(&client, &gateway, &spec, "llm-4090").await?,
            "echo" => run_accept(&client, &gateway, &spec, "echo").await?,
            "paid" => run_accept(&client, &gateway, &spec, "llm-4090").await?,
            "echo-run" => run_and_poll(&client, &gateway, &spec, "echo").await?,
            other => anyhow::bail!("unknown scenario {other:?}"),
        };
        report(scenario_name(scenario), &result);
    }
    Ok(())
}

/// Registers a bench account with ample credits and limit; returns a client using its key.
async fn funded_client(client: &JsonClient, gateway: &str) -> anyhow::Result<JsonClient> {
    let account = accounts::register(client, gateway, "bench@example.com").await?;
    accounts::grant(client, gateway, &account.id, 100_000.0).await?;
    let funded = client.with_bearer(&account.key);
    let limit = funded
        .post_json(
            &format!("{gateway}/account/spending-limit"),
            &json!({"daily_limit": 10_000}),
            &[],
        )
        .await?;
    anyhow::ensure!(
        limit.status == 200,
        "setting the daily limit: {}",
        limit.body
    );
    Ok(funded)
}

fn scenario_name(scenario: &str) -> &'static str {
    match scenario {
        "direct" => "direct upstream (baseline)",
        "inference" => "POST /inference",
        "run" => "POST /run + poll /status",
        "paid" => "POST /run llm (accept)",
        "echo-run" => "POST /run echo + poll",
        _ => "POST /run echo (accept)",
    }
}

fn llm_body() -> serde_json::Value {
    json!({"prompt": "Summarize this changelog", "max_tokens": 64})
}

async fn direct(
    client: &JsonClient,
    standin: &Standin,
    spec: &LoadSpec,
) -> anyhow::Result<LoadResult> {
    let url = format!("{}/chat/completions", standin.base_url());
    let client = client.clone();
    load::run(spec, move |_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = json!({"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "Summarize this changelog"}], "max_tokens": 64});
            let auth = format!("Bearer {KEY}");
            matches!(client.post_json(&url, &body, &[("authorization", &auth)]).await, Ok(r) if r.status == 200)
        }
    })
    .await
}

async fn inference(
    client: &JsonClient,
    gateway: &str,
    spec: &LoadSpec,
) -> anyhow::Result<LoadResult> {
    let (client, url) = (client.clone(), format!("{gateway}/inference"));
    load::run(spec, move |_| {
        let (client, url) = (client.clone(), url.clone());
        async move { matches!(client.post_json(&url, &llm_body(), &[]).await, Ok(r) if r.status == 200) }
    })
    .await
}

/// `/run` then poll `/status` until completed. Also records each job's own
/// execution time — from the scheduler handing it to a backend to the result
/// coming back — which for agents is the QUIC dispatch round trip, free of the
/// polling's granularity.
async fn run_and_poll(
    client: &JsonClient,
    gateway: &str,
    spec: &LoadSpec,
    service: &'static str,
) -> anyhow::Result<LoadResult> {
    let (client, gateway) = (client.clone(), gateway.to_string());
    let execution = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let recorded = execution.clone();
    let result = load::run(spec, move |_| {
        let (client, gateway, execution) = (client.clone(), gateway.clone(), recorded.clone());
        async move {
            let body = json!({"service": service, "input": llm_body()});
            let Ok(reply) = client
                .post_json(&format!("{gateway}/run"), &body, &[])
                .await
            else {
                return false;
            };
            let Some(id) = reply.body["job_id"].as_str() else {
                return false;
            };
            let status_url = format!("{gateway}/status/{id}");
            for _ in 0..10_000 {
                match client.get(&status_url).await {
                    Ok(r) if r.body["status"] == "completed" => {
                        if let Some(seconds) = r.body["execution_time_seconds"].as_f64() {
                            if let Ok(mut h) = execution.lock() {
                                h.saturating_record(((seconds * 1e6) as u64).max(1));
                            }
                        }
                        return true;
                    }
                    Ok(r) if r.body["status"] == "failed" => return false,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(_) => return false,
                }
            }
            false
        }
    })
    .await?;
    let mut result = result;
    result.execution_us = execution.lock().ok().map(|h| h.clone());
    Ok(result)
}

/// `/run` until the 202 only: validation, pricing, (reservation,) persistence.
async fn run_accept(
    client: &JsonClient,
    gateway: &str,
    spec: &LoadSpec,
    service: &'static str,
) -> anyhow::Result<LoadResult> {
    let (client, url) = (client.clone(), format!("{gateway}/run"));
    load::run(spec, move |n| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let input = match service {
                "echo" => json!({"n": n}),
                _ => json!({"prompt": format!("request {n}"), "max_tokens": 16}),
            };
            let body = json!({"service": service, "input": input});
            matches!(client.post_json(&url, &body, &[]).await, Ok(r) if r.status == 202)
        }
    })
    .await
}

fn report(name: &str, result: &LoadResult) {
    let h = &result.latency_us;
    println!(
        "{:<28} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        name,
        result.ok,
        result.errors,
        result.dropped,
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    );
    if let Some(h) = &result.execution_us {
        println!(
            "{:<28} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "  of which job execution",
            h.len(),
            "",
            "",
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        );
    }
    let throughput = result.ok as f64 / result.elapsed.as_secs_f64();
    println!(
        "{:<28} {:>8.0} ok/s over {:.1} s",
        "",
        throughput,
        result.elapsed.as_secs_f64()
    );
}
