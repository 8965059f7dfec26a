//! Shared fixtures for billing's unit tests: accounts over an in-memory store,
//! settling jobs run by a real scheduler.

use crate::{Accounts, AccountsConfig};
use gpubridge_protocol::{AccountId, JobId, Micros, Priority};
use gpubridge_scheduler::{Catalog, JobHooks, Origin, PreparedJob, Scheduler, SchedulerConfig};
use gpubridge_store::{Store, Table};
use serde_json::json;
use std::sync::Arc;

pub struct Bench {
    pub store: Store,
    pub accounts: Arc<Accounts>,
    pub scheduler: Scheduler,
}

pub fn tables() -> Vec<Table> {
    let mut tables = crate::TABLES.to_vec();
    tables.extend(gpubridge_scheduler::jobs::TABLES);
    tables
}

/// Accounts (and a scheduler settling through them) on `store`.
pub async fn open_on(store: Store, config: AccountsConfig) -> Bench {
    let rules = config.rules().unwrap();
    let accounts = Arc::new(
        Accounts::open(store.clone(), rules, &[42; 32])
            .await
            .unwrap(),
    );
    let mut cfg = SchedulerConfig::default();
    cfg.nodes.enabled = false;
    let hooks = Some(accounts.clone() as Arc<dyn JobHooks>);
    let registry = prometheus::Registry::new();
    let scheduler = Scheduler::start(
        cfg,
        Catalog::builtin().unwrap(),
        store.clone(),
        &registry,
        hooks,
    )
    .await
    .unwrap();
    Bench {
        store,
        accounts,
        scheduler,
    }
}

pub async fn open() -> Bench {
    open_on(Store::memory(&tables()), AccountsConfig::default()).await
}

/// A priced `echo` job: it completes at once and is charged its "from" price.
pub fn priced(cost: u64) -> PreparedJob {
    job("echo", None, cost)
}

/// A job no backend can run: it fails, and is refunded in full.
pub fn doomed(cost: u64) -> PreparedJob {
    job("llm-4090", Some("meta-llama/Llama-3.3-70B-Instruct"), cost)
}

fn job(service: &str, model: Option<&str>, cost: u64) -> PreparedJob {
    PreparedJob {
        id: JobId::random(),
        service: service.into(),
        model: model.map(str::to_string),
        input: json!({"prompt": "hi"}),
        priority: Priority::Fast,
        origin: Origin::Run,
        webhook_url: None,
        estimated_cost: Micros(cost),
        estimated_seconds: 1.0,
        from_price: Micros(cost),
        price_per_second: Micros(0),
        billing: None,
        payment: None,
        stream: None,
        clock: None,
        max_unfinished: None,
    }
}

pub async fn funded(bench: &Bench, email: &str, micros: u64) -> AccountId {
    let (view, _) = bench.accounts.register(email).await.unwrap();
    bench
        .accounts
        .credit(view.id, Micros(micros), "test")
        .await
        .unwrap();
    view.id
}

/// Waits until every job of `ids` is terminal and settled.
pub async fn settle(bench: &Bench, ids: &[JobId]) {
    for id in ids {
        let record = bench
            .scheduler
            .wait(id, std::time::Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        assert!(record.status.is_terminal(), "{id} did not finish");
    }
}
