//! A job's end: its terminal record shown to whoever waits, and written with
//! what billing adds, in one commit. Usually written first, then shown, so
//! whoever reads `completed` or `failed` also sees what it was charged. A job
//! only its waiting submitter knows of ([`Durability::Logged`]) is shown
//! first; its write is queued with what follows it (the job leaving memory),
//! which runs where the write ends, so no task waits for it.

use crate::job::JobRecord;
use crate::live::LiveJob;
use crate::scheduler::Inner;
use gpubridge_protocol::JobStatus;
use gpubridge_store::{Durability, WriteSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Makes the terminal record the job's and [`shown`]s it.
pub(crate) fn show(inner: &Inner, live: &LiveJob, record: Arc<JobRecord>) -> bool {
    *live.record.lock() = record.clone();
    shown(inner, live, &record)
}

/// The job's record is terminal: learns from its duration and wakes whoever
/// waits; whether someone was waiting to take it.
pub(crate) fn shown(inner: &Inner, live: &LiveJob, record: &JobRecord) -> bool {
    // A stopped job ran only part of the way: it says nothing about durations.
    if let (JobStatus::Completed, Some(seconds), Some(ewma)) = (
        record.status,
        record.execution_seconds(),
        inner.service_seconds.get(&record.service),
    ) {
        ewma.observe(seconds, inner.cfg.ewma_alpha);
    }
    let handed = live.has_waiters();
    live.done.set();
    handed
}

/// A terminal record's writes, with whatever billing adds to it and them.
pub(crate) fn writes(inner: &Inner, record: &mut JobRecord, durability: Durability) -> WriteSet {
    let mut writes = WriteSet::new();
    inner.hooks.on_terminal(record, &mut writes);
    let retention = &inner.cfg.retention;
    match durability {
        // Never written before: the job's first write is its end.
        Durability::Logged => {
            crate::jobs::write_ended(&mut writes, record, retention);
            writes.logged_only();
        }
        Durability::Synced => crate::jobs::write_state(&mut writes, record, retention),
    }
    writes
}

/// Writes a terminal record with whatever billing adds, in one commit; whether
/// it is durable.
pub(crate) async fn persist(inner: &Inner, record: &mut JobRecord) -> bool {
    let writes = writes(inner, record, Durability::Synced);
    commit(inner, record, writes).await
}

/// Commits a terminal record's writes, retrying while the store refuses them
/// for a while; whether they are durable (to the degree they asked).
pub(crate) async fn commit(inner: &Inner, record: &JobRecord, writes: WriteSet) -> bool {
    // Until it is durable the job holds its place (and its reservation): a
    // store refusing writes (full disk) is retried until it takes them again.
    let mut wait = Duration::from_millis(100);
    let mut writes = writes;
    let durable = loop {
        match inner.store.commit_or_return(writes).await {
            Ok(()) => {
                inner.hooks.after_persist(record);
                break true;
            }
            // Still unfinished on disk, so the job runs again after the restart.
            Err((e, _)) if !e.is_transient() || inner.shutting_down.load(Ordering::Acquire) => {
                tracing::error!(job_id = %record.id, error = %e, "could not persist finished job before shutdown");
                break false;
            }
            Err((e, refused)) => {
                tracing::warn!(job_id = %record.id, error = %e, retry_ms = wait.as_millis() as u64, "could not persist finished job; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                writes = refused;
            }
        }
    };
    counted(inner, record);
    durable
}

/// Queues the logged write of a job already shown. Its end follows where the
/// write ends (the store's writer thread); a refused write is retried in a task.
pub(crate) async fn write_shown(
    inner: &Arc<Inner>,
    live: &Arc<LiveJob>,
    record: Arc<JobRecord>,
    writes: WriteSet,
    handed: bool,
) {
    let slot = match inner.store.slot().await {
        Ok(slot) => slot,
        Err(_) => {
            let durable = commit(inner, &record, writes).await;
            return ended(inner, live, durable, handed);
        }
    };
    let (inner, live) = (inner.clone(), live.clone());
    let runtime = tokio::runtime::Handle::current();
    slot.submit_then(
        writes,
        Box::new(move |result| match result {
            Ok(()) => {
                inner.hooks.after_persist(&record);
                counted(&inner, &record);
                ended(&inner, &live, true, handed);
            }
            Err((_, writes)) => {
                runtime.spawn(async move {
                    let durable = commit(&inner, &record, writes).await;
                    ended(&inner, &live, durable, handed);
                });
            }
        }),
    );
}

/// A job no longer pending or running, in the gauges.
pub(crate) fn leaves_queue_or_run(inner: &Inner, record: &JobRecord) {
    match record.status {
        JobStatus::Running => inner.metrics.running.dec(),
        _ => inner.metrics.pending.dec(),
    }
}

/// A job whose first write failed (`acceptance.rs`): nobody learned of it and
/// nothing was written or paid for it, so it leaves without an end.
pub(crate) fn abandoned(inner: &Inner, live: &LiveJob) {
    leaves_queue_or_run(inner, &live.record.lock());
    live.done.set();
    inner.live.finished(live, true);
}

/// The job's write is over (`durable` or given up): it leaves the unfinished.
pub(crate) fn ended(inner: &Inner, live: &LiveJob, durable: bool, handed: bool) {
    if let (true, Some(unwritten)) = (durable, &live.unwritten) {
        unwritten.written();
    }
    inner.live.finished(live, handed);
}

fn counted(inner: &Inner, record: &JobRecord) {
    if let Some(m) = inner.metrics.service(&record.service) {
        match record.status {
            JobStatus::Completed => m.completed.inc(),
            JobStatus::Cancelled => m.cancelled.inc(),
            _ => m.failed.inc(),
        }
    }
    tracing::debug!(job_id = %record.id, service = %record.service, status = record.status.as_str(), "job finished");
}
