//! Assembling the daemon, and taking it apart again.

use crate::config::Config;
use crate::local_agent::LocalAgent;
use crate::schema;
use gpubridge_billing::card::{Cards, StripeConfigError};
use gpubridge_billing::chain::ChainError;
use gpubridge_billing::deposits::Deposits;
use gpubridge_billing::x402::{X402ConfigError, X402};
use gpubridge_billing::{AccountError, Accounts, KeyError, RulesError};
use gpubridge_gateway::access::Access;
use gpubridge_gateway::tls::{Tls, TlsError};
use gpubridge_gateway::{App, HttpMetrics, Limits};
use gpubridge_scheduler::nodes::{EndpointError, Identity, IdentityError};
use gpubridge_scheduler::{AllHooks, Catalog, JobHooks, Scheduler, StartError};
use gpubridge_store::{RocksKv, RocksOptions, Store, StoreError, StoreMetrics, Table};
use gpubridge_webhooks::{Generations, Signer, Webhooks};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every table of the store: the store's own, the job core's, billing's, the
/// webhook outbox's.
pub const TABLES: [Table; 22] = {
    let j = gpubridge_scheduler::jobs::TABLES;
    let b = gpubridge_billing::TABLES;
    let w = gpubridge_webhooks::TABLES;
    [
        Table::META,
        j[0],
        j[1],
        j[2],
        j[3],
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        w[0],
        w[1],
    ]
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("loading the catalog {path}: {reason}")]
    Catalog { path: String, reason: String },
    #[error("the store in {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("accounts settings: {0}")]
    Rules(#[from] RulesError),
    #[error("API-key digest secret: {0}")]
    KeySecret(#[from] KeyError),
    #[error("loading accounts and replaying the ledger: {0}")]
    Accounts(#[from] AccountError),
    #[error("starting the scheduler: {0}")]
    Scheduler(#[from] StartError),
    #[error("the node identity in {path}: {source}")]
    Identity { path: String, source: IdentityError },
    #[error("starting the node listener: {0}")]
    Nodes(#[from] EndpointError),
    #[error("the in-process agent: {0}")]
    LocalAgent(String),
    #[error("binding HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("x402 settings: {0}")]
    X402Config(#[from] X402ConfigError),
    #[error("stripe settings: {0}")]
    Stripe(#[from] StripeConfigError),
    #[error("x402: {0}")]
    Chain(#[from] ChainError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("http.tls: {0}")]
    Tls(#[from] TlsError),
}

/// What a reload (SIGHUP) could not apply; everything else was applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("http.tls: {0}; the certificate in use stays")]
    Tls(#[from] TlsError),
    #[error("http.tls was turned on or off: that takes a restart")]
    TlsToggled,
}

/// A running daemon: the scheduler, the node listener, the HTTP gateway.
pub struct Daemon {
    scheduler: Scheduler,
    store: Store,
    http_addr: SocketAddr,
    nodes: Option<(quinn::Endpoint, SocketAddr)>,
    local_agent: Option<LocalAgent>,
    stop_http: Option<oneshot::Sender<()>>,
    http: JoinHandle<()>,
    /// The USDC deposit watcher, when top-ups are on.
    watcher: Option<JoinHandle<()>>,
    /// Delivers finished jobs' webhooks; stopped attempts resume on restart.
    webhook_worker: JoinHandle<()>,
    grace: Duration,
    /// The gateway's state, for reloads.
    app: Arc<App>,
}

impl Daemon {
    /// Starts everything `config` asks for; returns once the gateway listens.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
        let catalog = load_catalog(config.scheduler.catalog_path.as_deref())?;
        let registry = prometheus::Registry::new();
        let store = open_current_store(&config, &registry).await?;
        let secret = server_secret(&config)?;
        let accounts = match config.accounts.enabled {
            true => Some(Arc::new(open_accounts(&config, &store, &secret).await?)),
            false => None,
        };
        let webhooks = open_webhooks(&config, &store, &secret, accounts.as_ref(), &registry)?;
        let cards = open_cards(&config, &store, accounts.as_ref())?;
        let x402 = open_x402(&config, &store).await?;
        let deposits = open_deposits(accounts.as_ref(), x402.as_ref(), &store).await?;
        let watcher = deposits.as_ref().map(|d| d.spawn_watcher());
        let hooks = job_hooks(accounts.as_ref(), x402.as_ref(), &webhooks);
        let scheduler = Scheduler::start(
            config.scheduler.clone(),
            catalog,
            store.clone(),
            &registry,
            hooks,
        )
        .await?;
        let webhook_worker = webhooks
            .start()
            .await
            .map_err(|source| DaemonError::Store {
                path: config.scheduler.data_dir.display().to_string(),
                source,
            })?;
        let (nodes, local_agent) = start_nodes(&config, &scheduler).await?;
        let bind_error = |source| DaemonError::Bind {
            addr: config.http.addr,
            source,
        };
        let listener = gpubridge_gateway::bind(config.http.addr, config.http.listen_backlog)
            .map_err(bind_error)?;
        let http_addr = listener.local_addr().map_err(bind_error)?;
        let limits = Limits::new(config.limits.clone(), &registry)?;
        let tls = config.http.tls.as_ref().map(Tls::load).transpose()?;
        let app = Arc::new(App {
            scheduler: scheduler.clone(),
            access: access(accounts.as_ref(), x402),
            accounts,
            deposits,
            cards,
            admin_token: config.admin.token.clone(),
            metrics: HttpMetrics::register(&registry)?,
            registry,
            http: config.http.clone(),
            started: Instant::now(),
            mcp: Default::default(),
            webhooks,
            dashboard: Default::default(),
            limits,
            tls: tls.map(Arc::new),
        });
        let (stop_http, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(gpubridge_gateway::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        log_started(&config, http_addr);
        Ok(Daemon {
            scheduler,
            store,
            http_addr,
            nodes,
            local_agent,
            stop_http: Some(stop_http),
            http,
            watcher,
            webhook_worker,
            grace: Duration::from_secs(config.http.shutdown_grace_seconds),
            app,
        })
    }

    /// Applies what can change while running: the TLS certificate and the
    /// request limits. Open connections keep going; new ones see the change.
    pub fn reload(&self, config: &Config) -> Result<(), ReloadError> {
        self.app.limits.reload(config.limits.clone());
        match (&self.app.tls, &config.http.tls) {
            (Some(tls), Some(files)) => tls.reload(files)?,
            (None, None) => {}
            _ => return Err(ReloadError::TlsToggled),
        }
        tracing::info!("configuration reloaded: TLS certificate and limits");
        Ok(())
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where node agents connect (UDP), when the node listener is on.
    pub fn nodes_addr(&self) -> Option<SocketAddr> {
        self.nodes.as_ref().map(|(_, addr)| *addr)
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Stops taking requests (open ones finish), gives running jobs the grace
    /// period, closes the node listener, and writes what the store has queued.
    /// Jobs still unfinished resume on the next start.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.http).await;
        tracing::info!("HTTP closed; finishing running jobs");
        self.scheduler.shutdown(self.grace).await;
        if let Some((endpoint, _)) = &self.nodes {
            endpoint.close(
                gpubridge_protocol::node::close::SHUTDOWN.into(),
                b"scheduler shutting down",
            );
        }
        if let Some(agent) = self.local_agent.take() {
            agent.stop();
        }
        // Crediting is one atomic write keyed by the deposit: stopping between
        // writes loses nothing.
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
        // An attempt cut short is unrecorded, so it is made again after restart.
        self.webhook_worker.abort();
        self.store.close().await;
        tracing::info!("stopped");
    }
}

/// The store, upgraded to this build's layout.
async fn open_current_store(
    config: &Config,
    registry: &prometheus::Registry,
) -> Result<Store, DaemonError> {
    let data_dir = &config.scheduler.data_dir;
    let store_error = |source| DaemonError::Store {
        path: data_dir.display().to_string(),
        source,
    };
    let store = open_store(data_dir, config.scheduler.sync_writes, registry)
        .await
        .map_err(store_error)?;
    schema::upgrade(&store, &config.scheduler.retention)
        .await
        .map_err(store_error)?;
    Ok(store)
}

/// How callers pay: with their account's credits (or x402 without a key), or not at all.
fn access(accounts: Option<&Arc<Accounts>>, x402: Option<Arc<X402>>) -> Access {
    match accounts {
        Some(accounts) => {
            spawn_idempotency_sweeper(Arc::downgrade(accounts));
            Access::Accounts {
                accounts: accounts.clone(),
                x402,
            }
        }
        None => {
            tracing::warn!("accounts are disabled: anyone who can reach the gateway may run jobs");
            Access::Open
        }
    }
}

fn log_started(config: &Config, addr: SocketAddr) {
    let live: Vec<&str> = gpubridge_scheduler::Provider::HOSTED
        .iter()
        .filter(|p| config.scheduler.is_live(**p))
        .map(|p| p.name())
        .collect();
    let data_dir = config.scheduler.data_dir.display();
    tracing::info!(%addr, %data_dir, live_providers = ?live, "gpubridge listening");
}

fn load_catalog(path: Option<&Path>) -> Result<Catalog, DaemonError> {
    let failed = |path: &Path, reason: String| DaemonError::Catalog {
        path: path.display().to_string(),
        reason,
    };
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| failed(path, e.to_string()))?;
            Catalog::from_json(&text).map_err(|e| failed(path, e.to_string()))
        }
        None => Catalog::builtin().map_err(|e| failed(Path::new("(built in)"), e.to_string())),
    }
}

/// Opens (creating) the RocksDB store in `data_dir`, off the async workers.
pub async fn open_store(
    data_dir: &Path,
    sync_writes: bool,
    registry: &prometheus::Registry,
) -> Result<Store, StoreError> {
    let metrics = StoreMetrics::new();
    if let Err(e) = metrics.register(registry) {
        tracing::warn!(error = %e, "store metrics not registered");
    }
    let options = RocksOptions {
        sync: sync_writes,
        ..RocksOptions::default()
    };
    let dir = data_dir.to_path_buf();
    let kv = tokio::task::spawn_blocking(move || RocksKv::open(&dir, &TABLES, options, metrics))
        .await
        .map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??;
    Ok(Store::new(Arc::new(kv)))
}

/// Opens a data directory read-only (offline audits); works while a daemon holds it.
pub async fn open_read_only(data_dir: &Path) -> Result<Store, StoreError> {
    let dir = data_dir.to_path_buf();
    let kv = tokio::task::spawn_blocking(move || RocksKv::open_read_only(&dir, &TABLES))
        .await
        .map_err(|e| StoreError::Backend(format!("opening the store: {e}")))??;
    let store = Store::new(Arc::new(kv));
    schema::check(&store).await?;
    Ok(store)
}

/// x402 when configured: connected to the chain, which must be the configured one.
async fn open_x402(config: &Config, store: &Store) -> Result<Option<Arc<X402>>, DaemonError> {
    let Some(rules) = config.x402.rules()? else {
        return Ok(None);
    };
    let relayer = config.x402.relayer()?;
    let facilitator = config.x402.facilitator()?;
    let x402 = X402::connect(rules, relayer, facilitator, store.clone()).await?;
    let rules = x402.rules();
    tracing::info!(
        chain_id = rules.chain_id,
        pay_to = %rules.pay_to,
        asset = %rules.asset,
        relayer = ?x402.chain().relayer(),
        facilitator = config.x402.facilitator_url.as_deref().unwrap_or("none"),
        screening = rules.sanctions_oracle.is_some(),
        "x402 payments on"
    );
    Ok(Some(Arc::new(x402)))
}

/// USDC top-ups, with x402's chain, for accounts.
async fn open_deposits(
    accounts: Option<&Arc<Accounts>>,
    x402: Option<&Arc<X402>>,
    store: &Store,
) -> Result<Option<Arc<Deposits>>, DaemonError> {
    let (Some(accounts), Some(x402)) = (accounts, x402) else {
        return Ok(None);
    };
    Deposits::open(x402.clone(), accounts.clone(), store.clone())
        .await
        .map_err(|source| DaemonError::Store {
            path: "crypto_topups".into(),
            source,
        })
}

/// What happens as jobs finish: accounts settle, x402 frees failed proofs,
/// webhooks enter the outbox — all in the job's terminal write.
fn job_hooks(
    accounts: Option<&Arc<Accounts>>,
    x402: Option<&Arc<X402>>,
    webhooks: &Arc<Webhooks>,
) -> Option<Arc<dyn JobHooks>> {
    let mut hooks: Vec<Arc<dyn JobHooks>> = vec![webhooks.clone()];
    if let Some(accounts) = accounts {
        hooks.push(accounts.clone());
    }
    if let Some(x402) = x402 {
        hooks.push(x402.clone());
    }
    match hooks.len() {
        0 => None,
        1 => hooks.pop(),
        _ => Some(Arc::new(AllHooks(hooks))),
    }
}

/// The server's secret: keys API-key digests and derives webhook secrets.
fn server_secret(config: &Config) -> Result<Vec<u8>, DaemonError> {
    Ok(match &config.accounts.key_hash_secret {
        Some(secret) => gpubridge_billing::check_secret(secret)?,
        None => {
            let path = config
                .accounts
                .key_secret_file
                .clone()
                .unwrap_or_else(|| config.scheduler.data_dir.join("api-key.secret"));
            gpubridge_billing::load_or_create_secret(&path)?
        }
    })
}

async fn open_accounts(
    config: &Config,
    store: &Store,
    secret: &[u8],
) -> Result<Accounts, DaemonError> {
    let rules = config.accounts.rules()?;
    Ok(Accounts::open(store.clone(), rules, secret).await?)
}

/// Card payments, and the automatic top-ups they make when a settlement leaves
/// an account below its threshold.
fn open_cards(
    config: &Config,
    store: &Store,
    accounts: Option<&Arc<Accounts>>,
) -> Result<Option<Arc<Cards>>, DaemonError> {
    let Some(accounts) = accounts else {
        return Ok(None);
    };
    let Some(cards) = Cards::open(&config.stripe, store.clone(), accounts.clone())? else {
        return Ok(None);
    };
    let cards = Arc::new(cards);
    let weak = Arc::downgrade(&cards);
    accounts.on_low_balance(Box::new(move |account| {
        if let Some(cards) = weak.upgrade() {
            cards.wake(account);
        }
    }));
    Ok(Some(cards))
}

/// The webhook outbox: secrets per account (rotations counted by billing),
/// bodies in the gateway's status shape.
fn open_webhooks(
    config: &Config,
    store: &Store,
    secret: &[u8],
    accounts: Option<&Arc<Accounts>>,
    registry: &prometheus::Registry,
) -> Result<Arc<Webhooks>, DaemonError> {
    let generations: Generations = match accounts {
        Some(accounts) => {
            let accounts = Arc::downgrade(accounts);
            Box::new(move |id| {
                accounts
                    .upgrade()
                    .map_or(0, |accounts| accounts.webhook_generation(id))
            })
        }
        None => Box::new(|_| 0),
    };
    Ok(Webhooks::new(
        store.clone(),
        config.webhooks.clone(),
        config.scheduler.allow_private_urls,
        Signer::new(secret),
        generations,
        Box::new(gpubridge_gateway::webhook_body),
        registry,
    )?)
}

/// The scheduler's identity towards node agents, kept in `<data_dir>/node`.
pub fn node_identity(data_dir: &Path) -> Result<Identity, DaemonError> {
    let dir: PathBuf = data_dir.join("node");
    Identity::load_or_create(&dir).map_err(|source| DaemonError::Identity {
        path: dir.display().to_string(),
        source,
    })
}

/// Starts the agents' QUIC listener (and the in-process agent, if asked).
async fn start_nodes(
    config: &Config,
    scheduler: &Scheduler,
) -> Result<(Option<(quinn::Endpoint, SocketAddr)>, Option<LocalAgent>), DaemonError> {
    let nodes = &config.scheduler.nodes;
    if !nodes.enabled {
        return Ok((None, None));
    }
    let identity = Arc::new(node_identity(&config.scheduler.data_dir)?);
    let pool = scheduler.nodes().clone();
    let endpoint = gpubridge_scheduler::nodes::endpoint(&identity, &pool)?;
    let addr = endpoint.local_addr().map_err(|source| DaemonError::Bind {
        addr: nodes.addr,
        source,
    })?;
    tracing::info!(%addr, "listening for node agents");
    let local_agent = match nodes.local_agent {
        true => Some(LocalAgent::start(&identity, addr).map_err(DaemonError::LocalAgent)?),
        false => None,
    };
    tokio::spawn(gpubridge_scheduler::nodes::serve(
        pool.clone(),
        identity,
        endpoint.clone(),
    ));
    if local_agent.is_some() {
        LocalAgent::wait_joined(&pool).await;
    }
    Ok((Some((endpoint, addr)), local_agent))
}

/// Forgets expired Idempotency-Keys once an hour.
fn spawn_idempotency_sweeper(accounts: Weak<Accounts>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let Some(accounts) = accounts.upgrade() else {
                return;
            };
            match accounts.sweep_idempotency().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "expired idempotency keys removed"),
                Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table left out here would fail its first write at runtime.
    #[test]
    fn the_store_opens_every_table_once() {
        let owned = gpubridge_scheduler::jobs::TABLES
            .iter()
            .chain(gpubridge_billing::TABLES.iter())
            .chain(gpubridge_webhooks::TABLES.iter());
        for table in owned {
            assert!(TABLES.contains(table), "{} missing", table.0);
        }
        let mut names: Vec<&str> = TABLES.iter().map(|t| t.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLES.len());
    }
}
