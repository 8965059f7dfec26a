//! How long finished jobs keep their input and output. A job's terminal write
//! also indexes it under the time it expires; a sweeper walks that index in
//! time order and, once a job's time is up, deletes a job nobody owns, or
//! strips an account's job down to the summary its history shows (service,
//! times, cost, refund), which stays as long as the ledger does.

use crate::hooks::{Expiry, JobHooks};
use crate::job::{now_ms, JobRecord};
use crate::jobs::JOBS;
use crate::scheduler::Inner;
use gpubridge_protocol::JobId;
use gpubridge_store::{ReadMode, Store, StoreError, Table, View, WriteSet};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Finished jobs by `expiry (ms, big-endian) ‖ job id`; the value is [`Kept`].
pub const EXPIRING: Table = Table("jobs_expiring");

/// A job held back (its webhook still being delivered) is looked at again
/// after its retention or this, whichever is shorter.
const HOLD_MS: u64 = 60 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long a finished job keeps its input and output (default 7 days).
    pub keep_seconds: u64,
    /// At least this long for x402 jobs, whose id is their reader's token (default 24 h).
    pub x402_keep_seconds: u64,
    /// Expired jobs removed per write.
    pub sweep_batch: usize,
    /// Pause between sweeps that found nothing more to do, in ms.
    pub sweep_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_seconds: 7 * 24 * 3600,
            x402_keep_seconds: 24 * 3600,
            sweep_batch: 1024,
            sweep_interval_ms: 1000,
        }
    }
}

impl RetentionConfig {
    /// When `job`, finished, loses its input and output (Unix ms).
    pub fn expires_ms(&self, job: &JobRecord) -> u64 {
        let keep = match job.payment {
            Some(_) => self.keep_seconds.max(self.x402_keep_seconds),
            None => self.keep_seconds,
        };
        job.finished_ms
            .unwrap_or_else(now_ms)
            .saturating_add(keep.saturating_mul(1000))
    }
}

/// What stays of a job once it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kept {
    /// Nothing: no account's history shows it.
    Nothing = 0,
    /// Its summary, for its owner's history.
    Summary = 1,
}

fn key_of(expires_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&expires_ms.to_be_bytes());
    key.extend_from_slice(id);
    key
}

fn parse_key(key: &[u8]) -> Option<(u64, JobId)> {
    let expires = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let id = JobId::parse(std::str::from_utf8(key.get(8..)?).ok()?)?;
    Some((expires, id))
}

/// Indexes a finished job under its expiry; part of its terminal write.
pub(crate) fn index(writes: &mut WriteSet, job: &JobRecord, cfg: &RetentionConfig) {
    let kept = match job.owner {
        Some(_) => Kept::Summary,
        None => Kept::Nothing,
    };
    writes.put(
        EXPIRING,
        key_of(cfg.expires_ms(job), job.id.as_bytes()),
        [kept as u8],
    );
}

/// Input, output and anything else the user sent or got back, gone; the
/// summary (service, status, times, cost, settlement, attempts) stays.
fn strip(job: &mut JobRecord, now: u64) {
    job.input = String::new();
    job.output = None;
    job.progress = None;
    job.webhook_url = None;
    job.expired_ms = Some(now);
}

/// One expired entry, as read.
struct Due {
    key: Vec<u8>,
    /// `None` for an unreadable entry, which only leaves the index (rather
    /// than stop the sweep forever).
    id: Option<JobId>,
    /// Its owner's history keeps a summary (the index entry's flag).
    summary: bool,
    /// That summary's record, when it could be read.
    kept: Option<JobRecord>,
    expiry: Expiry,
}

/// The sweep's reading half: up to `batch` entries due by `now`.
fn read_due(
    view: &dyn View,
    hooks: &dyn JobHooks,
    now: u64,
    batch: usize,
) -> Result<Vec<Due>, StoreError> {
    let mut found = Vec::new();
    view.scan(EXPIRING, &[], None, &mut |key, value| {
        match parse_key(key) {
            Some((expires, _)) if expires > now => return ControlFlow::Break(()),
            entry => found.push((
                key.to_vec(),
                entry.map(|(_, id)| id),
                value.first() == Some(&1),
            )),
        }
        if found.len() >= batch {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let mut due = Vec::with_capacity(found.len());
    for (key, id, summary) in found {
        let (mut kept, mut expiry) = (None, Expiry::Proceed);
        if let Some(id) = &id {
            if summary {
                kept = view
                    .get(JOBS, id.as_bytes())?
                    .and_then(|bytes| gpubridge_store::decode::<JobRecord>(&bytes).ok());
            }
            expiry = hooks.on_expiry(view, id)?;
        }
        due.push(Due {
            key,
            id,
            summary,
            kept,
            expiry,
        });
    }
    Ok(due)
}

/// The sweep's writing half: what becomes of each entry read.
fn write_due(due: &[Due], hooks: &dyn JobHooks, now: u64, hold_ms: u64) -> WriteSet {
    let mut writes = WriteSet::new();
    for entry in due {
        writes.delete(EXPIRING, entry.key.clone());
        let Some(id) = &entry.id else {
            continue;
        };
        if entry.expiry == Expiry::Hold {
            writes.put(
                EXPIRING,
                key_of(now + hold_ms, id.as_bytes()),
                [u8::from(entry.summary)],
            );
            continue;
        }
        hooks.expire(id, &mut writes);
        match (entry.summary, &entry.kept) {
            (false, _) => writes.delete(JOBS, id.as_bytes()),
            (true, Some(job)) => {
                let mut job = job.clone();
                strip(&mut job, now);
                writes.put_record(JOBS, id.as_bytes(), &job);
            }
            // An owner's record that could not be read is left as it is.
            (true, None) => {}
        }
    }
    writes
}

/// Expires what is due by `now`, one batch; returns the ids expired.
pub(crate) async fn sweep_once(
    store: &Store,
    hooks: &Arc<dyn JobHooks>,
    cfg: &RetentionConfig,
    now: u64,
) -> Result<Vec<JobId>, StoreError> {
    let batch = cfg.sweep_batch.max(1);
    let reader = hooks.clone();
    let due = store
        .read(ReadMode::Latest, move |view| {
            read_due(view, reader.as_ref(), now, batch)
        })
        .await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let hold_ms = HOLD_MS.min(cfg.keep_seconds.saturating_mul(1000)).max(1000);
    store
        .commit(write_due(&due, hooks.as_ref(), now, hold_ms))
        .await?;
    Ok(due
        .into_iter()
        .filter(|d| d.expiry == Expiry::Proceed)
        .filter_map(|d| d.id)
        .collect())
}

/// Sweeps for as long as the scheduler exists: whole batches back to back
/// (catching up after downtime), then a pause. Expired jobs also leave the
/// in-memory cache of finished jobs.
pub(crate) fn spawn_sweeper(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(inner): Option<Arc<Inner>> = inner.upgrade() else {
                break;
            };
            let cfg = &inner.cfg.retention;
            let pause = match sweep_once(&inner.store, &inner.hooks, cfg, now_ms()).await {
                Ok(expired) => {
                    for id in &expired {
                        inner.live.forget(id);
                    }
                    inner.metrics.expired.inc_by(expired.len() as u64);
                    if expired.len() >= cfg.sweep_batch.max(1) {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(cfg.sweep_interval_ms.max(1))
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed; retrying");
                    Duration::from_millis(cfg.sweep_interval_ms.max(1000))
                }
            };
            drop(inner);
            tokio::time::sleep(pause).await;
        }
    });
}

/// Indexes every finished job of a store written before the index existed,
/// a page per commit (running it again only rewrites the same entries).
pub async fn backfill(store: &Store, cfg: &RetentionConfig) -> Result<u64, StoreError> {
    let mut start: Option<Vec<u8>> = None;
    let mut indexed = 0;
    loop {
        let page = store.page(JOBS, Vec::new(), start.take(), 1024).await?;
        let mut writes = WriteSet::new();
        for (_, bytes) in &page.items {
            match gpubridge_store::decode::<JobRecord>(bytes) {
                Ok(job) if job.status.is_terminal() && job.expired_ms.is_none() => {
                    index(&mut writes, &job, cfg);
                    indexed += 1;
                }
                _ => {}
            }
        }
        if !writes.is_empty() {
            store.commit(writes).await?;
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(indexed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::NoHooks;
    use crate::job::sample;
    use crate::jobs::{write_state, TABLES};
    use gpubridge_protocol::{AccountId, JobStatus};

    fn finished(id: &str, owner: Option<AccountId>, at: u64) -> JobRecord {
        let mut job = sample(id);
        job.status = JobStatus::Completed;
        job.output = Some(r#"{"text":"secret"}"#.into());
        job.finished_ms = Some(at);
        job.owner = owner;
        job
    }

    async fn store_with(jobs: &[JobRecord], cfg: &RetentionConfig) -> Store {
        let store = Store::memory(&TABLES);
        let mut writes = WriteSet::new();
        for job in jobs {
            write_state(&mut writes, job, cfg);
        }
        store.commit(writes).await.unwrap();
        store
    }

    #[tokio::test]
    async fn expired_jobs_lose_their_data_in_time_order() {
        let cfg = RetentionConfig {
            keep_seconds: 10,
            sweep_batch: 1,
            ..RetentionConfig::default()
        };
        let owned = finished("owned", Some(AccountId([1; 16])), 2_000);
        let open = finished("open", None, 1_000);
        let later = finished("later", None, 50_000);
        let store = store_with(&[owned.clone(), open.clone(), later.clone()], &cfg).await;
        let hooks: Arc<dyn JobHooks> = Arc::new(NoHooks);
        // Nothing is due before its time.
        assert!(sweep_once(&store, &hooks, &cfg, 10_999)
            .await
            .unwrap()
            .is_empty());
        // Batches of one, oldest expiry first.
        assert_eq!(
            sweep_once(&store, &hooks, &cfg, 12_000).await.unwrap(),
            std::slice::from_ref(&open.id)
        );
        assert_eq!(
            sweep_once(&store, &hooks, &cfg, 12_000).await.unwrap(),
            std::slice::from_ref(&owned.id)
        );
        assert!(sweep_once(&store, &hooks, &cfg, 12_000)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(crate::jobs::get(&store, &open.id).await.unwrap(), None);
        let summary = crate::jobs::get(&store, &owned.id).await.unwrap().unwrap();
        assert_eq!((summary.input.as_str(), summary.output), ("", None));
        assert_eq!(summary.expired_ms, Some(12_000));
        assert_eq!(summary.status, JobStatus::Completed);
        assert!(crate::jobs::get(&store, &later.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn x402_jobs_are_kept_at_least_their_floor() {
        let cfg = RetentionConfig {
            keep_seconds: 1,
            x402_keep_seconds: 100,
            ..RetentionConfig::default()
        };
        let mut paid = finished("paid", None, 0);
        paid.payment = Some(crate::job::JobPayment {
            proof: "p".into(),
            scheme: "tx-hash".into(),
            payer: "0x1".into(),
            amount_atomic: "1".into(),
            transaction: "0x2".into(),
            retry: false,
            retry_until_ms: None,
        });
        assert_eq!(cfg.expires_ms(&paid), 100_000);
        let store = store_with(&[paid.clone()], &cfg).await;
        let hooks: Arc<dyn JobHooks> = Arc::new(NoHooks);
        assert!(sweep_once(&store, &hooks, &cfg, 99_999)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            sweep_once(&store, &hooks, &cfg, 100_000).await.unwrap(),
            [paid.id]
        );
    }

    struct Holding;

    impl JobHooks for Holding {
        fn on_terminal(&self, _job: &mut JobRecord, _writes: &mut WriteSet) {}
        fn on_expiry(&self, _view: &dyn View, _job: &JobId) -> Result<Expiry, StoreError> {
            Ok(Expiry::Hold)
        }
    }

    #[tokio::test]
    async fn a_held_job_is_looked_at_again_later() {
        let cfg = RetentionConfig {
            keep_seconds: 7200,
            ..RetentionConfig::default()
        };
        let job = finished("held", None, 0);
        let store = store_with(std::slice::from_ref(&job), &cfg).await;
        let hooks: Arc<dyn JobHooks> = Arc::new(Holding);
        let due = 7_200_000;
        assert!(sweep_once(&store, &hooks, &cfg, due)
            .await
            .unwrap()
            .is_empty());
        assert!(crate::jobs::get(&store, &job.id).await.unwrap().is_some());
        // Moved an hour on (its retention being longer), not due again before then.
        assert!(sweep_once(&store, &hooks, &cfg, due + 1)
            .await
            .unwrap()
            .is_empty());
        let hooks: Arc<dyn JobHooks> = Arc::new(NoHooks);
        assert!(sweep_once(&store, &hooks, &cfg, due + HOLD_MS - 1)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            sweep_once(&store, &hooks, &cfg, due + HOLD_MS)
                .await
                .unwrap(),
            [job.id]
        );
    }

    #[tokio::test]
    async fn backfill_indexes_finished_jobs_only() {
        let cfg = RetentionConfig {
            keep_seconds: 1,
            ..RetentionConfig::default()
        };
        let store = Store::memory(&TABLES);
        let done = finished("done", None, 0);
        let pending = sample("pending");
        let mut writes = WriteSet::new();
        writes.put_record(JOBS, done.id.as_bytes(), &done);
        writes.put_record(JOBS, pending.id.as_bytes(), &pending);
        store.commit(writes).await.unwrap();
        assert_eq!(backfill(&store, &cfg).await.unwrap(), 1);
        let hooks: Arc<dyn JobHooks> = Arc::new(NoHooks);
        assert_eq!(
            sweep_once(&store, &hooks, &cfg, 1_000).await.unwrap(),
            [done.id]
        );
        assert!(crate::jobs::get(&store, &pending.id)
            .await
            .unwrap()
            .is_some());
    }
}
