//! The port itself: what any store behind GPU-Bridge must do. Commits go
//! through a [`WriteSlot`] (room in the writer's queue, taken before anything is
//! decided, so the decision and the enqueue can happen together) and resolve
//! once durable; reads run a closure against a [`View`] where blocking is fine.

use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::write::{Table, WriteSet};
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Each read sees the latest commit.
    Latest,
    /// Every read of the closure sees the same instant (audits).
    Snapshot,
}

/// Called with each pair a scan visits; `Break` ends the scan.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> ControlFlow<()>;

/// Read access for a closure running where it may block.
pub trait View {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(table, key)).collect()
    }

    /// Visits pairs in key order from `start` (inclusive; the prefix itself when
    /// `None`) while keys begin with `prefix`, until `visit` breaks.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError>;
}

pub type Reader = Box<dyn FnOnce(&dyn View) + Send>;

/// An ordered key-value store with atomic commits across tables.
pub trait Kv: Send + Sync + 'static {
    /// Waits for room in the write queue.
    fn slot(&self) -> BoxFuture<'_, Result<WriteSlot, StoreError>>;
    /// Runs `reader` off the async workers.
    fn read(&self, mode: ReadMode, reader: Reader) -> BoxFuture<'_, Result<(), StoreError>>;
    fn metrics(&self) -> &StoreMetrics;
    /// Writes what is queued, then refuses further commits.
    fn close(&self) -> BoxFuture<'_, ()>;
    /// Memory the backend holds outside the allocator's view, if it tracks it.
    fn memory(&self) -> Option<MemoryUse> {
        None
    }
}

/// Memory a store backend holds, in bytes, by what holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Writes not yet flushed to files, and those being flushed.
    pub memtables: u64,
    /// Open files' indexes and filters.
    pub table_readers: u64,
    /// Blocks cached from files.
    pub block_cache: u64,
}

/// How a backend takes one commit; the slot's room is freed when it is done.
pub trait SlotSink: Send {
    fn submit(self: Box<Self>, writes: WriteSet) -> Ack;
    /// As `submit`, but calls `then` where the commit ends instead of waking a task.
    fn submit_then(self: Box<Self>, writes: WriteSet, then: Then);
}

/// Called once with a commit's outcome where it ended (the store's writer
/// thread: it must be quick and never block); a failed commit's writes come
/// back with the error, for a retry.
pub type Then = Box<dyn FnOnce(Result<(), (StoreError, WriteSet)>) + Send>;

/// Room for one commit. Submitting never waits; dropping it unused frees the room.
pub struct WriteSlot(Box<dyn SlotSink>);

impl WriteSlot {
    pub fn new(sink: Box<dyn SlotSink>) -> WriteSlot {
        WriteSlot(sink)
    }

    /// Hands `writes` to the writer; the returned [`Ack`] resolves once they are durable.
    pub fn submit(self, writes: WriteSet) -> Ack {
        self.0.submit(writes)
    }

    /// Hands `writes` to the writer and `then` what follows them, with no task
    /// waiting: for what nobody waits on. A [`Durability::Logged`] set may
    /// also wait a moment in the queue for company (`LOGGED_LINGER`), so many
    /// share one storage write.
    ///
    /// [`Durability::Logged`]: crate::Durability::Logged
    pub fn submit_then(self, writes: WriteSet, then: Then) {
        self.0.submit_then(writes, then)
    }
}

/// The outcome of one commit.
pub struct Ack(AckState);

enum AckState {
    Done(Option<Result<(), StoreError>>),
    Waiting(oneshot::Receiver<Result<(), StoreError>>),
}

impl Ack {
    pub fn done(result: Result<(), StoreError>) -> Ack {
        Ack(AckState::Done(Some(result)))
    }

    pub fn waiting(receiver: oneshot::Receiver<Result<(), StoreError>>) -> Ack {
        Ack(AckState::Waiting(receiver))
    }
}

impl Future for Ack {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            AckState::Done(result) => Poll::Ready(result.take().unwrap_or(Err(StoreError::Closed))),
            // A writer that went away without answering did not write.
            AckState::Waiting(receiver) => Pin::new(receiver)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(StoreError::Closed))),
        }
    }
}
