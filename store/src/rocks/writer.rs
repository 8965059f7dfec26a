//! The writer thread: block for one commit, take whatever else is queued, write
//! them as one batch, acknowledge each. A group is fsync'd when one of its
//! commits asks for it; commits that ask only for the log
//! ([`Durability::Logged`]) are fsync'd with the next synced group, or on their
//! own once the oldest of them has waited [`LOGGED_SYNC_WITHIN`]. Such commits
//! that nobody awaits may linger in the queue ([`LOGGED_LINGER`]) so that one
//! wake-up of this thread writes many, and their callbacks run here.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use super::syncer::Unsynced;
use super::RocksOptions;
use crate::error::StoreError;
use crate::handle::{backend, DbHandle};
use crate::kv::Then;
use crate::metrics::{StoreMetrics, SyncCause};
use crate::queue::Outbox;
use crate::write::{Durability, Op, WriteSet, LOGGED_LINGER};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::time::Instant;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

pub(super) enum Message {
    Commit(Commit),
    /// Write what came before, then stop.
    Stop,
}

pub(super) struct Commit {
    pub writes: WriteSet,
    /// `None` once answered.
    pub reply: Option<Reply>,
    pub _room: OwnedSemaphorePermit,
}

/// Who learns how a commit went.
pub(super) enum Reply {
    /// A task awaiting its `Ack`.
    Ack(oneshot::Sender<Result<(), StoreError>>),
    /// A callback run here ([`crate::Then`]).
    Then(Then),
}

impl Commit {
    /// May it linger in the queue? Only what nobody waits on and needs no fsync.
    pub fn lazy(&self) -> bool {
        matches!(self.reply, Some(Reply::Then(_))) && self.writes.durability() == Durability::Logged
    }

    fn answer(mut self, result: Result<(), StoreError>) {
        self.answer_now(result);
    }

    fn answer_now(&mut self, result: Result<(), StoreError>) {
        match self.reply.take() {
            Some(Reply::Ack(ack)) => {
                let _ = ack.send(result);
            }
            Some(Reply::Then(then)) => {
                then(result.map_err(|e| (e, std::mem::take(&mut self.writes))))
            }
            None => {}
        }
    }
}

/// Dropped unwritten (behind a stop, or the writer gone): it did not happen.
impl Drop for Commit {
    fn drop(&mut self) {
        self.answer_now(Err(StoreError::Closed));
    }
}

/// Runs until `Stop`; commits queued behind it are answered `Closed` as they
/// are dropped. What was only logged is left marked in `unsynced`.
pub(super) fn run(
    handle: &DbHandle,
    queue: &Outbox<Message>,
    options: RocksOptions,
    metrics: &StoreMetrics,
    unsynced: &Unsynced,
) {
    let writer = Writer {
        handle,
        options,
        metrics,
        unsynced,
    };
    let mut stopping = false;
    let mut messages = Vec::new();
    while !stopping {
        queue.recv_many(&mut messages, options.max_group, LOGGED_LINGER);
        let mut group = Vec::with_capacity(messages.len());
        for message in messages.drain(..) {
            match message {
                Message::Commit(commit) => {
                    metrics.queued.dec();
                    // Behind a stop: dropped unwritten, which answers it `Closed`.
                    if !stopping {
                        group.push(commit);
                    }
                }
                Message::Stop => stopping = true,
            }
        }
        writer.write(group);
    }
}

struct Writer<'a> {
    handle: &'a DbHandle,
    options: RocksOptions,
    metrics: &'a StoreMetrics,
    /// Acknowledged writes not yet fsync'd (only when `options.sync`).
    unsynced: &'a Unsynced,
}

impl Writer<'_> {
    fn write(&self, group: Vec<Commit>) {
        if group.is_empty() {
            return;
        }
        if let Err(e) = self.handle.recover() {
            tracing::error!(error = %e, "reopening storage failed; retrying with the next write");
        }
        let db = match self.handle.current() {
            Ok(db) => db,
            Err(e) => {
                for commit in group {
                    commit.answer(Err(e.clone()));
                }
                return;
            }
        };
        let mut batch = WriteBatch::default();
        let mut members = Vec::with_capacity(group.len());
        for commit in group {
            // A commit naming an unknown table fails alone, before anything of it is batched.
            match add(&db, &mut batch, &commit.writes) {
                Ok(()) => members.push(commit),
                Err(e) => commit.answer(Err(e)),
            }
        }
        if members.is_empty() {
            return;
        }
        let sync = self.must_sync(&members);
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync.is_some());
        let started = Instant::now();
        let result = db.write_opt(batch, &write_options).map_err(backend);
        self.metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.group_size.observe(members.len() as f64);
        drop(db);
        match (&result, sync) {
            (Ok(()), Some(cause)) => {
                self.unsynced.clear();
                self.metrics.count_sync(cause);
            }
            (Ok(()), None) if self.options.sync => self.unsynced.mark(started),
            (Ok(()), None) => {}
            (Err(e), _) => {
                // RocksDB refuses every write after this one until it is reopened.
                self.handle.mark_broken();
                tracing::error!(error = %e, commits = members.len(), "storage write failed");
            }
        }
        for commit in members {
            self.metrics.commits.inc();
            commit.answer(result.clone());
        }
    }

    /// Whether this group is fsync'd: when one of its commits asks for it.
    fn must_sync(&self, members: &[Commit]) -> Option<SyncCause> {
        let asked = members
            .iter()
            .any(|c| c.writes.durability() == Durability::Synced);
        (self.options.sync && asked).then_some(SyncCause::Commit)
    }
}

fn add(db: &DB, batch: &mut WriteBatch, writes: &WriteSet) -> Result<(), StoreError> {
    let mut families = Vec::with_capacity(writes.len());
    for op in writes.ops() {
        let table = op.table();
        families.push(
            db.cf_handle(table.name())
                .ok_or(StoreError::UnknownTable(table.name()))?,
        );
    }
    for (op, cf) in writes.ops().iter().zip(families) {
        match op {
            Op::Put { key, value, .. } => batch.put_cf(cf, key, value),
            Op::Delete { key, .. } => batch.delete_cf(cf, key),
        }
    }
    Ok(())
}
