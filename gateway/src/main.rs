//! `gpubridge`: the GPU-Bridge daemon (scheduler + HTTP gateway in one process).

use anyhow::Context;
use clap::{Parser, Subcommand};
use gpubridge_gateway::access::OpenAccess;
use gpubridge_gateway::{App, Config, HttpMetrics, Overrides};
use gpubridge_scheduler::{Catalog, Scheduler};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "gpubridge",
    version,
    about = "GPU-Bridge: one API for AI workloads across GPU backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// TOML configuration file; environment variables and flags override it.
    #[arg(long, env = "GPUBRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Where RocksDB keeps jobs and estimates [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler and the HTTP gateway.
    Serve(ConfigArgs),
    /// Print the effective configuration (credentials masked) and exit.
    Config(ConfigArgs),
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            http_addr: self.http_addr,
            data_dir: self.data_dir.clone(),
        };
        Config::load(
            self.config.as_deref(),
            |name| std::env::var(name).ok(),
            &overrides,
        )
        .context("loading configuration")
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(args) => {
            print!("{}", args.load()?.redacted_toml());
            Ok(())
        }
        Command::Serve(args) => {
            let config = args.load()?;
            init_tracing();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the Tokio runtime")?
                .block_on(serve(config))
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GPUBRIDGE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let catalog = match &config.scheduler.catalog_path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading catalog {}", path.display()))?;
            Catalog::from_json(&text)
                .with_context(|| format!("loading catalog {}", path.display()))?
        }
        None => Catalog::builtin().context("loading the built-in catalog")?,
    };
    let registry = prometheus::Registry::new();
    let scheduler = Scheduler::start(config.scheduler.clone(), catalog, &registry, None)
        .await
        .with_context(|| {
            format!(
                "starting the scheduler with data in {}",
                config.scheduler.data_dir.display()
            )
        })?;
    let metrics = HttpMetrics::register(&registry).context("registering HTTP metrics")?;
    let listener = tokio::net::TcpListener::bind(config.http.addr)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let live: Vec<&str> = gpubridge_scheduler::Provider::HOSTED
        .iter()
        .filter(|p| config.scheduler.is_live(**p))
        .map(|p| p.name())
        .collect();
    tracing::info!(%addr, data_dir = %config.scheduler.data_dir.display(), live_providers = ?live, "gpubridge listening");
    // One plain line on stdout so scripts and tests can find the port (port 0 works).
    println!("gpubridge listening on http://{addr}");
    let grace = Duration::from_secs(config.http.shutdown_grace_seconds);
    let app = Arc::new(App {
        scheduler: scheduler.clone(),
        access: Arc::new(OpenAccess),
        http: config.http,
        registry,
        metrics,
        started: Instant::now(),
    });
    gpubridge_gateway::serve(listener, app, shutdown_signal()).await;
    tracing::info!("HTTP closed; finishing running jobs");
    scheduler.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
