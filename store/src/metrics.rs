//! What operators see of the store: commits and how they were grouped, time to
//! durable, the queue in front of the writer, and records that cannot be read.

use crate::kv::MemoryUse;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Why the write-ahead log was fsync'd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncCause {
    /// A group holding a commit that asked for it.
    Commit,
    /// Logged-only commits had waited their longest.
    Deadline,
    /// The writer stopped.
    Shutdown,
}

impl SyncCause {
    fn label(self) -> &'static str {
        match self {
            SyncCause::Commit => "commit",
            SyncCause::Deadline => "deadline",
            SyncCause::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone)]
pub struct StoreMetrics {
    pub(crate) commits: IntCounter,
    pub(crate) group_size: Histogram,
    pub(crate) write_seconds: Histogram,
    pub(crate) sync_seconds: Histogram,
    pub(crate) queued: IntGauge,
    syncs: IntCounterVec,
    undecodable: IntCounterVec,
    memory: IntGaugeVec,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics::new()
    }
}

impl StoreMetrics {
    /// Metrics not yet registered anywhere (tests, offline tools).
    pub fn new() -> StoreMetrics {
        // The options below are constants, so construction cannot fail.
        #[allow(clippy::expect_used)]
        StoreMetrics {
            commits: IntCounter::new(
                "gpubridge_store_commits_total",
                "Write sets committed (each acknowledged only once durable)",
            )
            .expect("valid metric"),
            group_size: Histogram::with_opts(
                HistogramOpts::new(
                    "gpubridge_store_group_commit_size",
                    "Write sets sharing one storage write (and one fsync)",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
            )
            .expect("valid metric"),
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gpubridge_store_write_seconds",
                    "Time of one group write, fsync included",
                )
                .buckets(vec![
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 1.0,
                ]),
            )
            .expect("valid metric"),
            sync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gpubridge_store_sync_seconds",
                    "Time of one fsync of the write-ahead log for logged-only writes, taken beside the writer",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ]),
            )
            .expect("valid metric"),
            queued: IntGauge::new(
                "gpubridge_store_queued_commits",
                "Write sets waiting for the writer",
            )
            .expect("valid metric"),
            syncs: IntCounterVec::new(
                Opts::new(
                    "gpubridge_store_syncs_total",
                    "fsyncs of the write-ahead log, by cause: commit (a group with a commit that asked for one), deadline (logged-only commits waited their longest), shutdown",
                ),
                &["cause"],
            )
            .expect("valid metric"),
            undecodable: IntCounterVec::new(
                Opts::new(
                    "gpubridge_store_undecodable_records_total",
                    "Stored records that could not be read, by table",
                ),
                &["table"],
            )
            .expect("valid metric"),
            memory: IntGaugeVec::new(
                Opts::new(
                    "gpubridge_store_memory_bytes",
                    "Memory the store holds, by part: memtables, table_readers (file indexes and filters), block_cache",
                ),
                &["part"],
            )
            .expect("valid metric"),
        }
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.commits.clone()))?;
        registry.register(Box::new(self.group_size.clone()))?;
        registry.register(Box::new(self.write_seconds.clone()))?;
        registry.register(Box::new(self.sync_seconds.clone()))?;
        registry.register(Box::new(self.queued.clone()))?;
        registry.register(Box::new(self.syncs.clone()))?;
        registry.register(Box::new(self.undecodable.clone()))?;
        registry.register(Box::new(self.memory.clone()))?;
        Ok(())
    }

    pub(crate) fn set_memory(&self, memory: MemoryUse) {
        let parts = [
            ("memtables", memory.memtables),
            ("table_readers", memory.table_readers),
            ("block_cache", memory.block_cache),
        ];
        for (part, bytes) in parts {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            self.memory.with_label_values(&[part]).set(bytes);
        }
    }

    pub(crate) fn count_sync(&self, cause: SyncCause) {
        self.syncs.with_label_values(&[cause.label()]).inc();
    }

    /// fsyncs for this cause so far.
    pub fn syncs(&self, cause: SyncCause) -> u64 {
        self.syncs.with_label_values(&[cause.label()]).get()
    }

    pub(crate) fn count_undecodable(&self, table: &str) {
        self.undecodable.with_label_values(&[table]).inc();
    }

    /// Undecodable records seen in `table` so far.
    pub fn undecodable(&self, table: &str) -> u64 {
        self.undecodable.with_label_values(&[table]).get()
    }
}
