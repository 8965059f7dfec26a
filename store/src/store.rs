//! [`Store`]: the handle the rest of GPU-Bridge holds. Typed reads decode
//! records off the async workers and report unreadable ones; commits wait for
//! durability without holding anything.

use crate::codec::{decode, Record};
use crate::error::StoreError;
use crate::kv::{Kv, ReadMode, View, WriteSlot};
use crate::memory::MemoryKv;
use crate::metrics::StoreMetrics;
use crate::write::{Table, WriteSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
}

/// One page of a prefix scan, and where the next one starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first key of the following page; `None` at the end.
    pub next: Option<Vec<u8>>,
}

impl Store {
    pub fn new(kv: Arc<dyn Kv>) -> Store {
        Store { kv }
    }

    /// An empty in-memory store with these tables (tests).
    pub fn memory(tables: &[Table]) -> Store {
        Store::new(Arc::new(MemoryKv::new(tables)))
    }

    pub fn metrics(&self) -> &StoreMetrics {
        self.kv.metrics()
    }

    /// Room in the write queue: take it before deciding what to write, then
    /// decide and submit without waiting.
    pub async fn slot(&self) -> Result<WriteSlot, StoreError> {
        self.kv.slot().await
    }

    /// Commits `writes` atomically; returns once they are durable.
    pub async fn commit(&self, writes: WriteSet) -> Result<(), StoreError> {
        self.slot().await?.submit(writes).await
    }

    /// [`Store::commit`], giving the writes back when they fail, for a retry
    /// without keeping a copy of every commit.
    pub async fn commit_or_return(&self, writes: WriteSet) -> Result<(), (StoreError, WriteSet)> {
        let slot = match self.slot().await {
            Ok(slot) => slot,
            Err(e) => return Err((e, writes)),
        };
        let (tx, rx) = oneshot::channel();
        slot.submit_then(
            writes,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        // Every backend answers `then`, with the writes on failure; a lost
        // answer could only mean the store went away.
        rx.await
            .unwrap_or_else(|_| Err((StoreError::Closed, WriteSet::new())))
    }

    /// Refreshes scrape-time gauges (what the backend holds in memory).
    pub fn refresh_metrics(&self) {
        if let Some(memory) = self.kv.memory() {
            self.kv.metrics().set_memory(memory);
        }
    }

    /// Writes what is queued, then refuses further commits.
    pub async fn close(&self) {
        self.kv.close().await;
    }

    /// Runs `read` off the async workers and returns what it returns.
    pub async fn read<T, F>(&self, mode: ReadMode, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn View) -> Result<T, StoreError> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        self.kv
            .read(
                mode,
                Box::new(move |view| {
                    let _ = sender.send(read(view));
                }),
            )
            .await?;
        receiver
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("a read ended without an answer".into())))
    }

    /// Decodes a stored value; an unreadable one is logged, counted and returned
    /// as an error, never taken for an absent record.
    pub fn decode<R: Record>(
        &self,
        table: Table,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<R, StoreError> {
        decode_counted(self.metrics(), table, key, bytes)
    }

    /// One record by key.
    pub async fn get<R: Record>(
        &self,
        table: Table,
        key: Vec<u8>,
    ) -> Result<Option<R>, StoreError> {
        let metrics = self.metrics().clone();
        self.read(ReadMode::Latest, move |view| {
            view.get(table, &key)?
                .map(|bytes| decode_counted(&metrics, table, &key, &bytes))
                .transpose()
        })
        .await
    }

    /// Records by key, in the order asked; `None` where there is none.
    pub async fn get_many<R: Record>(
        &self,
        table: Table,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<Option<R>>, StoreError> {
        let metrics = self.metrics().clone();
        self.read(ReadMode::Latest, move |view| {
            let values = view.get_many(table, &keys)?;
            keys.iter()
                .zip(values)
                .map(|(key, value)| {
                    value
                        .map(|bytes| decode_counted(&metrics, table, key, &bytes))
                        .transpose()
                })
                .collect()
        })
        .await
    }

    /// Up to `limit` pairs whose keys begin with `prefix`, from `start` (inclusive).
    pub async fn page(
        &self,
        table: Table,
        prefix: Vec<u8>,
        start: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(ReadMode::Latest, move |view| {
            let mut page = Page::default();
            view.scan(table, &prefix, start.as_deref(), &mut |key, value| {
                if page.items.len() == limit {
                    page.next = Some(key.to_vec());
                    return ControlFlow::Break(());
                }
                page.items.push((key.to_vec(), value.to_vec()));
                ControlFlow::Continue(())
            })?;
            Ok(page)
        })
        .await
    }
}

fn decode_counted<R: Record>(
    metrics: &StoreMetrics,
    table: Table,
    key: &[u8],
    bytes: &[u8],
) -> Result<R, StoreError> {
    decode(bytes).map_err(|source| {
        let key = printable(key);
        tracing::error!(table = table.name(), %key, error = %source, "unreadable stored record");
        metrics.count_undecodable(table.name());
        StoreError::Undecodable {
            table: table.name(),
            key,
            source,
        }
    })
}

/// Keys as text when they are text, else hex.
fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().all(|c| c.is_ascii_graphic()) => text.to_string(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SyncCause;
    use crate::rocks::{RocksKv, RocksOptions};
    use serde::{Deserialize, Serialize};

    const T: Table = Table("things");
    const OTHER: Table = Table("other");

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing(u32);

    impl Record for Thing {
        const KIND: &'static str = "thing";
        const VERSION: u8 = 1;
    }

    /// What every backend must do, run against each.
    async fn contract(store: Store) {
        let mut writes = WriteSet::new();
        for n in 0..10u32 {
            writes.put_record(T, format!("k{n}"), &Thing(n));
        }
        writes.put(OTHER, "x", b"raw".to_vec());
        store.commit(writes).await.unwrap();
        assert_eq!(
            store.get::<Thing>(T, b"k3".to_vec()).await.unwrap(),
            Some(Thing(3))
        );
        assert_eq!(store.get::<Thing>(T, b"nope".to_vec()).await.unwrap(), None);

        let many = store
            .get_many::<Thing>(T, vec![b"k1".to_vec(), b"zz".to_vec(), b"k9".to_vec()])
            .await
            .unwrap();
        assert_eq!(many, vec![Some(Thing(1)), None, Some(Thing(9))]);

        let first = store.page(T, b"k".to_vec(), None, 4).await.unwrap();
        assert_eq!(first.items.len(), 4);
        assert_eq!(first.next.as_deref(), Some(&b"k4"[..]));
        let rest = store.page(T, b"k".to_vec(), first.next, 100).await.unwrap();
        assert_eq!(rest.items.len(), 6);
        assert_eq!(rest.next, None);

        // A write set naming an unknown table changes nothing.
        let mut bad = WriteSet::new();
        bad.put_record(T, "k100", &Thing(100));
        bad.put(Table("missing"), "a", b"b".to_vec());
        assert!(matches!(
            store.commit(bad).await,
            Err(StoreError::UnknownTable("missing"))
        ));
        assert_eq!(store.get::<Thing>(T, b"k100".to_vec()).await.unwrap(), None);

        // Refused, the writes come back whole, for a retry.
        let mut refused = WriteSet::new();
        refused.put_record(T, "k101", &Thing(101));
        refused.put(Table("missing"), "a", b"b".to_vec());
        let (error, back) = store.commit_or_return(refused).await.unwrap_err();
        assert!(matches!(error, StoreError::UnknownTable("missing")));
        assert_eq!(back.len(), 2);
        let mut retry = WriteSet::new();
        retry.put(
            T,
            b"k101".to_vec(),
            back.ops()
                .iter()
                .find_map(|op| match op {
                    crate::write::Op::Put { table, value, .. } if *table == T => {
                        Some(value.clone())
                    }
                    _ => None,
                })
                .unwrap(),
        );
        store.commit_or_return(retry).await.unwrap();
        assert_eq!(
            store.get::<Thing>(T, b"k101".to_vec()).await.unwrap(),
            Some(Thing(101))
        );

        // Damaged records are errors, counted; never "not found".
        let mut damaged = WriteSet::new();
        damaged.put(T, "bad", vec![1, 0xff, 0xff, 0xff]);
        damaged.delete(T, "k0");
        store.commit(damaged).await.unwrap();
        let error = store.get::<Thing>(T, b"bad".to_vec()).await.unwrap_err();
        assert!(error.is_undecodable(), "{error}");
        assert_eq!(store.metrics().undecodable("things"), 1);
        assert_eq!(store.get::<Thing>(T, b"k0".to_vec()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_keeps_the_contract() {
        contract(Store::memory(&[T, OTHER])).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rocksdb_keeps_the_contract_and_groups_commits() {
        let dir = tempfile::tempdir().unwrap();
        let options = RocksOptions {
            sync: true,
            ..Default::default()
        };
        let kv = RocksKv::open(dir.path(), &[T, OTHER], options, StoreMetrics::new()).unwrap();
        let store = Store::new(Arc::new(kv));
        contract(store.clone()).await;

        // Many concurrent commits, each acknowledged once durable, in fewer writes.
        let tasks: Vec<_> = (0..400u32)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut writes = WriteSet::new();
                    writes.put_record(T, format!("c{n:04}"), &Thing(n));
                    store.commit(writes).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let all = store.page(T, b"c".to_vec(), None, 1000).await.unwrap();
        assert_eq!(all.items.len(), 400);
        let metrics = store.metrics();
        assert_eq!(
            metrics.group_size.get_sample_sum() as u64,
            metrics.commits.get()
        );

        store.close().await;
        assert!(matches!(
            store.commit(WriteSet::new()).await,
            Err(StoreError::Closed)
        ));

        // Reopened read-only, it sees everything and refuses writes.
        drop(store);
        let reader = Store::new(Arc::new(
            RocksKv::open_read_only(dir.path(), &[T, OTHER]).unwrap(),
        ));
        assert_eq!(
            reader.get::<Thing>(T, b"c0399".to_vec()).await.unwrap(),
            Some(Thing(399))
        );
        assert!(matches!(
            reader.commit(WriteSet::new()).await,
            Err(StoreError::ReadOnly)
        ));
    }

    /// A RocksDB store with default options in a fresh directory (kept while
    /// the store is used).
    fn rocks_with(tables: &[Table]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let kv = RocksKv::open(
            dir.path(),
            tables,
            RocksOptions::default(),
            StoreMetrics::new(),
        );
        (dir, Store::new(Arc::new(kv.unwrap())))
    }

    /// Logged-only commits get no fsync of their own: the deadline or the next
    /// synced commit covers them, and closing syncs what is left.
    #[tokio::test]
    async fn logged_commits_are_synced_later_not_each() {
        let (_dir, store) = rocks_with(&[T]);
        let metrics = store.metrics();
        let commit = |n: u32, logged: bool| {
            let mut writes = WriteSet::new();
            writes.put_record(T, format!("k{n:02}"), &Thing(n));
            if logged {
                writes.logged_only();
            }
            store.commit(writes)
        };
        for n in 0..20 {
            commit(n, true).await.unwrap();
        }
        assert_eq!(metrics.syncs(SyncCause::Commit), 0);
        assert_eq!(
            store.get::<Thing>(T, b"k19".to_vec()).await.unwrap(),
            Some(Thing(19))
        );
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while metrics.syncs(SyncCause::Deadline) == 0 {
            assert!(
                std::time::Instant::now() < give_up,
                "logged commits never synced"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.syncs(SyncCause::Deadline), 1);

        commit(20, false).await.unwrap();
        assert_eq!(metrics.syncs(SyncCause::Commit), 1);
        commit(21, true).await.unwrap();
        store.close().await;
        // Synced as the writer stopped (or, on a slow machine, at the deadline just before).
        let later = metrics.syncs(SyncCause::Deadline) + metrics.syncs(SyncCause::Shutdown);
        assert_eq!(later, 2);
        assert_eq!(metrics.syncs(SyncCause::Commit), 1);
    }

    /// A commit nobody awaits tells its callback, on the writer thread; one
    /// that fails hands its writes back for a retry.
    #[tokio::test]
    async fn a_commit_nobody_awaits_tells_its_callback() {
        let (_dir, store) = rocks_with(&[T]);
        let (told, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let submit = |writes: WriteSet| {
            let told = told.clone();
            let store = store.clone();
            async move {
                let then: crate::Then = Box::new(move |result| {
                    let thread = std::thread::current().name().map(str::to_owned);
                    let _ = told.send((result.map_err(|(e, back)| (e, back.len())), thread));
                });
                store.slot().await.unwrap().submit_then(writes, then);
            }
        };
        for n in 0..50u32 {
            let mut writes = WriteSet::new();
            writes.put_record(T, format!("t{n:02}"), &Thing(n));
            writes.logged_only();
            submit(writes).await;
        }
        for _ in 0..50 {
            let (result, thread) = heard.recv().await.unwrap();
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(thread.as_deref(), Some("gpubridge-store-writer"));
        }
        assert_eq!(
            store.get::<Thing>(T, b"t49".to_vec()).await.unwrap(),
            Some(Thing(49))
        );

        let mut bad = WriteSet::new();
        bad.put(Table("missing"), "a", b"b".to_vec());
        bad.logged_only();
        submit(bad).await;
        let (result, _) = heard.recv().await.unwrap();
        assert!(
            matches!(result, Err((StoreError::UnknownTable("missing"), 1))),
            "{result:?}"
        );
    }

    /// A restart within one process: the old store may still be referenced
    /// (a task not yet dropped), yet once closed its directory opens again.
    #[tokio::test]
    async fn a_closed_store_frees_its_directory_while_still_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            RocksKv::open(
                dir.path(),
                &[T],
                RocksOptions::default(),
                StoreMetrics::new(),
            )
        };
        let first = Store::new(Arc::new(open().unwrap()));
        let mut writes = WriteSet::new();
        writes.put_record(T, "k", &Thing(1));
        first.commit(writes).await.unwrap();
        let lingering = first.clone();
        first.close().await;
        assert!(matches!(
            lingering.get::<Thing>(T, b"k".to_vec()).await,
            Err(StoreError::Closed)
        ));
        let second = Store::new(Arc::new(open().expect("the directory is free")));
        assert_eq!(
            second.get::<Thing>(T, b"k".to_vec()).await.unwrap(),
            Some(Thing(1))
        );
        drop(lingering);
    }
}
