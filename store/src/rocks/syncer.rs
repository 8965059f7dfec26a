//! The syncer thread: fsyncs the write-ahead log once logged-only writes
//! ([`Durability::Logged`](crate::Durability)) have waited
//! [`LOGGED_SYNC_WITHIN`]. It runs beside the writer rather than on it, so
//! the writes behind a slow fsync are not held up by it: RocksDB syncs a log
//! while appends to it go on (`SyncWAL`). The writer marks what it wrote
//! ([`Unsynced::mark`]); a group it fsyncs itself covers everything before.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use crate::handle::{backend, DbHandle};
use crate::metrics::{StoreMetrics, SyncCause};
use crate::write::LOGGED_SYNC_WITHIN;
use parking_lot::{Condvar, Mutex};
use std::time::Instant;

/// What the writer wrote and nobody has fsync'd yet, between the two threads.
#[derive(Default)]
pub(super) struct Unsynced {
    state: Mutex<State>,
    changed: Condvar,
    #[cfg(test)]
    pub gate: testing::Gate,
}

#[derive(Default)]
struct State {
    /// When the oldest write not yet fsync'd was written.
    since: Option<Instant>,
    stopping: bool,
}

impl Unsynced {
    /// The writer logged a group at `at` without an fsync.
    pub fn mark(&self, at: Instant) {
        let mut state = self.state.lock();
        if state.since.is_none() {
            state.since = Some(at);
            self.changed.notify_one();
        }
    }

    /// The writer fsync'd a group, and with it every write before.
    pub fn clear(&self) {
        self.state.lock().since = None;
    }

    /// No more writes: what is unsynced is fsync'd, then the syncer returns.
    pub fn stop(&self) {
        self.state.lock().stopping = true;
        self.changed.notify_one();
    }

    /// Waits until something is due; takes it, with why. `None`: stopped
    /// with nothing left.
    fn due(&self) -> Option<SyncCause> {
        let mut state = self.state.lock();
        loop {
            match (state.since, state.stopping) {
                (None, true) => return None,
                (Some(_), true) => {
                    state.since = None;
                    return Some(SyncCause::Shutdown);
                }
                (Some(since), false) if since.elapsed() >= LOGGED_SYNC_WITHIN => {
                    state.since = None;
                    return Some(SyncCause::Deadline);
                }
                (Some(since), false) => {
                    self.changed
                        .wait_until(&mut state, since + LOGGED_SYNC_WITHIN);
                }
                (None, false) => self.changed.wait(&mut state),
            }
        }
    }

    /// A sync failed: what it took is unsynced again, and retried at the
    /// next deadline.
    fn failed(&self) {
        let mut state = self.state.lock();
        // From now, not from the writes' own time: that deadline has passed,
        // and a failing disk would be retried in a tight loop.
        let now = Instant::now();
        state.since = Some(state.since.map_or(now, |s| s.min(now)));
    }
}

/// Runs until [`Unsynced::stop`], and what was marked before it is fsync'd.
pub(super) fn run(handle: &DbHandle, unsynced: &Unsynced, metrics: &StoreMetrics) {
    while let Some(cause) = unsynced.due() {
        #[cfg(test)]
        unsynced.gate.pass();
        let started = Instant::now();
        let synced = handle
            .current()
            .and_then(|db| db.flush_wal(true).map_err(backend));
        match synced {
            Ok(()) => {
                let seconds = started.elapsed().as_secs_f64();
                metrics.sync_seconds.observe(seconds);
                metrics.count_sync(cause);
            }
            Err(e) => {
                tracing::error!(error = %e, "syncing the write-ahead log failed");
                if cause == SyncCause::Shutdown {
                    return;
                }
                unsynced.failed();
            }
        }
    }
}

#[cfg(test)]
pub(super) mod testing {
    use parking_lot::{Condvar, Mutex};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Holds the syncer's next sync, once armed, until the test lets it go.
    #[derive(Default)]
    pub struct Gate {
        armed: AtomicBool,
        /// (the syncer is at the gate, the test let it go)
        state: Mutex<(bool, bool)>,
        changed: Condvar,
    }

    impl Gate {
        pub fn arm(&self) {
            self.armed.store(true, Ordering::SeqCst);
        }

        /// Blocks until the syncer is at the gate.
        pub fn wait_reached(&self) {
            let mut state = self.state.lock();
            while !state.0 {
                self.changed.wait(&mut state);
            }
        }

        /// Lets it go; does not block, and may be called again.
        pub fn release(&self) {
            self.state.lock().1 = true;
            self.changed.notify_all();
        }

        pub(super) fn pass(&self) {
            if !self.armed.swap(false, Ordering::SeqCst) {
                return;
            }
            let mut state = self.state.lock();
            state.0 = true;
            self.changed.notify_all();
            while !state.1 {
                self.changed.wait(&mut state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RocksKv, RocksOptions};
    use crate::metrics::{StoreMetrics, SyncCause};
    use crate::{Store, Table, WriteSet};
    use std::sync::Arc;
    use std::time::Duration;

    const T: Table = Table("t");

    struct Release(Arc<super::Unsynced>);

    impl Drop for Release {
        fn drop(&mut self) {
            self.0.gate.release();
        }
    }

    fn logged(key: &str) -> WriteSet {
        let mut writes = WriteSet::new();
        writes.put(T, key, "v");
        writes.logged_only();
        writes
    }

    /// A slow fsync of the log holds up no write: the writes behind it are
    /// logged and acknowledged while it runs, and it is counted once done.
    #[tokio::test]
    async fn writes_go_on_while_the_log_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (options, metrics) = (RocksOptions::default(), StoreMetrics::new());
        let kv = Arc::new(RocksKv::open(dir.path(), &[T], options, metrics.clone()).unwrap());
        let unsynced = kv.unsynced.clone();
        let store = Store::new(kv);
        // Dropped first, so that a failing test never leaves the syncer held.
        let _released = Release(unsynced.clone());
        unsynced.gate.arm();
        store.commit(logged("a")).await.unwrap();
        // The syncer takes "a" at its deadline and stops at the gate, mid-sync.
        let at_gate = tokio::task::spawn_blocking({
            let unsynced = unsynced.clone();
            move || unsynced.gate.wait_reached()
        });
        tokio::time::timeout(Duration::from_secs(30), at_gate)
            .await
            .expect("the deadline sync began")
            .unwrap();
        // Were the writer held by the sync, this commit would wait for the gate.
        tokio::time::timeout(Duration::from_secs(30), store.commit(logged("b")))
            .await
            .expect("a logged write went on during the sync")
            .unwrap();
        assert_eq!(metrics.syncs(SyncCause::Deadline), 0);
        unsynced.gate.release();
        store.close().await;
        // "a" at its deadline; "b", marked after the sync took "a", at the
        // next deadline or as the store closed.
        let (deadline, shutdown) = (
            metrics.syncs(SyncCause::Deadline),
            metrics.syncs(SyncCause::Shutdown),
        );
        assert!(
            deadline >= 1 && deadline + shutdown == 2,
            "{deadline} {shutdown}"
        );
        assert_eq!(metrics.syncs(SyncCause::Commit), 0);
        assert_eq!(metrics.sync_seconds.get_sample_count(), 2, "each one timed");
    }
}
