//! `gpubridge-bench`: load against GPU-Bridge on loopback. Starts a provider
//! stand-in and (unless `--gateway` is given) the real daemon, then measures the
//! same LLM request sent directly to the upstream, through `/inference`, and
//! through `/run` + `/status`, plus `/run` for `echo`. Open loop at `--rate` by
//! default; closed loop with `--clients N`; `--capacity` finds the highest rate
//! whose p99 stays under `--p99-ms`. With `--agents N` it also starts N
//! `gpubridge-agent` processes and `echo` runs on them: scheduler → QUIC →
//! agent and back. `history` measures `/account/jobs` paging at depth;
//! `fleet` measures the scheduler with up to thousands of simulated agents.

mod burst;
mod disk;
mod failures;
mod fleet;
mod load;
mod procstat;
mod queue;
mod report;
mod soak;
mod streams;
mod targets;
mod ticker;
mod timeline;
mod x402;

/// The load generator shares the machine with what it measures: glibc's
/// malloc was a tenth of its CPU at saturation (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use gpubridge_tests::chain::{x402_config, Chain};
use gpubridge_tests::{
    accounts, echo_service, providers_config, AgentProcess, Daemon, DaemonOptions, JsonClient,
    Standin,
};
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use load::{LoadResult, LoadSpec, Pacing};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
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
    /// How open-loop sends keep their schedule: `precise` (a timerfd, to the
    /// microsecond) or `timer` (Tokio's timer, on whole milliseconds: the
    /// requests due within one leave together, as before 2026-11-27).
    #[arg(long, value_enum, default_value_t = Pacing::Precise)]
    pacing: Pacing,
    /// Scenarios to run, comma separated: direct, inference, run, echo, paid,
    /// echo-run (echo jobs until completed: through agents with --agents),
    /// x402-tx and x402-eip3009 (keyless /run paid per request on a local
    /// Anvil chain: the contract's tx-hash proof, or an EIP-3009 authorization
    /// the daemon settles; compare with `paid`, the same request with a key),
    /// streams (streamed chat completions: added time to first token, gaps
    /// between chunks, concurrent streams; with --accounts, paid from one
    /// account), disk
    /// (`/inference` while the data directory's size is sampled; pair with
    /// --retention-seconds), soak (the fault-injection soak with its own
    /// daemon, stand-ins and --agents, audited from disk; run alone), burst
    /// (--burst-connections clients connect at one instant, one `/health`
    /// each: the listen backlog under a connection storm), fleet (simulated
    /// agents over QUIC, a fresh daemon per --fleet-sizes entry: join time,
    /// CPU per heartbeat, memory per agent, dispatch latency at --rate, and
    /// how fast a silent agent's jobs move; run alone), queue (--queue-jobs
    /// LLM jobs waiting on hanging providers: memory per waiting job, and
    /// /run and /status latency at --rate with the queues empty and full; run
    /// alone).
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
    /// fsync before each job is acknowledged (the daemon's default), or not.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sync_writes: bool,
    /// Closed loop: this many clients, each sending as soon as its last request
    /// was answered (instead of --rate).
    #[arg(long)]
    clients: Option<usize>,
    /// With --clients and --accounts: one account per client (default: all on one).
    #[arg(long)]
    spread_accounts: bool,
    /// Step the rate up (1000, 2000, 3000, …) and report the highest one whose
    /// p99 stays under --p99-ms with nothing failed or dropped.
    #[arg(long)]
    capacity: bool,
    /// The p99 bound of --capacity, in milliseconds.
    #[arg(long, default_value_t = 5.0)]
    p99_ms: f64,
    /// Jobs the `history` scenario puts on one account before paging through them.
    #[arg(long, default_value_t = 200_000)]
    history_jobs: u64,
    /// Run this gpubridge binary instead of the one built beside the bench (an older build).
    #[arg(long)]
    daemon_bin: Option<std::path::PathBuf>,
    /// The --daemon-bin build predates `[limits]`: its config leaves them out
    /// (and its default per-address limit applies).
    #[arg(long)]
    legacy_daemon: bool,
    /// Payments made up front for each x402 scenario (default: rate × seconds, plus 10%).
    #[arg(long)]
    x402_payments: Option<usize>,
    /// `streams`: streams at a time for the latency rounds.
    #[arg(long, default_value_t = 50)]
    stream_concurrency: usize,
    /// `streams`: the largest wave of concurrent streams tried.
    #[arg(long, default_value_t = 4000)]
    max_streams: usize,
    /// How long finished jobs keep their input and output (the daemon's
    /// `[scheduler.retention] keep_seconds`; default: the daemon's 7 days).
    #[arg(long)]
    retention_seconds: Option<u64>,
    /// `disk`: seconds between samples of the data directory's size.
    #[arg(long, default_value_t = 30)]
    sample_seconds: u64,
    /// `fleet`: the fleet sizes measured, comma separated.
    #[arg(long, default_value = "1,10,100,1000")]
    fleet_sizes: String,
    /// `fleet`: seconds of each idle window (CPU per heartbeat, memory per agent).
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// `queue`: LLM jobs left waiting across the providers.
    #[arg(long, default_value_t = 100_000)]
    queue_jobs: u64,
    /// `burst`: clients connecting at once.
    #[arg(long, default_value_t = 1024)]
    burst_connections: usize,
    /// `burst`: bursts, one after another.
    #[arg(long, default_value_t = 5)]
    burst_rounds: usize,
    /// Drive this endpoint instead of starting anything: `NAME=[SHAPE@]URL`,
    /// loopback only; repeat it to compare systems at the same rates (each
    /// rate runs on every target in turn). Ignores --scenarios.
    #[arg(long)]
    target: Vec<String>,
    /// Several targets in one flag, comma separated (`direct=URL,gw=URL`):
    /// the same as one --target each, run and compared as they are.
    #[arg(long, value_delimiter = ',')]
    compare: Vec<String>,
    /// The request shape of targets that name none: inference, run,
    /// openai-chat, openai-chat-stream.
    #[arg(long, default_value = "inference")]
    shape: String,
    /// Targets the others are compared with, comma separated: added latency
    /// is a target's minus the first baseline's that streams as it does, at
    /// the same rate and percentile [default: targets named `direct` and
    /// `direct-stream`].
    #[arg(long, value_delimiter = ',')]
    baseline: Vec<String>,
    /// Rates for --target, comma separated [default: 500, 1000, 2000, … until
    /// each target's p99 passes the largest bound].
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// --target: split each target's --seconds at a rate into this many
    /// slices, taken in turn (direct, gateway, direct, gateway …), so a
    /// passing stall of the machine lands on every target alike instead of on
    /// whichever ran during it.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// --target: before measuring, drive each target for this many seconds at
    /// the first rate, unrecorded, so connection pools (the bench's, and a
    /// gateway's to its upstream) have grown to the load.
    #[arg(long, default_value_t = 0.0)]
    warmup_seconds: f64,
    /// p99 bounds of the rate frontier, milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10")]
    p99_bounds_ms: Vec<f64>,
    /// The model asked for in --target requests.
    #[arg(long, default_value = "meta-llama/Llama-3.3-70B-Instruct")]
    model: String,
    /// Sent as `Authorization: Bearer …` to every --target.
    #[arg(long)]
    bearer: Option<String>,
    /// Writes the --target sweep here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Writes the --target sweep here as one self-contained HTML page.
    #[arg(long)]
    html: Option<std::path::PathBuf>,
    /// `soak`: kill -9s of the daemon, evenly spaced.
    #[arg(long, default_value_t = 5)]
    daemon_kills: u32,
    /// `soak`: milliseconds between faults.
    #[arg(long, default_value_t = 500)]
    fault_every_ms: u64,
    /// `soak`: seed of the fault sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const KEY: &str = "bench-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0.0 && args.seconds > 0,
        "--rate and --seconds must be positive"
    );
    if !args.target.is_empty() || !args.compare.is_empty() {
        return sweep(&args).await;
    }
    if args.scenarios.trim() == "soak" {
        let clean = soak::soak(soak::SoakArgs {
            seconds: args.seconds,
            rate: args.rate,
            agents: args.agents.max(2),
            daemon_kills: args.daemon_kills,
            fault_every_ms: args.fault_every_ms,
            seed: args.seed,
        })
        .await?;
        anyhow::ensure!(clean, "the soak's audit found discrepancies");
        return Ok(());
    }
    if args.scenarios.trim() == "fleet" {
        let fleet_args = fleet::FleetArgs {
            sizes: args
                .fleet_sizes
                .split(',')
                .map(|n| n.trim().parse::<usize>().context("--fleet-sizes"))
                .collect::<anyhow::Result<_>>()?,
            rate: args.rate,
            seconds: args.seconds,
            idle_seconds: args.idle_seconds,
            sync_writes: args.sync_writes,
            daemon_bin: args.daemon_bin.clone(),
            pacing: args.pacing,
        };
        fleet::print_header(&fleet_args);
        fleet::run(&fleet_args).await?;
        return Ok(());
    }
    if args.scenarios.trim() == "queue" {
        return queue::run(&queue::QueueArgs {
            jobs: args.queue_jobs,
            rate: args.rate,
            seconds: args.seconds,
            sync_writes: args.sync_writes,
            daemon_bin: args.daemon_bin.clone(),
            pacing: args.pacing,
        })
        .await;
    }
    let standin = match &args.gateway {
        Some(_) => Standin::start_on(args.upstream, KEY).await,
        None => Standin::start(KEY).await,
    }
    .context("starting the provider stand-in")?;
    let dir = tempfile::tempdir().context("temporary data directory")?;
    let chain = match args.x402() && args.gateway.is_none() {
        true => Some(Chain::start().await),
        false => None,
    };
    let (_daemon, _agents, gateway) = match &args.gateway {
        Some(url) => (None, Vec::new(), url.trim_end_matches('/').to_string()),
        None => start_daemon(&args, &standin, chain.as_ref(), dir.path())?,
    };
    let spec = LoadSpec {
        rate_per_second: args.rate,
        duration: Duration::from_secs(args.seconds),
        max_in_flight: args.max_in_flight,
        pacing: args.pacing,
    };
    let accounts_on = args.with_accounts() && args.gateway.is_none();
    let clients = args.clients.unwrap_or(1).max(1);
    let funded = match (accounts_on, args.spread_accounts) {
        (true, true) => funded_clients(&gateway, clients).await?,
        (true, false) => {
            vec![funded_client(&gateway, "bench@example.com").await?]
        }
        (false, _) => vec![JsonClient::new()],
    };
    let pool = Clients(Arc::new(funded));
    print_header(&args, accounts_on);
    // Warm connection pools and estimates so the first scenario is not penalised.
    let _ = pool.get(0).get(&format!("{gateway}/health")).await;
    for scenario in args.scenarios.split(',').map(str::trim) {
        if scenario == "history" {
            history(&pool, &gateway, args.history_jobs).await?;
            continue;
        }
        if scenario == "streams" {
            let account = match accounts_on {
                true => Some(funded_account(&gateway, "streams@example.com").await?.0),
                false => None,
            };
            streams::run(
                &gateway,
                &standin,
                KEY,
                account.as_ref().map(|a| a.key.as_str()),
                args.stream_concurrency,
                args.max_streams,
            )
            .await?;
            continue;
        }
        if scenario == "burst" {
            burst::run(&gateway, args.burst_connections, args.burst_rounds).await?;
            continue;
        }
        if scenario == "disk" {
            let request = scenario_request("inference", &pool, &gateway, &standin, None)?;
            let every = Duration::from_secs(args.sample_seconds.max(1));
            let result = disk::watch(dir.path().join("data"), every, request.open(&spec)).await?;
            report(scenario_name("inference"), &result);
            request.report_failures();
            continue;
        }
        let payments = payments(&args, scenario, chain.as_ref(), &gateway).await?;
        let request = scenario_request(scenario, &pool, &gateway, &standin, payments)?;
        if args.capacity {
            capacity(scenario, &spec, args.p99_ms, &request).await?;
            continue;
        }
        let result = match args.clients {
            Some(n) => load::run_closed(n, spec.duration, request.closed()).await?,
            None => request.open(&spec).await?,
        };
        report(scenario_name(scenario), &result);
        request.report_failures();
    }
    Ok(())
}

/// `--target`: drives the named endpoints, reports, writes JSON and HTML.
async fn sweep(args: &Args) -> anyhow::Result<()> {
    let shape = args.shape.parse()?;
    let targets = args
        .target
        .iter()
        .chain(&args.compare)
        .map(|t| targets::Target::parse(t, shape))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, target) in targets.iter().enumerate() {
        anyhow::ensure!(
            targets[..i].iter().all(|t| t.name != target.name),
            "two targets are named {}: each needs a name of its own",
            target.name
        );
    }
    let baselines = match args.baseline.is_empty() {
        false => args.baseline.clone(),
        true => targets
            .iter()
            .filter(|t| t.name == "direct" || t.name == "direct-stream")
            .map(|t| t.name.clone())
            .collect(),
    };
    for name in &baselines {
        anyhow::ensure!(
            targets.iter().any(|t| &t.name == name),
            "--baseline {name} is not a --target"
        );
    }
    let sweep = targets::Sweep {
        targets,
        baselines,
        model: args.model.clone(),
        bearer: args.bearer.clone(),
        rates: args.rates.clone(),
        seconds: args.seconds,
        rounds: args.rounds.max(1),
        warmup: Duration::from_secs_f64(args.warmup_seconds.max(0.0)),
        max_in_flight: args.max_in_flight,
        pacing: args.pacing,
        bounds_ms: args.p99_bounds_ms.clone(),
    };
    let report = targets::run(&sweep).await?;
    for frontier in &report.frontiers {
        let bounds: Vec<String> = frontier
            .p99_bound_ms
            .iter()
            .map(|(bound, rate)| match rate {
                Some(rate) => format!("p99 ≤ {bound} ms up to {rate} req/s"),
                None => format!("p99 ≤ {bound} ms at no rate tried"),
            })
            .collect();
        println!("frontier {:<20} {}", frontier.target, bounds.join(", "));
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report::html(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

impl Args {
    /// The `history` and x402 scenarios need accounts whatever `--accounts` says.
    fn with_accounts(&self) -> bool {
        self.accounts || self.scenarios.contains("history") || self.x402()
    }

    fn x402(&self) -> bool {
        self.scenarios.contains("x402")
    }
}

/// The payments an x402 scenario spends, made before its load starts.
async fn payments(
    args: &Args,
    scenario: &str,
    chain: Option<&Chain>,
    gateway: &str,
) -> anyhow::Result<Option<Arc<x402::Payments>>> {
    if !scenario.starts_with("x402") {
        return Ok(None);
    }
    let chain = chain.context("x402 scenarios start their own daemon and chain (no --gateway)")?;
    let count = args
        .x402_payments
        .unwrap_or((args.rate * args.seconds as f64 * 1.1) as usize + 16);
    let unpaid = JsonClient::new()
        .post_json(&format!("{gateway}/run"), &accept_body("llm-4090", 0), &[])
        .await?;
    let price: u64 = unpaid.body["accepts"][0]["maxAmountRequired"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("the 402 names no price: {}", unpaid.body))?;
    let started = std::time::Instant::now();
    let payments = match scenario {
        "x402-tx" => x402::transfers(chain, count, price).await,
        _ => x402::authorizations(chain, count, price).await,
    };
    println!(
        "{:<28} {count} payments of {price} atomic units made in {:.1} s",
        "",
        started.elapsed().as_secs_f64()
    );
    Ok(Some(Arc::new(payments)))
}

/// The daemon (and `--agents` node agents) on loopback; returns them, to keep
/// them running, and the gateway's base URL.
fn start_daemon(
    args: &Args,
    standin: &Standin,
    chain: Option<&Chain>,
    dir: &std::path::Path,
) -> anyhow::Result<(Option<Daemon>, Vec<AgentProcess>, String)> {
    let mut config = providers_config(&standin.base_url(), KEY, &["groq"]);
    if args.scenarios.contains("streams") {
        // Streams last seconds each: the stand-in's backend must not be what
        // bounds how many run at once, nor cut them short.
        config = config.replace(
            "request_timeout_seconds = 2\n",
            "request_timeout_seconds = 60\nmax_in_flight = 20000\nqueue_limit = 20000\n",
        );
    }
    if let Some(chain) = chain {
        config.push_str(&x402_config(chain, ""));
    }
    let scheduler_settings = format!("[scheduler]\nsync_writes = {}\n", args.sync_writes);
    config = config.replacen("[scheduler]\n", &scheduler_settings, 1);
    if let Some(seconds) = args.retention_seconds {
        config.push_str(&format!(
            "[scheduler.retention]\nkeep_seconds = {seconds}\n"
        ));
    }
    if args.agents > 0 {
        config = config.replacen("[scheduler]\n", "[scheduler]\nbuiltin_echo = false\n", 1);
    }
    let mut options = DaemonOptions::new(dir.join("data"));
    options.config = Some(&config);
    options.accounts = args.with_accounts();
    options.binary = args.daemon_bin.clone();
    // The load comes from one address and a few keys: the bench measures
    // routing, not the front door's refusals (builds before issue 12 know no
    // [limits], so --legacy-daemon leaves the section out).
    options.limits = args.legacy_daemon;
    options.env.push(("GPUBRIDGE_LOG".into(), "warn".into()));
    let daemon = Daemon::start(options);
    let mut agents = Vec::new();
    if args.agents > 0 {
        let token = daemon.join_token();
        let nodes = daemon.nodes_addr.clone().context("node listener")?;
        for n in 0..args.agents {
            let service = echo_service(args.agent_slots, 0);
            let agent = AgentProcess::start(dir, &format!("bench-{n}"), &nodes, &token, &service);
            agent.wait_joined();
            agents.push(agent);
        }
    }
    let base = daemon.base.clone();
    Ok((Some(daemon), agents, base))
}

fn print_header(args: &Args, accounts_on: bool) {
    let mode = match args.clients {
        Some(n) if args.spread_accounts => {
            format!("closed loop, {n} clients on their own accounts")
        }
        Some(n) => format!("closed loop, {n} clients"),
        None => format!(
            "open loop at {} req/s from the scheduled send time",
            args.rate
        ),
    };
    println!(
        "gpubridge-bench: {mode}, {} s per scenario, latency in µs, accounts {}, sync_writes {}, agents {}",
        args.seconds,
        if accounts_on { "on" } else { "off" },
        args.sync_writes,
        args.agents
    );
    println!(
        "{:<28} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "ok", "errors", "dropped", "p50", "p90", "p99", "p99.9", "max"
    );
}

/// Registers a bench account with ample credits and limit: it, and a client
/// using its key.
async fn funded_account(
    gateway: &str,
    email: &str,
) -> anyhow::Result<(accounts::TestAccount, JsonClient)> {
    accounts::unlimited(gateway, email, 100_000.0).await
}

async fn funded_client(gateway: &str, email: &str) -> anyhow::Result<JsonClient> {
    Ok(funded_account(gateway, email).await?.1)
}

/// One funded account per client.
async fn funded_clients(gateway: &str, clients: usize) -> anyhow::Result<Vec<JsonClient>> {
    let mut funded = Vec::with_capacity(clients);
    for n in 0..clients {
        funded.push(funded_client(gateway, &format!("bench{n}@example.com")).await?);
    }
    Ok(funded)
}

/// The clients requests are sent with; client `i` uses account `i` when spread.
#[derive(Clone)]
struct Clients(Arc<Vec<JsonClient>>);

impl Clients {
    fn get(&self, index: usize) -> &JsonClient {
        &self.0[index % self.0.len()]
    }
}

fn scenario_name(scenario: &str) -> &'static str {
    match scenario {
        "direct" => "direct upstream (baseline)",
        "inference" => "POST /inference",
        "run" => "POST /run + poll /status",
        "paid" => "POST /run llm (accept)",
        "echo-run" => "POST /run echo + poll",
        "x402-tx" => "POST /run llm, x402 tx-hash",
        "x402-eip3009" => "POST /run llm, x402 EIP-3009",
        _ => "POST /run echo (accept)",
    }
}

fn llm_body() -> serde_json::Value {
    json!({"prompt": "Summarize this changelog", "max_tokens": 64})
}

#[derive(Clone, Copy)]
enum Kind {
    /// The same chat completion straight to the upstream.
    Direct,
    Inference,
    /// `/run`, then poll `/status` until completed.
    RunPoll(&'static str),
    /// `/run` until the 202: validation, pricing, reservation, persistence.
    Accept(&'static str),
    /// `/run` without a key, paid with the next x402 payment.
    X402,
}

/// What one scenario sends, by client and sequence number.
#[derive(Clone)]
struct Scenario {
    kind: Kind,
    clients: Clients,
    gateway: Arc<str>,
    direct_url: Arc<str>,
    direct_auth: Arc<str>,
    /// Bodies and URLs of the requests that are the same every time, made once:
    /// the load generator shares the cores with what it measures.
    direct_body: Bytes,
    inference_url: Arc<str>,
    inference_body: Bytes,
    run_url: Arc<str>,
    /// Jobs' own execution time, read from `/status` (for agents: the QUIC dispatch round trip).
    execution: Arc<Mutex<Histogram<u64>>>,
    /// Failed answers by status (0: no answer), with the first body seen.
    failures: failures::Failures,
    /// What x402 requests pay with, and the keyless client they are sent by.
    payments: Option<Arc<x402::Payments>>,
    anonymous: JsonClient,
}

fn scenario_request(
    scenario: &str,
    clients: &Clients,
    gateway: &str,
    standin: &Standin,
    payments: Option<Arc<x402::Payments>>,
) -> anyhow::Result<Scenario> {
    let kind = match scenario {
        "direct" => Kind::Direct,
        "inference" => Kind::Inference,
        "run" => Kind::RunPoll("llm-4090"),
        "echo-run" => Kind::RunPoll("echo"),
        "echo" => Kind::Accept("echo"),
        "paid" => Kind::Accept("llm-4090"),
        "x402-tx" | "x402-eip3009" => Kind::X402,
        other => anyhow::bail!("unknown scenario {other:?}"),
    };
    Ok(Scenario {
        kind,
        clients: clients.clone(),
        gateway: gateway.into(),
        direct_url: format!("{}/chat/completions", standin.base_url()).into(),
        direct_auth: format!("Bearer {KEY}").into(),
        direct_body: json!({"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "Summarize this changelog"}], "max_tokens": 64}).to_string().into(),
        inference_url: format!("{gateway}/inference").into(),
        inference_body: llm_body().to_string().into(),
        run_url: format!("{gateway}/run").into(),
        execution: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?)),
        failures: Default::default(),
        payments,
        anonymous: JsonClient::new(),
    })
}

/// POSTs a JSON body with at most one more header; the answer's status and raw body.
async fn post(
    client: &JsonClient,
    url: &str,
    body: Bytes,
    header: Option<(&str, &str)>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(header);
    let (parts, raw) = client.exchange(Method::POST, url, &headers, body).await?;
    Ok((parts.status, raw))
}

/// The `/run` body of an accept scenario's request `n`.
fn accept_body(service: &str, n: u64) -> serde_json::Value {
    let input = match service {
        "echo" => json!({"n": n}),
        _ => json!({"prompt": format!("request {n}"), "max_tokens": 16}),
    };
    json!({"service": service, "input": input})
}

impl Scenario {
    /// Sends one request; `true` if it got the answer the scenario expects.
    async fn send(&self, client: usize, n: u64) -> bool {
        let client = self.clients.get(client);
        let (expected, reply) = match self.kind {
            Kind::Direct => (
                200,
                post(
                    client,
                    &self.direct_url,
                    self.direct_body.clone(),
                    Some(("authorization", &self.direct_auth)),
                )
                .await,
            ),
            Kind::Inference => (
                200,
                post(
                    client,
                    &self.inference_url,
                    self.inference_body.clone(),
                    None,
                )
                .await,
            ),
            Kind::RunPoll(service) => return self.run_and_poll(client, service).await,
            Kind::Accept(service) => {
                let body = accept_body(service, n).to_string();
                (202, post(client, &self.run_url, body.into(), None).await)
            }
            Kind::X402 => {
                let Some(payment) = self.payments.as_ref().and_then(|p| p.take()) else {
                    return self.failed(
                        0,
                        "the payments made up front are used up (--x402-payments)",
                    );
                };
                let body = accept_body("llm-4090", n).to_string();
                let payment = Some(("x-payment", payment));
                (
                    202,
                    post(&self.anonymous, &self.run_url, body.into(), payment).await,
                )
            }
        };
        match reply {
            Ok((status, _)) if status == expected => true,
            Ok((status, raw)) => {
                let body: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
                let error = body["error"].as_str().map(str::to_string);
                self.failed(
                    status.as_u16(),
                    &error.unwrap_or_else(|| String::from_utf8_lossy(&raw).into_owned()),
                )
            }
            Err(e) => self.failed(0, &e.to_string()),
        }
    }

    fn failed(&self, status: u16, body: &str) -> bool {
        self.failures.record(status, body)
    }

    /// Says which answers failed, once per status; forgets them.
    fn report_failures(&self) {
        self.failures.report();
    }

    async fn run_and_poll(&self, client: &JsonClient, service: &str) -> bool {
        let body = json!({"service": service, "input": llm_body()});
        let Ok(reply) = client.post_json(&self.run_url, &body, &[]).await else {
            return false;
        };
        let Some(id) = reply.body["job_id"].as_str() else {
            return false;
        };
        let status_url = format!("{}/status/{id}", self.gateway);
        for _ in 0..10_000 {
            match client.get(&status_url).await {
                Ok(r) if r.body["status"] == "completed" => {
                    if let Some(seconds) = r.body["execution_time_seconds"].as_f64() {
                        self.execution
                            .lock()
                            .saturating_record(((seconds * 1e6) as u64).max(1));
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

    fn closed(
        &self,
    ) -> impl Fn(usize, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
           + Send
           + Sync
           + 'static {
        let me = self.clone();
        move |client, n| {
            let me = me.clone();
            Box::pin(async move { me.send(client, n).await })
        }
    }

    async fn open(&self, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
        let me = self.clone();
        let clients = self.clients.0.len();
        let mut result = load::run(spec, move |n| {
            let me = me.clone();
            async move { me.send(n as usize % clients, n).await }
        })
        .await?;
        let execution = Some(self.execution.lock().clone()).filter(|h| !h.is_empty());
        result.execution_us = execution;
        Ok(result)
    }
}

/// Steps the rate up and reports each step, stopping at the first whose p99
/// passes the bound or that loses a request; the highest passing rate is the capacity.
async fn capacity(
    name: &str,
    spec: &LoadSpec,
    p99_ms: f64,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let mut best = None;
    for rate in [
        1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0, 6_000.0, 8_000.0, 10_000.0, 12_000.0,
        14_000.0, 16_000.0, 20_000.0,
    ] {
        let step = LoadSpec {
            rate_per_second: rate,
            ..*spec
        };
        let result = scenario.open(&step).await?;
        report(&format!("{} @ {rate}/s", scenario_name(name)), &result);
        scenario.report_failures();
        let p99 = result.latency_us.value_at_quantile(0.99) as f64 / 1000.0;
        if p99 > p99_ms || result.errors > 0 || result.dropped > 0 {
            break;
        }
        best = Some(rate);
    }
    match best {
        Some(rate) => println!("capacity: {rate} req/s with p99 under {p99_ms} ms"),
        None => println!("capacity: not even 1000 req/s with p99 under {p99_ms} ms"),
    }
    Ok(())
}

/// Puts `jobs` echo jobs on one account, then times `/account/jobs` at the
/// newest page, the middle and the oldest.
async fn history(clients: &Clients, gateway: &str, jobs: u64) -> anyhow::Result<()> {
    let client = clients.get(0).clone();
    let filled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let filler = {
        let (client, gateway, filled) = (client.clone(), gateway.to_string(), filled.clone());
        move |_: usize, n: u64| {
            let (client, gateway, filled) = (client.clone(), gateway.clone(), filled.clone());
            async move {
                if filled.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= jobs {
                    return true;
                }
                let body = json!({"service": "echo", "input": {"n": n}});
                matches!(client.post_json(&format!("{gateway}/run"), &body, &[]).await, Ok(r) if r.status == 202)
            }
        }
    };
    let started = std::time::Instant::now();
    while filled.load(std::sync::atomic::Ordering::Relaxed) < jobs {
        load::run_closed(64, Duration::from_secs(5), filler.clone()).await?;
    }
    println!(
        "history: {jobs} jobs on one account in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for offset in [0, jobs / 2, jobs.saturating_sub(50)] {
        let url = format!("{gateway}/account/jobs?limit=50&offset={offset}");
        let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
        let mut ok = 0u64;
        let started = std::time::Instant::now();
        for _ in 0..500 {
            let sent = std::time::Instant::now();
            if matches!(client.get(&url).await, Ok(r) if r.status == 200 && r.body["count"] == 50) {
                ok += 1;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
            }
        }
        report(
            &format!("/account/jobs offset={offset}"),
            &LoadResult {
                latency_us: latency,
                ok,
                errors: 500 - ok,
                dropped: 0,
                elapsed: started.elapsed(),
                execution_us: None,
                sent_late_us: None,
                slowest: None,
                timeline: None,
            },
        );
    }
    Ok(())
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
