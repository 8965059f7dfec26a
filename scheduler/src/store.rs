//! RocksDB persistence, one column family per kind of record. A job is written
//! before it is acknowledged; its terminal state and anything paid for it are
//! written in one atomic batch.

use crate::job::JobRecord;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use std::path::Path;

/// Job records by id.
pub const CF_JOBS: &str = "jobs";
/// Ids of jobs not yet terminal: what a restart must resume.
pub const CF_UNFINISHED: &str = "unfinished";
/// Learned latency and duration estimates.
pub const CF_ESTIMATES: &str = "estimates";
/// Small daemon facts (schema version).
pub const CF_META: &str = "meta";
/// Account records by account id.
pub const CF_ACCOUNTS: &str = "accounts";
/// Account id by lower-cased email.
pub const CF_EMAILS: &str = "emails";
/// Account id by keyed API-key digest.
pub const CF_API_KEYS: &str = "api_keys";
/// The append-only money ledger: `account ‖ seq` → entry.
pub const CF_LEDGER: &str = "ledger";
/// Job history: `account ‖ inverted time ‖ job id`.
pub const CF_ACCOUNT_JOBS: &str = "account_jobs";
/// Idempotency keys: `account ‖ key` → fingerprint and job.
pub const CF_IDEMPOTENCY: &str = "idempotency";
/// Support-assisted key recovery requests by time.
pub const CF_RECOVERIES: &str = "recoveries";

const COLUMN_FAMILIES: [&str; 11] = [
    CF_JOBS,
    CF_UNFINISHED,
    CF_ESTIMATES,
    CF_META,
    CF_ACCOUNTS,
    CF_EMAILS,
    CF_API_KEYS,
    CF_LEDGER,
    CF_ACCOUNT_JOBS,
    CF_IDEMPOTENCY,
    CF_RECOVERIES,
];
const SCHEMA_VERSION: &[u8] = b"1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error(
        "stored data is from an incompatible version (schema {found}, this build reads {expected})"
    )]
    Schema { found: String, expected: String },
}

pub struct Store {
    db: DB,
    sync: bool,
}

/// Extra writes that must land atomically with a job's terminal state (ledger entries).
pub type Batch = WriteBatch;

/// One key-value pair read from a column family.
pub type Item = Result<(Box<[u8]>, Box<[u8]>), StoreError>;

impl Store {
    pub fn open(dir: &Path, sync: bool) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::DataDir {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = COLUMN_FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&options, dir.join("rocksdb"), families)?;
        let store = Store { db, sync };
        store.check_schema()?;
        Ok(store)
    }

    /// Opens a data directory for reading only (offline audits); works while a
    /// daemon holds it, and never changes it.
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("rocksdb");
        if !path.exists() {
            return Err(StoreError::DataDir {
                path: path.display().to_string(),
                reason: "no GPU-Bridge database here".into(),
            });
        }
        let db = DB::open_cf_for_read_only(&Options::default(), path, COLUMN_FAMILIES, false)?;
        Ok(Store { db, sync: false })
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META);
        match self.db.get_cf(meta, b"schema")? {
            None => Ok(self.db.put_cf(meta, b"schema", SCHEMA_VERSION)?),
            Some(found) if found == SCHEMA_VERSION => Ok(()),
            Some(found) => Err(StoreError::Schema {
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: String::from_utf8_lossy(SCHEMA_VERSION).into_owned(),
            }),
        }
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every family is created at open; a missing one is a programming error.
        self.db
            .cf_handle(name)
            .expect("column family opened at start")
    }

    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        Ok(self.db.write_opt(batch, &options)?)
    }

    /// Persists a newly accepted job (and marks it unfinished) before it is acknowledged.
    pub fn insert_job(&self, job: &JobRecord, extra: Batch) -> Result<(), StoreError> {
        let mut batch = extra;
        batch.put_cf(self.cf(CF_JOBS), job.id.as_bytes(), job.encode());
        batch.put_cf(self.cf(CF_UNFINISHED), job.id.as_bytes(), b"");
        self.write(batch)
    }

    /// Persists a job's new state; a terminal state leaves the unfinished set in the same batch.
    pub fn update_job(&self, job: &JobRecord, extra: Batch) -> Result<(), StoreError> {
        let mut batch = extra;
        batch.put_cf(self.cf(CF_JOBS), job.id.as_bytes(), job.encode());
        if job.status.is_terminal() {
            batch.delete_cf(self.cf(CF_UNFINISHED), job.id.as_bytes());
        }
        self.write(batch)
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let Some(bytes) = self.db.get_pinned_cf(self.cf(CF_JOBS), id.as_bytes())? else {
            return Ok(None);
        };
        match JobRecord::decode(&bytes) {
            Ok(record) => Ok(Some(record)),
            Err(e) => {
                tracing::error!(job_id = id, error = %e, "undecodable job record");
                Ok(None)
            }
        }
    }

    /// Ids of every job that was accepted and is not yet terminal.
    pub fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_UNFINISHED), rocksdb::IteratorMode::Start)
        {
            let (key, _) = item?;
            ids.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(ids)
    }

    pub fn forget_unfinished(&self, id: &str) -> Result<(), StoreError> {
        Ok(self.db.delete_cf(self.cf(CF_UNFINISHED), id.as_bytes())?)
    }

    pub fn put_estimates(&self, entries: &[(String, f64)]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_ESTIMATES);
        for (key, value) in entries {
            batch.put_cf(cf, key.as_bytes(), value.to_le_bytes());
        }
        self.write(batch)
    }

    pub fn estimates(&self) -> Result<Vec<(String, f64)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_ESTIMATES), rocksdb::IteratorMode::Start)
        {
            let (key, value) = item?;
            if let Ok(bytes) = <[u8; 8]>::try_from(&value[..]) {
                out.push((
                    String::from_utf8_lossy(&key).into_owned(),
                    f64::from_le_bytes(bytes),
                ));
            }
        }
        Ok(out)
    }

    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Every pair of a column family whose key starts with `prefix`, in key order.
    pub(crate) fn scan<'a>(
        &'a self,
        cf: &str,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Item> + 'a {
        self.db
            .iterator_cf(
                self.cf(cf),
                rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
            )
            .map(|item| item.map_err(StoreError::from))
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
    }

    /// Every pair of a column family, last key first.
    pub(crate) fn scan_reverse(&self, cf: &str) -> impl Iterator<Item = Item> + '_ {
        self.db
            .iterator_cf(self.cf(cf), rocksdb::IteratorMode::End)
            .map(|item| item.map_err(StoreError::from))
    }

    /// Access for components that keep their own column families' batches (billing).
    pub fn db(&self) -> &DB {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::sample;
    use gpubridge_protocol::JobStatus;

    #[test]
    fn unfinished_set_follows_job_state_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), false).unwrap();
            store.insert_job(&sample("a"), Batch::default()).unwrap();
            store.insert_job(&sample("b"), Batch::default()).unwrap();
            let mut done = sample("a");
            done.status = JobStatus::Completed;
            store.update_job(&done, Batch::default()).unwrap();
            store.put_estimates(&[("backend/x".into(), 12.5)]).unwrap();
        }
        let store = Store::open(dir.path(), true).unwrap();
        assert_eq!(store.unfinished_ids().unwrap(), vec!["b".to_string()]);
        assert_eq!(
            store.job("a").unwrap().unwrap().status,
            JobStatus::Completed
        );
        assert_eq!(store.job("zzz").unwrap(), None);
        assert_eq!(
            store.estimates().unwrap(),
            vec![("backend/x".to_string(), 12.5)]
        );
    }
}
