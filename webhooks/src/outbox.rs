//! The outbox: deliveries waiting for their next attempt, in memory by due time
//! and on disk by job, and the worker that makes attempts as they come due.
//! A delivery enters with its job's terminal state (the same write), so a
//! finished job's webhook survives any crash; a restart reloads what is due.

use crate::config::WebhookConfig;
use crate::delivery::{Attempted, Delivery, WEBHOOKS, WEBHOOKS_DUE};
use crate::metrics::WebhookMetrics;
use crate::sender::{Envelope, Sender};
use crate::signature::{sign, Signer, WebhookSecret};
use bytes::Bytes;
use dashmap::DashMap;
use gpubridge_protocol::{AccountId, JobId};
use gpubridge_scheduler::{now_ms, Expiry, JobHooks, JobRecord};
use gpubridge_store::{ReadMode, Store, StoreError, View, WriteSet};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// How many rotations an account's secret has had (billing keeps the count).
pub type Generations = Box<dyn Fn(AccountId) -> u32 + Send + Sync>;
/// The body a job's webhook carries: its status document (the gateway's view).
pub type Render = Box<dyn Fn(&JobRecord) -> Vec<u8> + Send + Sync>;

pub struct Webhooks {
    store: Store,
    cfg: WebhookConfig,
    signer: Signer,
    generations: Generations,
    render: Render,
    sender: Sender,
    /// Deliveries not yet ended, by job.
    pending: DashMap<JobId, Delivery>,
    due: Mutex<BinaryHeap<Reverse<(u64, JobId)>>>,
    wake: Notify,
    slots: Arc<Semaphore>,
    metrics: WebhookMetrics,
}

impl Webhooks {
    /// `allow_private`: deliver to private and loopback addresses (the
    /// scheduler's `allow_private_urls`), checked after DNS at every attempt.
    pub fn new(
        store: Store,
        cfg: WebhookConfig,
        allow_private: bool,
        signer: Signer,
        generations: Generations,
        render: Render,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Webhooks>, prometheus::Error> {
        Ok(Arc::new(Webhooks {
            sender: Sender::new(allow_private, cfg.timeout()),
            slots: Arc::new(Semaphore::new(cfg.max_concurrent)),
            metrics: WebhookMetrics::register(registry)?,
            store,
            cfg,
            signer,
            generations,
            render,
            pending: DashMap::new(),
            due: Mutex::new(BinaryHeap::new()),
            wake: Notify::new(),
        }))
    }

    /// Reloads the deliveries a stop interrupted and starts the worker.
    pub async fn start(self: &Arc<Self>) -> Result<JoinHandle<()>, StoreError> {
        for delivery in self.load_due().await? {
            self.schedule(delivery);
        }
        if !self.pending.is_empty() {
            tracing::info!(
                pending = self.pending.len(),
                "resuming webhook deliveries after restart"
            );
        }
        Ok(tokio::spawn(self.clone().work()))
    }

    async fn load_due(&self) -> Result<Vec<Delivery>, StoreError> {
        let ids = self
            .store
            .read(ReadMode::Latest, |view| {
                let mut ids = Vec::new();
                view.scan(WEBHOOKS_DUE, &[], None, &mut |key, _| {
                    ids.push(key.to_vec());
                    ControlFlow::Continue(())
                })?;
                Ok(ids)
            })
            .await?;
        let found = self.store.get_many::<Delivery>(WEBHOOKS, ids).await?;
        Ok(found
            .into_iter()
            .flatten()
            .filter(Delivery::is_pending)
            .collect())
    }

    /// The secret that signs this job's webhook: its account's current one, or
    /// the job's own when no account owns it.
    pub fn secret_for(&self, owner: Option<AccountId>, job: &JobId) -> WebhookSecret {
        match owner {
            Some(account) => self.account_secret(account),
            None => self.signer.job_secret(job),
        }
    }

    pub fn account_secret(&self, account: AccountId) -> WebhookSecret {
        self.signer
            .account_secret(account, (self.generations)(account))
    }

    /// How the job's webhook stands, if it has one and its job has finished.
    pub async fn delivery(&self, job: &JobId) -> Result<Option<Delivery>, StoreError> {
        if let Some(pending) = self.pending.get(job) {
            return Ok(Some(pending.clone()));
        }
        self.store.get(WEBHOOKS, job.as_bytes().to_vec()).await
    }

    fn schedule(&self, delivery: Delivery) {
        let Some(due) = delivery.next_attempt_ms else {
            return;
        };
        self.due.lock().push(Reverse((due, delivery.job.clone())));
        self.pending.insert(delivery.job.clone(), delivery);
        self.metrics.pending.set(self.pending.len() as i64);
        self.wake.notify_one();
    }

    /// Makes attempts as they come due, at most `max_concurrent` at once.
    async fn work(self: Arc<Self>) {
        loop {
            let next = self.due.lock().peek().map(|Reverse((due, _))| *due);
            let now = now_ms();
            match next {
                None => self.wake.notified().await,
                Some(due) if due > now => {
                    let wait = Duration::from_millis(due - now);
                    let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                }
                Some(_) => {
                    let Ok(slot) = self.slots.clone().acquire_owned().await else {
                        return;
                    };
                    let Some(Reverse((_, job))) = self.due.lock().pop() else {
                        continue;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.attempt(job).await;
                        drop(slot);
                    });
                }
            }
        }
    }

    async fn attempt(&self, job: JobId) {
        let Some(mut delivery) = self.pending.get(&job).map(|d| d.clone()) else {
            return;
        };
        let attempted = match gpubridge_scheduler::jobs::get(&self.store, &job).await {
            Ok(Some(record)) => self.send(&delivery, &record).await,
            Ok(None) => Attempted::Failed {
                status: None,
                error: "the job's record is missing".into(),
            },
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "webhook: cannot read the job; retrying");
                return self.retry_soon(delivery);
            }
        };
        self.metrics.observe(&attempted);
        delivery.record(attempted, now_ms(), &self.cfg);
        let mut writes = WriteSet::new();
        writes.put_record(WEBHOOKS, job.as_bytes(), &delivery);
        if !delivery.is_pending() {
            writes.delete(WEBHOOKS_DUE, job.as_bytes());
        }
        if let Err(e) = self.store.commit(writes).await {
            // Unrecorded, the attempt is made again: receivers dedupe by job id.
            tracing::error!(job_id = %job, error = %e, "webhook: cannot record an attempt");
            delivery.attempts -= 1;
            return self.retry_soon(delivery);
        }
        tracing::info!(
            job_id = %job,
            state = delivery.state.as_str(),
            attempts = delivery.attempts,
            error = delivery.last_error.as_deref().unwrap_or(""),
            "webhook attempt"
        );
        if delivery.is_pending() {
            self.schedule(delivery);
        } else {
            self.pending.remove(&job);
            self.metrics.pending.set(self.pending.len() as i64);
        }
    }

    async fn send(&self, delivery: &Delivery, record: &JobRecord) -> Attempted {
        let body = Bytes::from((self.render)(record));
        let secret = self.secret_for(record.owner, &record.id);
        let signature = sign(&secret, now_ms() / 1000, &body);
        let event = format!("job.{}", record.status.as_str());
        let envelope = Envelope {
            signature: &signature,
            event: &event,
            job_id: record.id.as_str(),
            attempt: delivery.attempts + 1,
        };
        self.sender.post(&delivery.url, body, &envelope).await
    }

    fn retry_soon(&self, mut delivery: Delivery) {
        delivery.next_attempt_ms = Some(now_ms() + 1000);
        self.schedule(delivery);
    }
}

/// A job with a webhook enters the outbox in the same write as its terminal state.
impl JobHooks for Webhooks {
    fn on_terminal(&self, job: &mut JobRecord, writes: &mut WriteSet) {
        if let Some(delivery) = new_delivery(job) {
            writes.put_record(WEBHOOKS, job.id.as_bytes(), &delivery);
            writes.put(WEBHOOKS_DUE, job.id.as_bytes(), Vec::new());
        }
    }

    fn after_persist(&self, job: &JobRecord) {
        if let Some(delivery) = new_delivery(job) {
            self.schedule(delivery);
        }
    }

    /// A delivery still being retried needs its job's output: not yet.
    fn on_expiry(&self, view: &dyn View, job: &JobId) -> Result<Expiry, StoreError> {
        Ok(match view.get(WEBHOOKS_DUE, job.as_bytes())? {
            Some(_) => Expiry::Hold,
            None => Expiry::Proceed,
        })
    }

    fn expire(&self, job: &JobId, writes: &mut WriteSet) {
        writes.delete(WEBHOOKS, job.as_bytes());
    }
}

fn new_delivery(job: &JobRecord) -> Option<Delivery> {
    let url = job.webhook_url.clone()?;
    Some(Delivery::new(
        job.id.clone(),
        url,
        job.finished_ms.unwrap_or_else(now_ms),
    ))
}
