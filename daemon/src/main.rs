//! `gpubridge`: the GPU-Bridge daemon (scheduler + HTTP gateway in one process)
//! and its operator commands. Only the command line is parsed here; the daemon
//! itself is `gpubridge_daemon::Daemon`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gpubridge_daemon::{admin_client, Config, Daemon, Overrides};
use gpubridge_node_agent::init_logging;
use hyper::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// UDP address node agents connect to [default: 127.0.0.1:7443].
    #[arg(long)]
    nodes_addr: Option<SocketAddr>,
    /// Also run a node agent in-process over QUIC on loopback, serving `echo`.
    #[arg(long)]
    local_agent: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler and the HTTP gateway.
    Serve(ConfigArgs),
    /// Print the effective configuration (credentials masked) and exit.
    Config(ConfigArgs),
    /// Operator commands against a running daemon's admin API (token from
    /// admin.token or GPUBRIDGE_ADMIN_TOKEN).
    Admin(AdminArgs),
    /// Recompute every balance from the ledger in the data directory, without the
    /// daemon, and check it against the jobs it paid for. Exits 1 if the books do
    /// not balance.
    Audit(ConfigArgs),
    /// Join tokens for node agents.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print a new join token for `gpubridge-agent`. It pins this scheduler's
    /// certificate (made in the data directory if missing); no daemon is needed.
    Create(ConfigArgs),
    /// List issued tokens (ids and dates, never secrets).
    List(ConfigArgs),
    /// Refuse a token from now on (agents already connected stay until they
    /// reconnect: drain them with POST /admin/nodes/:id/drain).
    Revoke {
        /// The token id: the part after `gbj1.`.
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The daemon's base URL [default: http:// + http.addr].
    #[arg(long)]
    url: Option<String>,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Add credits to an account.
    Grant {
        /// Account id (acct_…) or email.
        #[arg(long)]
        account: String,
        /// Dollars to add.
        #[arg(long)]
        amount: f64,
        /// Why, kept in the ledger.
        #[arg(long)]
        note: Option<String>,
    },
    /// Show an account by id or email.
    Account { query: String },
    /// List support-assisted key recovery requests, newest first.
    Recoveries {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Audit the running daemon's ledger at one consistent snapshot.
    Audit,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            http_addr: self.http_addr,
            data_dir: self.data_dir.clone(),
            nodes_addr: self.nodes_addr,
            local_agent: self.local_agent,
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
            init_logging();
            purge_in_background();
            runtime(true)?.block_on(serve(config, &args))
        }
        Command::Admin(args) => {
            let config = args.config.load()?;
            runtime(false)?.block_on(admin(config, args.url, args.action))
        }
        Command::Audit(args) => {
            let config = args.load()?;
            runtime(false)?.block_on(audit_offline(&config))
        }
        Command::Token { action } => token(action),
    }
}

/// jemalloc returns freed memory to the OS from its own background threads,
/// not inside whichever request happens to free last: those inline purges were
/// millisecond stalls in the latency tail at 8,000 req/s (BENCHMARKS.md). An
/// operator's `MALLOC_CONF` is left exactly as given.
fn purge_in_background() {
    if std::env::var_os("MALLOC_CONF").is_some() {
        return;
    }
    // One is plenty: purging is little work, and each thread is one more to schedule.
    let one = tikv_jemalloc_ctl::max_background_threads::write(1);
    if let Err(e) = one.and_then(|()| tikv_jemalloc_ctl::background_thread::write(true)) {
        tracing::warn!(error = %e, "jemalloc background threads did not start; purging stays inline");
    }
}

fn runtime(multi_thread: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match multi_thread {
        true => tokio::runtime::Builder::new_multi_thread(),
        false => tokio::runtime::Builder::new_current_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("starting the Tokio runtime")
}

async fn serve(config: Config, args: &ConfigArgs) -> anyhow::Result<()> {
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let data_dir = config.scheduler.data_dir.clone();
    let daemon = Daemon::start(config)
        .await
        .with_context(|| format!("starting gpubridge with data in {}", data_dir.display()))?;
    // Plain lines on stdout so scripts and tests can find the ports (port 0 works).
    if let Some(addr) = daemon.nodes_addr() {
        println!("gpubridge nodes listening on quic://{addr}");
    }
    println!("gpubridge listening on {scheme}://{}", daemon.http_addr());
    tokio::select! {
        () = shutdown_signal() => {}
        () = reload_on_hangup(&daemon, args) => {}
    }
    daemon.shutdown().await;
    Ok(())
}

/// On each SIGHUP: reads the configuration again (file, environment, flags)
/// and applies what can change while running. A bad file changes nothing.
async fn reload_on_hangup(daemon: &Daemon, args: &ConfigArgs) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads are off");
                return std::future::pending().await;
            }
        };
        while hangups.recv().await.is_some() {
            match args.load() {
                Ok(config) => {
                    if let Err(e) = daemon.reload(&config) {
                        tracing::error!(error = %e, "reload incomplete");
                    }
                }
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "reload refused; nothing changed")
                }
            }
        }
    }
    std::future::pending().await
}

fn token(action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create(args) => {
            let config = args.load()?;
            let token = gpubridge_daemon::node_identity(&config.scheduler.data_dir)?
                .issue_token()
                .context("recording the new token")?;
            println!("{token}");
            eprintln!(
                "agents connect to {} (scheduler.nodes.addr); give them this token as GPUBRIDGE_AGENT_TOKEN",
                config.scheduler.nodes.addr
            );
        }
        TokenAction::List(args) => {
            let issued = gpubridge_daemon::node_identity(&args.load()?.scheduler.data_dir)?
                .issued()
                .context("reading issued tokens")?;
            println!("{}", serde_json::to_string_pretty(&issued)?);
        }
        TokenAction::Revoke { id, config } => {
            let identity = gpubridge_daemon::node_identity(&config.load()?.scheduler.data_dir)?;
            anyhow::ensure!(
                identity.revoke(&id).context("recording the revocation")?,
                "no token {id} was issued here (see gpubridge token list)"
            );
            eprintln!("token {id} revoked: agents presenting it are refused from now on");
        }
    }
    Ok(())
}

async fn admin(config: Config, url: Option<String>, action: AdminAction) -> anyhow::Result<()> {
    let token = config
        .admin
        .token
        .context("no operator token: set GPUBRIDGE_ADMIN_TOKEN (or admin.token in --config)")?;
    let base = url.unwrap_or_else(|| format!("http://{}", config.http.addr));
    let (method, path, body) = match action {
        AdminAction::Grant {
            account,
            amount,
            note,
        } => (
            Method::POST,
            "/admin/credits".to_string(),
            Some(json!({"account": account, "amount_usd": amount, "note": note})),
        ),
        AdminAction::Account { query } => {
            let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
            (Method::GET, format!("/admin/accounts/{encoded}"), None)
        }
        AdminAction::Recoveries { limit } => (
            Method::GET,
            format!("/admin/recoveries?limit={limit}"),
            None,
        ),
        AdminAction::Audit => (Method::GET, "/admin/ledger/audit".to_string(), None),
    };
    let (status, answer) = admin_client::call(&base, &token, method, &path, body.as_ref())
        .await
        .with_context(|| format!("calling {base}{path}"))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    anyhow::ensure!(status.is_success(), "the daemon answered {status}");
    Ok(())
}

async fn audit_offline(config: &Config) -> anyhow::Result<()> {
    let dir = &config.scheduler.data_dir;
    let store = gpubridge_daemon::open_read_only(dir)
        .await
        .with_context(|| format!("opening {} read-only", dir.display()))?;
    let report = gpubridge_billing::audit(&store)
        .await
        .context("reading the ledger")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.is_clean() {
        anyhow::bail!(
            "the ledger does not balance: {} problem(s)",
            report.problems.len()
        );
    }
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
