//! The store's layout version, and the steps that bring an older store up to
//! date. Each step is safe to run again after a crash part-way: every page it
//! rewrites is committed together with the note of how far it got.

use gpubridge_billing::tables::{ACCOUNTS, IDEMPOTENCY, LEDGER, RECOVERIES};
use gpubridge_scheduler::jobs::JOBS;
use gpubridge_scheduler::RetentionConfig;
use gpubridge_store::{ReadMode, Store, StoreError, Table, WriteSet};

/// 1: the first release (records without versions, history keyed by time).
/// 2: every record starts with its version; history is numbered per account.
/// 3: finished jobs are indexed by the time their data expires.
pub const SCHEMA_VERSION: u32 = 3;

const SCHEMA_KEY: &[u8] = b"schema";

async fn read_schema(store: &Store) -> Result<Option<u32>, StoreError> {
    let raw = store
        .read(ReadMode::Latest, |view| view.get(Table::META, SCHEMA_KEY))
        .await?;
    raw.map(|bytes| {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or(StoreError::Schema {
                found: 0,
                supported: SCHEMA_VERSION,
            })
    })
    .transpose()
}

async fn write_schema(store: &Store, version: u32) -> Result<(), StoreError> {
    let mut writes = WriteSet::new();
    writes.put(Table::META, SCHEMA_KEY, version.to_string());
    store.commit(writes).await
}

/// Brings a store opened for writing to [`SCHEMA_VERSION`], one layout at a time.
pub async fn upgrade(store: &Store, retention: &RetentionConfig) -> Result<(), StoreError> {
    let Some(mut found) = read_schema(store).await? else {
        return write_schema(store, SCHEMA_VERSION).await;
    };
    while found < SCHEMA_VERSION {
        tracing::info!("upgrading the store from layout {found} to {}", found + 1);
        match found {
            1 => {
                for table in [JOBS, ACCOUNTS, LEDGER, IDEMPOTENCY, RECOVERIES] {
                    gpubridge_store::add_version_bytes(store, table, "upgrade-2").await?;
                }
                gpubridge_billing::upgrade_history_layout_1(store).await?;
            }
            2 => {
                let indexed = gpubridge_scheduler::retention::backfill(store, retention).await?;
                tracing::info!(indexed, "finished jobs indexed for retention");
            }
            _ => break,
        }
        found += 1;
        write_schema(store, found).await?;
    }
    match found {
        SCHEMA_VERSION => Ok(()),
        found => Err(StoreError::Schema {
            found,
            supported: SCHEMA_VERSION,
        }),
    }
}

/// A store opened read-only must already be of this layout.
pub async fn check(store: &Store) -> Result<(), StoreError> {
    match read_schema(store).await? {
        Some(SCHEMA_VERSION) => Ok(()),
        found => Err(StoreError::Schema {
            found: found.unwrap_or(0),
            supported: SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubridge_billing::tables::ACCOUNT_JOBS;
    use gpubridge_billing::{EntryKind, LedgerEntry};
    use gpubridge_protocol::{AccountId, JobId, Micros};
    use gpubridge_store::{encode, Record};

    /// A record as the first release wrote it: the payload without a version byte.
    fn legacy<R: Record>(record: &R) -> Vec<u8> {
        encode(record)[1..].to_vec()
    }

    /// A job as the first release wrote it: no version byte, and none of the
    /// fields added since at the end (`payment`, `stopped`, `progress`,
    /// `routing`, `expired_ms`: one `None` byte each).
    fn legacy_job(job: &gpubridge_scheduler::JobRecord) -> Vec<u8> {
        let bytes = encode(job);
        bytes[1..bytes.len() - 5].to_vec()
    }

    #[tokio::test]
    async fn a_first_release_store_is_brought_up_to_date_once() {
        let store = Store::memory(&crate::TABLES);
        let account = AccountId([5; 16]);
        let mut job = gpubridge_scheduler::sample("legacy-job");
        job.owner = Some(account);
        job.status = gpubridge_protocol::JobStatus::Completed;
        job.finished_ms = Some(1);
        let entry = LedgerEntry {
            account,
            seq: 1,
            at_ms: 1,
            kind: EntryKind::Credit,
            amount: Micros(7),
            job: None,
            job_day: 0,
            note: None,
        };
        let jobs: Vec<JobId> = (0..3).map(|_| JobId::random()).collect();
        let mut writes = WriteSet::new();
        writes.put(Table::META, SCHEMA_KEY, "1");
        writes.put(JOBS, job.id.as_bytes(), legacy_job(&job));
        writes.put(LEDGER, entry.key(), legacy(&entry));
        for (n, id) in jobs.iter().enumerate() {
            // Newest first under `account ‖ (u64::MAX − ms) ‖ job id`.
            let mut key = account.0.to_vec();
            key.extend_from_slice(&(u64::MAX - (1_000 - n as u64)).to_be_bytes());
            key.extend_from_slice(id.as_bytes());
            writes.put(ACCOUNT_JOBS, key, Vec::new());
        }
        store.commit(writes).await.unwrap();

        let retention = RetentionConfig {
            keep_seconds: 1,
            ..RetentionConfig::default()
        };
        upgrade(&store, &retention).await.unwrap();
        upgrade(&store, &retention).await.unwrap();
        check(&store).await.unwrap();
        let read = gpubridge_scheduler::jobs::get(&store, &job.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, job);
        let ledger = store
            .get::<LedgerEntry>(LEDGER, entry.key().to_vec())
            .await
            .unwrap();
        assert_eq!(ledger, Some(entry));
        let history = store
            .page(ACCOUNT_JOBS, account.0.to_vec(), None, 10)
            .await
            .unwrap();
        let listed: Vec<&[u8]> = history.items.iter().map(|(_, v)| v.as_slice()).collect();
        assert_eq!(
            listed,
            jobs.iter().map(|j| j.as_bytes()).collect::<Vec<_>>(),
            "same order, newest first"
        );
        assert!(
            history.items.iter().all(|(k, _)| k.len() == 24),
            "numbered keys only"
        );
        // The finished job was indexed for retention on the way (layout 3).
        let expiring = store
            .page(
                gpubridge_scheduler::retention::EXPIRING,
                Vec::new(),
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(expiring.items.len(), 1);
        assert!(expiring.items[0].0.ends_with(job.id.as_bytes()));
    }

    #[tokio::test]
    async fn a_newer_store_is_refused() {
        let store = Store::memory(&crate::TABLES);
        let mut writes = WriteSet::new();
        writes.put(Table::META, SCHEMA_KEY, "9");
        store.commit(writes).await.unwrap();
        assert!(matches!(
            upgrade(&store, &RetentionConfig::default()).await,
            Err(StoreError::Schema { found: 9, .. })
        ));
    }
}
