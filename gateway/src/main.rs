//! `gpubridge`: the GPU-Bridge daemon (scheduler + HTTP gateway in one process).

use anyhow::Context;
use clap::{Parser, Subcommand};
use gpubridge_gateway::access::{Access, AccountAccess, OpenAccess};
use gpubridge_gateway::{admin_client, AccountRoutes, App, Config, HttpMetrics, Overrides};
use gpubridge_node_agent::{init_logging, Agent, AgentConfig, Telemetry};
use gpubridge_scheduler::accounts::{self, Accounts};
use gpubridge_scheduler::nodes::Identity;
use gpubridge_scheduler::{Catalog, JobHooks, Scheduler, Store};
use hyper::Method;
use serde_json::json;
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
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the Tokio runtime")?
                .block_on(serve(config))
        }
        Command::Admin(args) => {
            let config = args.config.load()?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the Tokio runtime")?
                .block_on(admin(config, args.url, args.action))
        }
        Command::Audit(args) => audit_offline(&args.load()?),
        Command::Token { action } => token(action),
    }
}

fn token(action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create(args) => {
            let config = args.load()?;
            let token = node_identity(&config)?
                .issue_token()
                .context("recording the new token")?;
            println!("{token}");
            eprintln!(
                "agents connect to {} (scheduler.nodes.addr); give them this token as GPUBRIDGE_AGENT_TOKEN",
                config.scheduler.nodes.addr
            );
        }
        TokenAction::List(args) => {
            let issued = node_identity(&args.load()?)?
                .issued()
                .context("reading issued tokens")?;
            println!("{}", serde_json::to_string_pretty(&issued)?);
        }
        TokenAction::Revoke { id, config } => {
            let identity = node_identity(&config.load()?)?;
            anyhow::ensure!(
                identity.revoke(&id).context("recording the revocation")?,
                "no token {id} was issued here (see gpubridge token list)"
            );
            eprintln!("token {id} revoked: agents presenting it are refused from now on");
        }
    }
    Ok(())
}

fn node_identity(config: &Config) -> anyhow::Result<Identity> {
    let dir = config.scheduler.data_dir.join("node");
    Identity::load_or_create(&dir)
        .with_context(|| format!("loading the node identity in {}", dir.display()))
}

/// Starts the agents' QUIC listener (and the in-process agent, if asked);
/// returns the endpoint to close at shutdown.
async fn start_nodes(
    config: &Config,
    scheduler: &Scheduler,
) -> anyhow::Result<Option<quinn::Endpoint>> {
    let nodes = &config.scheduler.nodes;
    if !nodes.enabled {
        return Ok(None);
    }
    let identity = Arc::new(node_identity(config)?);
    let pool = scheduler.nodes().clone();
    let endpoint = gpubridge_scheduler::nodes::endpoint(&identity, &pool)
        .context("starting the node listener")?;
    let addr = endpoint.local_addr().context("reading the node address")?;
    tracing::info!(%addr, "listening for node agents");
    println!("gpubridge nodes listening on quic://{addr}");
    if nodes.local_agent {
        start_local_agent(&identity, addr)?;
    }
    tokio::spawn(gpubridge_scheduler::nodes::serve(
        pool.clone(),
        identity,
        endpoint.clone(),
    ));
    if nodes.local_agent {
        // Let echo be live before the first request arrives.
        let joined = async {
            while pool.sessions().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("the local agent has not joined yet");
        }
    }
    Ok(Some(endpoint))
}

fn start_local_agent(identity: &Identity, addr: SocketAddr) -> anyhow::Result<()> {
    let mut agent_config = AgentConfig {
        scheduler: SocketAddr::from(([127, 0, 0, 1], addr.port())).to_string(),
        token: Some(identity.create_token().to_string()),
        node_id: "local".into(),
        ..AgentConfig::default()
    };
    agent_config.services.insert(
        "echo".into(),
        toml::from_str("runtime = \"echo\"\nslots = 1024").context("local agent service")?,
    );
    let agent = Agent::new(agent_config, Telemetry::none()).context("starting the local agent")?;
    tokio::spawn(async move {
        if let Err(e) = agent.run().await {
            tracing::error!(error = %e, "the local agent stopped");
        }
    });
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

fn audit_offline(config: &Config) -> anyhow::Result<()> {
    let dir = &config.scheduler.data_dir;
    let store = Store::open_read_only(dir)
        .with_context(|| format!("opening {} read-only", dir.display()))?;
    let report = accounts::audit(&store).context("reading the ledger")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.is_clean() {
        anyhow::bail!(
            "the ledger does not balance: {} problem(s)",
            report.problems.len()
        );
    }
    Ok(())
}

fn open_accounts(config: &Config, store: Arc<Store>) -> anyhow::Result<Accounts> {
    let rules = config.accounts.rules().context("accounts settings")?;
    let secret = match &config.accounts.key_hash_secret {
        Some(secret) => accounts::check_secret(secret)?,
        None => {
            let path = config
                .accounts
                .key_secret_file
                .clone()
                .unwrap_or_else(|| config.scheduler.data_dir.join("api-key.secret"));
            accounts::load_or_create_secret(&path)?
        }
    };
    Accounts::open(store, rules, &secret).context("loading accounts and replaying the ledger")
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
    let data_dir = &config.scheduler.data_dir;
    let store = Arc::new(
        Store::open(data_dir, config.scheduler.sync_writes)
            .with_context(|| format!("opening the store in {}", data_dir.display()))?,
    );
    let accounts = match config.accounts.enabled {
        true => Some(Arc::new(open_accounts(&config, store.clone())?)),
        false => None,
    };
    let hooks = accounts.clone().map(|a| a as Arc<dyn JobHooks>);
    let scheduler = Scheduler::start(config.scheduler.clone(), catalog, store, &registry, hooks)
        .await
        .with_context(|| {
            format!(
                "starting the scheduler with data in {}",
                config.scheduler.data_dir.display()
            )
        })?;
    let nodes_endpoint = start_nodes(&config, &scheduler).await?;
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
    let (access, account_routes): (Arc<dyn Access>, _) = match accounts {
        Some(accounts) => {
            spawn_idempotency_sweeper(Arc::downgrade(&accounts));
            let access = Arc::new(AccountAccess {
                accounts: accounts.clone(),
            });
            (access.clone(), Some(AccountRoutes { accounts, access }))
        }
        None => {
            tracing::warn!("accounts are disabled: anyone who can reach the gateway may run jobs");
            (Arc::new(OpenAccess), None)
        }
    };
    let app = Arc::new(App {
        scheduler: scheduler.clone(),
        access,
        accounts: account_routes,
        admin_token: config.admin.token.clone(),
        http: config.http,
        registry,
        metrics,
        started: Instant::now(),
    });
    gpubridge_gateway::serve(listener, app, shutdown_signal()).await;
    tracing::info!("HTTP closed; finishing running jobs");
    scheduler.shutdown(grace).await;
    if let Some(endpoint) = nodes_endpoint {
        endpoint.close(
            gpubridge_protocol::node::close::SHUTDOWN.into(),
            b"scheduler shutting down",
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Forgets expired Idempotency-Keys once an hour.
fn spawn_idempotency_sweeper(accounts: std::sync::Weak<Accounts>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let Some(accounts) = accounts.upgrade() else {
                return;
            };
            match accounts.sweep_idempotency() {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "expired idempotency keys removed"),
                Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
            }
        }
    });
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
