//! `gpubridge-agent`: the node agent beside a GPU host.

use anyhow::Context;
use clap::Parser;
use gpubridge_node_agent::{init_logging, Agent, AgentConfig, Telemetry};
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "gpubridge-agent",
    version,
    about = "GPU-Bridge node agent: serves this host's GPUs to a scheduler over QUIC"
)]
struct Cli {
    /// TOML configuration (see node-agent/agent.example.toml).
    #[arg(long, env = "GPUBRIDGE_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Scheduler node address, host:port (overrides the file and environment).
    #[arg(long)]
    scheduler: Option<String>,
    /// Stable node id (overrides the file and environment).
    #[arg(long)]
    node_id: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = AgentConfig::load(cli.config.as_deref(), |name| std::env::var(name).ok())
        .context("loading the agent configuration")?;
    if let Some(scheduler) = cli.scheduler {
        config.scheduler = scheduler;
    }
    if let Some(node_id) = cli.node_id {
        config.node_id = node_id;
    }
    init_logging();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?
        .block_on(run(config))
}

async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let agent = Agent::new(config, Telemetry::init()).context("starting the agent")?;
    let drainer = agent.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: draining (a second signal exits at once)");
        drainer.drain();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting with jobs running");
        std::process::exit(1);
    });
    let exit = agent.run().await.context("agent stopped")?;
    tracing::info!(?exit, "agent finished");
    Ok(())
}

/// SIGTERM (systemd stop) or Ctrl-C.
async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
