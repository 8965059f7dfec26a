//! `--scenarios queue`: a deep backlog. Every hosted provider hangs (accepts a
//! call and never answers) with 64 calls in flight each, so `--queue-jobs` LLM
//! jobs pile up waiting across the backends. Measured with the queues empty and
//! then full: the daemon's memory per waiting job, and `/run` accepts (of
//! `echo`, which runs elsewhere) and `/status` reads at `--rate`.

use crate::failures::Failures;
use crate::load::{self, LoadResult, LoadSpec};
use crate::procstat::{rss_bytes, start_daemon};
use anyhow::Context;
use gpubridge_tests::{
    providers_config, Behavior, Daemon, JsonClient, Reply, Standin, ALL_PROVIDERS,
};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "queue-bench-key";
/// Calls in flight per provider: the rest of the jobs wait.
const IN_FLIGHT: u32 = 64;
/// Clients filling the queues.
const FILLERS: usize = 32;

pub struct QueueArgs {
    pub jobs: u64,
    /// Probe requests per second (half `/run`, half `/status`).
    pub rate: f64,
    pub seconds: u64,
    pub sync_writes: bool,
    pub daemon_bin: Option<PathBuf>,
    pub pacing: crate::load::Pacing,
}

pub async fn run(args: &QueueArgs) -> anyhow::Result<()> {
    let standin = Standin::start(KEY).await.context("stand-in")?;
    standin.set_behavior(Behavior::Hang);
    let limits = format!(
        "request_timeout_seconds = 3600\nmax_in_flight = {IN_FLIGHT}\nqueue_limit = {}\n",
        args.jobs
    );
    let config = providers_config(&standin.base_url(), KEY, &ALL_PROVIDERS)
        .replace("request_timeout_seconds = 2\n", &limits)
        .replacen(
            "[scheduler]\n",
            // Room for the probes' jobs beside the backlog: at the cap, every
            // new job is refused whatever its service.
            &format!(
                "[scheduler]\nsync_writes = {}\nmax_live_jobs = {}\n",
                args.sync_writes,
                args.jobs + 10_000
            ),
            1,
        );
    let dir = tempfile::tempdir()?;
    let (daemon, pid) = start_daemon(dir.path(), &config, args.daemon_bin.clone())?;
    let client = JsonClient::new();
    let known = known_job(&client, &daemon).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "queue: {} LLM jobs waiting across {} providers ({IN_FLIGHT} in flight each, hanging); probes at {}/s for {} s, latency in µs",
        args.jobs,
        ALL_PROVIDERS.len(),
        args.rate,
        args.seconds
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "phase", "waiting", "RSS MB", "p50", "p99", "max", "failed"
    );
    let empty_rss = rss_bytes(pid)?;
    probe(args, &client, &daemon, &known, "empty", empty_rss).await?;
    let started = Instant::now();
    let filled = fill(&client, &daemon, args.jobs).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    // The allocator returns freed pages after about ten seconds: what is
    // resident then is what the waiting jobs hold.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let waiting = waiting(&client, &daemon).await?;
    let full_rss = rss_bytes(pid)?;
    probe(args, &client, &daemon, &known, "full", full_rss).await?;
    println!(
        "filled: {} accepted in {fill_seconds:.1} s ({:.0}/s; first fifth {:.0}/s, last fifth {:.0}/s); {waiting} waiting; {:.0} bytes of RSS per waiting job",
        filled.accepted,
        filled.accepted as f64 / fill_seconds,
        filled.first_fifth_per_second,
        filled.last_fifth_per_second,
        full_rss.saturating_sub(empty_rss) as f64 / waiting.max(1) as f64
    );
    Ok(())
}

/// A finished `echo` job whose status the probes read.
async fn known_job(client: &JsonClient, daemon: &Daemon) -> anyhow::Result<String> {
    let body = json!({"service": "echo", "input": {"n": 0}});
    let reply = client.post_json(&daemon.url("/run"), &body, &[]).await?;
    let id = reply.body["job_id"]
        .as_str()
        .with_context(|| format!("no job id: {}", reply.body))?
        .to_string();
    gpubridge_tests::wait_terminal(client, &daemon.base, &id, 30).await?;
    Ok(id)
}

/// `/run` of echo and `/status` of a finished job, alternately, open loop.
async fn probe(
    args: &QueueArgs,
    client: &JsonClient,
    daemon: &Daemon,
    known: &str,
    phase: &str,
    rss: u64,
) -> anyhow::Result<()> {
    let spec = LoadSpec {
        rate_per_second: args.rate / 2.0,
        duration: Duration::from_secs(args.seconds),
        max_in_flight: 4096,
        pacing: args.pacing,
    };
    let failures = Failures::default();
    let (run_client, run_url, run_failures) =
        (client.clone(), daemon.url("/run"), failures.clone());
    let accepts = load::run(&spec, move |n| {
        let (client, url) = (run_client.clone(), run_url.clone());
        let failures = run_failures.clone();
        async move {
            let body = json!({"service": "echo", "input": {"n": n}});
            expect(&failures, client.post_json(&url, &body, &[]).await, 202)
        }
    });
    let (status_client, status_url, status_failures) = (
        client.clone(),
        daemon.url(&format!("/status/{known}")),
        failures.clone(),
    );
    let reads = load::run(&spec, move |_| {
        let (client, url) = (status_client.clone(), status_url.clone());
        let failures = status_failures.clone();
        async move { expect(&failures, client.get(&url).await, 200) }
    });
    let (accepts, reads) = tokio::join!(accepts, reads);
    let waiting = waiting(client, daemon).await?;
    row(&format!("{phase}: /run echo"), waiting, rss, &accepts?);
    row(&format!("{phase}: /status"), waiting, rss, &reads?);
    failures.report();
    Ok(())
}

fn expect(failures: &Failures, reply: anyhow::Result<Reply>, status: u16) -> bool {
    match reply {
        Ok(reply) if reply.status == status => true,
        Ok(reply) => failures.record(reply.status.as_u16(), &reply.body.to_string()),
        Err(e) => failures.record(0, &e.to_string()),
    }
}

fn row(name: &str, waiting: u64, rss: u64, result: &LoadResult) {
    let h = &result.latency_us;
    println!(
        "{name:<26} {waiting:>9} {:>9.1} {:>9} {:>9} {:>9} {:>7}",
        rss as f64 / 1e6,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        result.errors + result.dropped
    );
}

/// How fast the queues filled: accepts per second over the first and the last
/// fifth of the jobs. Each accepted job is routed at once, so a pick that grew
/// with the queues' length would slow the last fifth.
struct Filled {
    accepted: u64,
    first_fifth_per_second: f64,
    last_fifth_per_second: f64,
}

/// Submits `jobs` LLM jobs as fast as [`FILLERS`] clients can.
async fn fill(client: &JsonClient, daemon: &Daemon, jobs: u64) -> anyhow::Result<Filled> {
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let fifth = (jobs / 5).max(1);
    let marks = Arc::new(parking_lot::Mutex::new(Vec::<(u64, Instant)>::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..FILLERS)
        .map(|_| {
            let (client, url) = (client.clone(), daemon.url("/run"));
            let (next, accepted, marks) = (next.clone(), accepted.clone(), marks.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < jobs {
                    let body = json!({"service": "llm-4090", "input": {"prompt": "wait", "max_tokens": 16}});
                    let reply = client.post_json(&url, &body, &[]).await?;
                    anyhow::ensure!(reply.status == 202, "refused: {}", reply.body);
                    let count = accepted.fetch_add(1, Ordering::Relaxed) + 1;
                    if count == fifth || count == jobs - fifth {
                        marks.lock().push((count, Instant::now()));
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let ended = Instant::now();
    let marks = marks.lock().clone();
    let at = |count: u64| marks.iter().find(|(c, _)| *c == count).map(|(_, t)| *t);
    let rate = |from: Instant, to: Instant| fifth as f64 / to.duration_since(from).as_secs_f64();
    Ok(Filled {
        accepted: accepted.load(Ordering::Relaxed),
        first_fifth_per_second: at(fifth).map_or(0.0, |t| rate(started, t)),
        last_fifth_per_second: at(jobs - fifth).map_or(0.0, |t| rate(t, ended)),
    })
}

/// Jobs waiting for a backend slot, summed over backends from `/metrics`.
async fn waiting(client: &JsonClient, daemon: &Daemon) -> anyhow::Result<u64> {
    let metrics = client.get(&daemon.url("/metrics")).await?;
    let text = String::from_utf8_lossy(&metrics.raw);
    Ok(text
        .lines()
        .filter(|line| line.starts_with("gpubridge_backend_queue_depth{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}
