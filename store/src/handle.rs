//! The open RocksDB, replaceable: after a write fails (disk full, read-only
//! filesystem) RocksDB refuses every later write until it is reopened, which
//! the writer does once space is back. Readers take the handle per read, so
//! they never hold it for long; while it is being replaced they get
//! `StoreError::Unavailable` for a moment.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use crate::error::StoreError;
use crate::kv::MemoryUse;
use crate::write::Table;
use parking_lot::RwLock;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reopening waits for at least this much free space: less would fail again.
const MIN_FREE_BYTES: u64 = 8 * 1024 * 1024;
/// Write-ahead log kept at most before the tables holding it back are flushed.
const MAX_WAL_BYTES: u64 = 128 * 1024 * 1024;
/// Write-ahead log files kept for reuse once their data is flushed.
const RECYCLED_WAL_FILES: usize = 4;
/// Memory for memtables over all tables: RocksDB's default of 64 MiB per
/// table (two while one flushes) would let our two dozen tables hold
/// gigabytes; past this total the largest is flushed.
const MEMTABLES_BYTES: usize = 256 * 1024 * 1024;
/// One table's memtable: a quarter of RocksDB's default, which kept the jobs
/// table's 64 MiB (and as much again while it flushed) in memory under steady
/// load. At 8 MiB the flushes raised `/inference`'s p99 at 3,000 req/s by half
/// a millisecond; at 16 MiB they do not measurably (BENCHMARKS.md).
const MEMTABLE_BYTES: usize = 16 * 1024 * 1024;
/// How long a reopen waits for in-flight reads to let go of the old handle.
const READERS_GRACE: Duration = Duration::from_secs(10);

pub struct DbHandle {
    current: RwLock<Option<Arc<DB>>>,
    path: PathBuf,
    tables: Vec<Table>,
    /// A write failed: writes need a reopen before they can succeed.
    broken: AtomicBool,
    /// Closed for good: reads are refused and nothing reopens it.
    closed: AtomicBool,
}

pub fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.into_string())
}

fn open_db(path: &PathBuf, tables: &[Table]) -> Result<DB, StoreError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_background_jobs(2);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // A write-ahead log file stays until every table with data in it has
    // flushed; quiet tables would otherwise keep gigabytes of it (the default
    // bound is four times all memtables, about 11 GiB with our tables).
    options.set_max_total_wal_size(MAX_WAL_BYTES);
    // Finished log files are reused: appending to a new one changes its size
    // at every write, so each fsync also writes the file's metadata, which
    // was most of a paid job's storage cost (BENCHMARKS.md). Overwriting a
    // recycled file's blocks leaves the metadata alone.
    options.set_recycle_log_file_num(RECYCLED_WAL_FILES);
    options.set_db_write_buffer_size(MEMTABLES_BYTES);
    // RocksDB's own logs stay bounded too.
    options.set_keep_log_file_num(4);
    options.set_max_log_file_size(16 * 1024 * 1024);
    let families = tables
        .iter()
        .map(|t| ColumnFamilyDescriptor::new(t.name(), family_options()));
    DB::open_cf_descriptors(&options, path, families).map_err(backend)
}

/// Retention deletes whole runs of keys: a file dense with deletions is
/// compacted soon, so the space comes back without waiting for its level to fill.
fn family_options() -> Options {
    let mut options = Options::default();
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options.add_compact_on_deletion_collector_factory(1024, 512, 0.5);
    options.set_write_buffer_size(MEMTABLE_BYTES);
    options
}

impl DbHandle {
    pub fn open(path: PathBuf, tables: &[Table]) -> Result<DbHandle, StoreError> {
        let db = open_db(&path, tables)?;
        Ok(DbHandle::new(db, path, tables))
    }

    pub fn new(db: DB, path: PathBuf, tables: &[Table]) -> DbHandle {
        DbHandle {
            current: RwLock::new(Some(Arc::new(db))),
            path,
            tables: tables.to_vec(),
            broken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    pub fn current(&self) -> Result<Arc<DB>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.current
            .read()
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the database is being reopened".into()))
    }

    /// Closes the database for good once in-flight reads let go of it, so that
    /// the directory's lock is free even while something still holds the store
    /// (a restart within one process opens the same directory again). Blocks.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(db) = self.current.write().take() {
            if let Err(db) = sole_owner(db, READERS_GRACE) {
                tracing::warn!(path = %self.path.display(), "reads still running at close; the last one closes the database");
                drop(db);
            }
        }
    }

    /// What the open database holds in memory, over all tables; `None` while
    /// it is closed or being reopened.
    pub fn memory(&self) -> Option<MemoryUse> {
        let db = self.current().ok()?;
        let mut total = MemoryUse::default();
        for table in &self.tables {
            let Some(family) = db.cf_handle(table.name()) else {
                continue;
            };
            let property = |name: &str| {
                db.property_int_value_cf(&family, name)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            total.memtables += property("rocksdb.size-all-mem-tables");
            total.table_readers += property("rocksdb.estimate-table-readers-mem");
            // Each table has its own cache (RocksDB's default).
            total.block_cache += property("rocksdb.block-cache-usage");
        }
        Some(total)
    }

    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// After a failed write and once there is room again: closes and reopens
    /// the database, which clears RocksDB's stopped state. `Ok(false)` when it
    /// was not needed or not yet possible.
    pub fn recover(&self) -> Result<bool, StoreError> {
        if !self.broken.load(Ordering::Acquire)
            || self.closed.load(Ordering::Acquire)
            || self.free_bytes() < MIN_FREE_BYTES
        {
            return Ok(false);
        }
        let Some(old) = self.current.write().take() else {
            return self.reopen().map(|()| true);
        };
        if let Err(old) = sole_owner(old, READERS_GRACE) {
            *self.current.write() = Some(old);
            return Ok(false);
        }
        self.reopen().map(|()| true)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let db = open_db(&self.path, &self.tables)?;
        *self.current.write() = Some(Arc::new(db));
        self.broken.store(false, Ordering::Release);
        tracing::warn!(path = %self.path.display(), "storage reopened after a failed write; writes resume");
        Ok(())
    }

    fn free_bytes(&self) -> u64 {
        rustix::fs::statvfs(&self.path)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0)
    }
}

/// Waits up to `grace` for readers to drop their clones of `db`, then drops it
/// (closing the database); gives it back if they did not.
fn sole_owner(db: Arc<DB>, grace: Duration) -> Result<(), Arc<DB>> {
    let deadline = Instant::now() + grace;
    while Arc::strong_count(&db) > 1 {
        if Instant::now() > deadline {
            return Err(db);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(db);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RocksDB quietly turns recycling off under some other options (a WAL
    /// recovery mode, a WAL TTL); the options it settled on are in its OPTIONS file.
    #[test]
    fn finished_log_files_are_recycled() {
        let dir = tempfile::tempdir().unwrap();
        let handle = DbHandle::open(dir.path().to_path_buf(), &[Table("t")]).unwrap();
        let settled: String = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        let line = format!("recycle_log_file_num={RECYCLED_WAL_FILES}");
        assert!(
            settled.lines().any(|l| l.trim() == line),
            "{line} not in the OPTIONS file"
        );
        handle.close();
    }
}
