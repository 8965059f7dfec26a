//! `--scenarios fleet`: the scheduler with fleets of simulated agents
//! (`gpubridge_tests::fleet`, real QUIC from this process), one fresh daemon per
//! fleet size. For each size: how long joining takes; the daemon's CPU per
//! heartbeat and memory per agent while idle (against the same daemon before
//! any agent joined); dispatch latency — from `POST /run` sent to the
//! assignment reaching an agent — under open-loop load; and, with two agents or
//! more, how long the jobs of an agent gone silent take to reach other agents.

use crate::load::{self, LoadSpec};
use crate::procstat::{cpu_seconds, rss_bytes, start_daemon};
use anyhow::Context;
use gpubridge_protocol::node::GpuTier;
use gpubridge_tests::fleet::{Arrival, SimAgentSpec, SimFleet};
use gpubridge_tests::{Daemon, JsonClient};
use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct FleetArgs {
    pub sizes: Vec<usize>,
    /// Jobs per second during the load and the silence phases.
    pub rate: f64,
    /// Seconds of load.
    pub seconds: u64,
    /// Seconds of each idle window (CPU and memory).
    pub idle_seconds: u64,
    pub sync_writes: bool,
    pub daemon_bin: Option<PathBuf>,
    pub pacing: crate::load::Pacing,
}

/// One fleet size's figures.
pub struct FleetRow {
    agents: usize,
    join: Duration,
    /// The daemon's CPU while the fleet joined.
    join_cpu: Duration,
    idle_cpu_percent: f64,
    cpu_us_per_heartbeat: f64,
    /// What one clock tick of `/proc` CPU time is per heartbeat: the figure's resolution.
    cpu_resolution_us: f64,
    rss_mb: f64,
    kb_per_agent: f64,
    dispatch_us: Histogram<u64>,
    accept_p99_us: u64,
    failed: u64,
    silence: Option<Silence>,
}

/// What happened to the jobs of the agent that went silent.
struct Silence {
    /// Jobs it held unanswered, each of which reached another agent.
    moved: usize,
    detected: Duration,
    all_moved: Duration,
}

/// Agent `i`: 8 to 32 slots, 5 to 20 ms a job.
fn agent_spec(i: usize) -> SimAgentSpec {
    let (slots, latency_ms) = (8 + 8 * (i % 4) as u32, 5 + (i % 16) as u64);
    SimAgentSpec {
        node_id: format!("sim-{i}"),
        service: "echo".into(),
        slots,
        latency: Duration::from_millis(latency_ms),
        tier: GpuTier::Other,
    }
}

pub async fn run(args: &FleetArgs) -> anyhow::Result<Vec<FleetRow>> {
    let mut rows = Vec::new();
    for &agents in &args.sizes {
        let row = one_size(args, agents)
            .await
            .with_context(|| format!("{agents} agents"))?;
        print_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

pub fn print_header(args: &FleetArgs) {
    println!(
        "fleet: {} jobs/s of echo for {} s per size, idle windows of {} s, sync_writes {}; dispatch = /run sent to assignment at an agent",
        args.rate, args.seconds, args.idle_seconds, args.sync_writes
    );
    println!(
        "{:>6} {:>8} {:>11} {:>9} {:>14} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  silent agent: jobs moved, detected, all moved",
        "agents", "join ms", "join CPU ms", "idle CPU", "µs/beat", "RSS MB", "KB/agent", "disp p50", "disp p99", "disp max", "/run p99", "failed"
    );
}

fn print_row(row: &FleetRow) {
    let d = &row.dispatch_us;
    let silence = row.silence.as_ref().map_or_else(
        || "—".to_string(),
        |s| {
            format!(
                "{}, {} ms, {} ms",
                s.moved,
                s.detected.as_millis(),
                s.all_moved.as_millis()
            )
        },
    );
    println!(
        "{:>6} {:>8} {:>11} {:>8.1}% {:>14} {:>8.1} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>7}  {silence}",
        row.agents,
        row.join.as_millis(),
        row.join_cpu.as_millis(),
        row.idle_cpu_percent,
        format!(
            "{:.1}±{:.1}",
            row.cpu_us_per_heartbeat, row.cpu_resolution_us
        ),
        row.rss_mb,
        row.kb_per_agent,
        d.value_at_quantile(0.5),
        d.value_at_quantile(0.99),
        d.max(),
        row.accept_p99_us,
        row.failed
    );
}

async fn one_size(args: &FleetArgs, agents: usize) -> anyhow::Result<FleetRow> {
    let dir = tempfile::tempdir()?;
    let config = format!(
        "[scheduler]\nbuiltin_echo = false\nsync_writes = {}\n",
        args.sync_writes
    );
    let (daemon, pid) = start_daemon(dir.path(), &config, args.daemon_bin.clone())?;
    let idle = Duration::from_secs(args.idle_seconds.max(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (base_cpu, _) = idle_window(pid, idle, || 0).await?;
    let base_rss = rss_bytes(pid)?;

    let probe: Arc<RwLock<Option<Arc<Probe>>>> = Arc::default();
    let seen = probe.clone();
    let on_arrival = Arc::new(move |arrival: &Arrival<'_>| {
        if let Some(probe) = seen.read().as_ref() {
            probe.arrived(arrival);
        }
    });
    let token = daemon.join_token();
    let scheduler = daemon
        .nodes_addr
        .clone()
        .context("node listener")?
        .parse()?;
    let started = Instant::now();
    let specs = (0..agents).map(agent_spec).collect();
    let cpu_before = cpu_seconds(pid)?;
    let fleet = SimFleet::join(scheduler, &token, specs, on_arrival).await?;
    let join = started.elapsed();
    let join_cpu = Duration::from_secs_f64((cpu_seconds(pid)? - cpu_before).max(0.0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cpu, beats) = idle_window(pid, idle, || fleet.heartbeats()).await?;
    let rss = rss_bytes(pid)?;

    let client = JsonClient::new();
    let spec = LoadSpec {
        rate_per_second: args.rate,
        duration: Duration::from_secs(args.seconds),
        max_in_flight: 4096,
        pacing: args.pacing,
    };
    let load = Arc::new(Probe::new(&spec, false)?);
    *probe.write() = Some(load.clone());
    let result = submit(&client, &daemon, &fleet, &spec, &load).await?;
    let silence = match agents {
        0 | 1 => None,
        _ => {
            let spec = LoadSpec {
                duration: Duration::from_secs(3),
                ..spec
            };
            let watched = Arc::new(Probe::new(&spec, true)?);
            *probe.write() = Some(watched.clone());
            Some(silence_one(&client, &daemon, &fleet, &spec, &watched).await?)
        }
    };
    *probe.write() = None;
    fleet.leave().await;
    let dispatch_us = load.dispatch.lock().clone();
    Ok(FleetRow {
        agents,
        join,
        join_cpu,
        idle_cpu_percent: cpu / idle.as_secs_f64() * 100.0,
        cpu_us_per_heartbeat: (cpu - base_cpu).max(0.0) * 1e6 / beats.max(1) as f64,
        cpu_resolution_us: crate::procstat::TICK_SECONDS * 1e6 / beats.max(1) as f64,
        rss_mb: rss as f64 / 1e6,
        kb_per_agent: rss.saturating_sub(base_rss) as f64 / 1e3 / agents.max(1) as f64,
        dispatch_us,
        accept_p99_us: result.accept_p99_us,
        failed: result.failed,
        silence,
    })
}

/// The daemon's CPU seconds over `window`, and how far `count` moved meanwhile.
async fn idle_window(
    pid: u32,
    window: Duration,
    count: impl Fn() -> u64,
) -> anyhow::Result<(f64, u64)> {
    let (cpu, n) = (cpu_seconds(pid)?, count());
    tokio::time::sleep(window).await;
    Ok((cpu_seconds(pid)? - cpu, count() - n))
}

struct Submitted {
    accept_p99_us: u64,
    failed: u64,
}

/// Sends `/run` jobs for the spec's duration, then waits until agents have
/// answered as many as were accepted.
async fn submit(
    client: &JsonClient,
    daemon: &Daemon,
    fleet: &SimFleet,
    spec: &LoadSpec,
    probe: &Arc<Probe>,
) -> anyhow::Result<Submitted> {
    let answered_before = fleet.completed();
    let (client, url, sender) = (client.clone(), daemon.url("/run"), probe.clone());
    let result = load::run(spec, move |n| {
        let (client, url, probe) = (client.clone(), url.clone(), sender.clone());
        async move {
            probe.sent(n);
            let body = json!({"service": "echo", "input": {"n": n}});
            matches!(client.post_json(&url, &body, &[]).await, Ok(reply) if reply.status == 202)
        }
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.completed() - answered_before < result.ok {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {} jobs answered after 60 s",
            fleet.completed() - answered_before,
            result.ok
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Submitted {
        accept_p99_us: result.latency_us.value_at_quantile(0.99),
        failed: result.errors + result.dropped,
    })
}

/// Load for a few seconds; half a second in, the agent running the most jobs
/// goes silent. Its jobs — held when it went quiet and given to it until the
/// scheduler noticed — must each reach another agent.
async fn silence_one(
    client: &JsonClient,
    daemon: &Daemon,
    fleet: &SimFleet,
    spec: &LoadSpec,
    probe: &Arc<Probe>,
) -> anyhow::Result<Silence> {
    let silencer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let victim = fleet.busiest();
        (victim, fleet.silence(victim))
    };
    let (submitted, (victim, silenced)) =
        tokio::join!(submit(client, daemon, fleet, spec, probe), silencer);
    submitted?;
    let (closed, why) = fleet
        .closed(victim)
        .context("the silent agent was never dropped")?;
    anyhow::ensure!(
        why.contains("heartbeat"),
        "the silent agent was dropped for another reason: {why}"
    );
    let log = probe.log.lock();
    let mut moved = Vec::new();
    for (n, arrivals) in log.iter().enumerate() {
        let Some(on_silent) = arrivals.iter().find(|(agent, _)| *agent == victim) else {
            continue;
        };
        // Without a later arrival elsewhere it must have been answered before
        // the victim went quiet: it takes `latency` and checks after.
        let elsewhere = arrivals
            .iter()
            .find(|(agent, t)| *agent != victim && *t > on_silent.1);
        match elsewhere {
            Some((_, t)) => moved.push(t.duration_since(silenced)),
            None if on_silent.1 + agent_spec(victim).latency > silenced => {
                anyhow::bail!("job {n} was held by the silent agent and never moved")
            }
            None => {}
        }
    }
    Ok(Silence {
        moved: moved.len(),
        detected: closed.duration_since(silenced),
        all_moved: moved.into_iter().max().unwrap_or_default(),
    })
}

/// Send times and arrivals of one load phase's jobs, by job number.
struct Probe {
    start: Instant,
    /// Nanoseconds after `start` each job was sent; 0 until it is.
    sent_ns: Vec<AtomicU64>,
    arrived: Vec<AtomicBool>,
    dispatch: Mutex<Histogram<u64>>,
    /// Every arrival by job, when asked for (the silence phase).
    log: Mutex<Vec<Vec<(usize, Instant)>>>,
    keep_log: bool,
}

#[derive(Deserialize)]
struct Marker {
    n: usize,
}

impl Probe {
    fn new(spec: &LoadSpec, keep_log: bool) -> anyhow::Result<Probe> {
        let jobs = (spec.rate_per_second * spec.duration.as_secs_f64()).ceil() as usize + 1;
        Ok(Probe {
            start: Instant::now(),
            sent_ns: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
            arrived: (0..jobs).map(|_| AtomicBool::new(false)).collect(),
            dispatch: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
            log: Mutex::new(if keep_log {
                vec![Vec::new(); jobs]
            } else {
                Vec::new()
            }),
            keep_log,
        })
    }

    fn sent(&self, n: u64) {
        if let Some(slot) = self.sent_ns.get(n as usize) {
            slot.store(
                self.start.elapsed().as_nanos().max(1) as u64,
                Ordering::Release,
            );
        }
    }

    /// A job's first arrival counts as its dispatch; later ones (moves) are logged only.
    fn arrived(&self, arrival: &Arrival<'_>) {
        let Ok(Marker { n }) = serde_json::from_str(&arrival.assignment.input_json) else {
            return;
        };
        if self.keep_log {
            if let Some(arrivals) = self.log.lock().get_mut(n) {
                arrivals.push((arrival.agent, arrival.at));
            }
        }
        let (Some(sent), Some(first)) = (self.sent_ns.get(n), self.arrived.get(n)) else {
            return;
        };
        let sent = sent.load(Ordering::Acquire);
        if sent == 0 || first.swap(true, Ordering::AcqRel) {
            return;
        }
        let at = arrival.at.duration_since(self.start).as_nanos() as u64;
        let micros = at.saturating_sub(sent) / 1000;
        self.dispatch.lock().saturating_record(micros.max(1));
    }
}
