//! The RocksDB [`Kv`]: one column family per table, one writer thread doing
//! group commit, reads on Tokio's blocking pool. The only module that touches
//! RocksDB.
//!
//! The writer ([`writer`]) takes every commit waiting in its queue, writes them
//! as one batch with one fsync (when `sync`), then acknowledges each: under load
//! many requests share a disk flush, so durability before acknowledgement costs
//! little throughput. The queue is bounded; [`Kv::slot`] waits for room.
//! Commits that ask only for the log are fsync'd later, in bulk, by the
//! syncer ([`syncer`]), beside the writer rather than in its way.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod syncer;
mod writer;

use crate::error::StoreError;
use crate::handle::{backend, DbHandle};
use crate::kv::{
    Ack, BoxFuture, Kv, MemoryUse, ReadMode, Reader, SlotSink, Then, View, Visit, WriteSlot,
};
use crate::metrics::StoreMetrics;
use crate::queue::{queue, Inbox};
use crate::write::{Table, WriteSet};
use parking_lot::Mutex;
use rocksdb::{Options, ReadOptions, DB};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use syncer::Unsynced;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use writer::{Commit, Message, Reply};

#[derive(Clone, Copy, Debug)]
pub struct RocksOptions {
    /// fsync before a commit is acknowledged: survives power loss, not only a crash.
    pub sync: bool,
    /// Commits waiting for the writer at most; beyond it `slot()` waits.
    pub queue: usize,
    /// Commits written together at most.
    pub max_group: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            sync: true,
            queue: 8192,
            max_group: 1024,
        }
    }
}

pub struct RocksKv {
    db: Arc<DbHandle>,
    /// `None` when read-only.
    queue: Option<Inbox<Message>>,
    room: Arc<Semaphore>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: StoreMetrics,
    #[cfg(test)]
    unsynced: Arc<Unsynced>,
}

/// Starts one of the store's threads, named for its job.
fn spawn(
    job: &str,
    dir: &Path,
    work: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(format!("gpubridge-store-{job}"))
        .spawn(work)
        .map_err(|e| data_dir(dir, format!("starting the {job} thread: {e}")))
}

fn data_dir(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::DataDir {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl RocksKv {
    /// Opens (creating) the database under `dir/rocksdb` with these tables.
    pub fn open(
        dir: &Path,
        tables: &[Table],
        options: RocksOptions,
        metrics: StoreMetrics,
    ) -> Result<RocksKv, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| data_dir(dir, e))?;
        let db = Arc::new(DbHandle::open(dir.join("rocksdb"), tables)?);
        let (sender, receiver) = queue();
        let unsynced = Arc::new(Unsynced::default());
        // Without fsyncs nothing is left unsynced, and no syncer is needed.
        let syncer = match options.sync {
            true => Some(spawn("syncer", dir, {
                let (db, unsynced, metrics) = (db.clone(), unsynced.clone(), metrics.clone());
                move || syncer::run(&db, &unsynced, &metrics)
            })?),
            false => None,
        };
        let writer = spawn("writer", dir, {
            let (db, metrics, unsynced) = (db.clone(), metrics.clone(), unsynced.clone());
            move || {
                writer::run(&db, &receiver, options, &metrics, &unsynced);
                unsynced.stop();
                if let Some(syncer) = syncer {
                    let _ = syncer.join();
                }
            }
        })
        .inspect_err(|_| unsynced.stop())?;
        Ok(RocksKv {
            db,
            queue: Some(sender),
            room: Arc::new(Semaphore::new(options.queue.max(1))),
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(writer)),
            metrics,
            #[cfg(test)]
            unsynced,
        })
    }

    /// Opens a database for reading only (offline audits): works while a daemon
    /// holds it, and never changes it.
    pub fn open_read_only(dir: &Path, tables: &[Table]) -> Result<RocksKv, StoreError> {
        let path = dir.join("rocksdb");
        if !path.exists() {
            return Err(data_dir(&path, "no GPU-Bridge database here"));
        }
        let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
        let db =
            DB::open_cf_for_read_only(&Options::default(), &path, names, false).map_err(backend)?;
        Ok(RocksKv {
            db: Arc::new(DbHandle::new(db, path, tables)),
            queue: None,
            room: Arc::new(Semaphore::new(1)),
            closed: AtomicBool::new(false),
            writer: Mutex::new(None),
            metrics: StoreMetrics::new(),
            #[cfg(test)]
            unsynced: Arc::default(),
        })
    }
}

struct RocksSlot {
    queue: Inbox<Message>,
    room: OwnedSemaphorePermit,
    metrics: StoreMetrics,
}

impl RocksSlot {
    fn send(self, writes: WriteSet, reply: Reply) -> Result<(), Commit> {
        let commit = Commit {
            writes,
            reply: Some(reply),
            _room: self.room,
        };
        let urgent = !commit.lazy();
        // Unbounded underneath: the semaphore bounds it, so this never blocks.
        match self.queue.send(Message::Commit(commit), urgent) {
            Ok(()) => {
                self.metrics.queued.inc();
                Ok(())
            }
            Err(Message::Commit(commit)) => Err(commit),
            Err(Message::Stop) => Ok(()),
        }
    }
}

impl SlotSink for RocksSlot {
    fn submit(self: Box<Self>, writes: WriteSet) -> Ack {
        let (ack, answer) = oneshot::channel();
        match self.send(writes, Reply::Ack(ack)) {
            Ok(()) => Ack::waiting(answer),
            // Dropping the commit answers it `Closed`.
            Err(_closed) => Ack::done(Err(StoreError::Closed)),
        }
    }

    fn submit_then(self: Box<Self>, writes: WriteSet, then: Then) {
        // Refused, the commit is dropped, which tells `then` it is closed.
        let _ = self.send(writes, Reply::Then(then));
    }
}

struct RocksView<'a> {
    db: &'a DB,
    snapshot: Option<rocksdb::Snapshot<'a>>,
}

impl RocksView<'_> {
    fn options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        if let Some(snapshot) = &self.snapshot {
            options.set_snapshot(snapshot);
        }
        options
    }

    fn family(&self, table: Table) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(table.name())
            .ok_or(StoreError::UnknownTable(table.name()))
    }
}

impl View for RocksView<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.family(table)?;
        self.db
            .get_pinned_cf_opt(cf, key, &self.options())
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(backend)
    }

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let cf = self.family(table)?;
        self.db
            .multi_get_cf_opt(keys.iter().map(|k| (cf, k)), &self.options())
            .into_iter()
            .map(|value| value.map_err(backend))
            .collect()
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let cf = self.family(table)?;
        let mut iterator = self.db.raw_iterator_cf_opt(cf, self.options());
        iterator.seek(start.unwrap_or(prefix));
        while let Some((key, value)) = iterator.item() {
            if !key.starts_with(prefix) || visit(key, value).is_break() {
                return Ok(());
            }
            iterator.next();
        }
        iterator.status().map_err(backend)
    }
}

impl Kv for RocksKv {
    fn slot(&self) -> BoxFuture<'_, Result<WriteSlot, StoreError>> {
        Box::pin(async move {
            let Some(queue) = self.queue.clone() else {
                return Err(StoreError::ReadOnly);
            };
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            let room = self
                .room
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Closed)?;
            let sink = RocksSlot {
                queue,
                room,
                metrics: self.metrics.clone(),
            };
            Ok(WriteSlot::new(Box::new(sink)))
        })
    }

    fn read(&self, mode: ReadMode, reader: Reader) -> BoxFuture<'_, Result<(), StoreError>> {
        let db = self.db.current();
        Box::pin(async move {
            let db = db?;
            tokio::task::spawn_blocking(move || {
                let snapshot = (mode == ReadMode::Snapshot).then(|| db.snapshot());
                reader(&RocksView { db: &db, snapshot });
            })
            .await
            .map_err(|e| StoreError::Backend(format!("read task: {e}")))
        })
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    fn memory(&self) -> Option<MemoryUse> {
        self.db.memory()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        let writer = self.stop();
        let db = self.db.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(writer) = writer {
                    let _ = writer.join();
                }
                db.close();
            })
            .await;
        })
    }
}

impl RocksKv {
    /// Refuses new commits and tells the writer to stop after what is queued.
    fn stop(&self) -> Option<JoinHandle<()>> {
        self.closed.store(true, Ordering::Release);
        let writer = self.writer.lock().take();
        if writer.is_some() {
            if let Some(queue) = &self.queue {
                let _ = queue.send(Message::Stop, true);
            }
        }
        writer
    }
}

impl Drop for RocksKv {
    fn drop(&mut self) {
        if let Some(writer) = self.stop() {
            // Dropped on the writer itself (a commit's callback held the last
            // owner): it stops once that callback returns, and cannot join itself.
            if writer.thread().id() != std::thread::current().id() {
                let _ = writer.join();
            }
        }
    }
}
