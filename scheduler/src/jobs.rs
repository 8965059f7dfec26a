//! Where jobs are kept: their records, the set of those not yet finished (what
//! a restart resumes), and learned estimates. A job is written before it is
//! acknowledged; its terminal state leaves the unfinished set in the same write.

use crate::job::JobRecord;
use crate::retention::{RetentionConfig, EXPIRING};
use gpubridge_protocol::JobId;
use gpubridge_store::{ReadMode, Store, StoreError, Table, WriteSet};
use std::ops::ControlFlow;

/// Job records by id.
pub const JOBS: Table = Table("jobs");
/// Ids of jobs not yet terminal.
pub const UNFINISHED: Table = Table("unfinished");
/// Learned latency and duration estimates, `f64` little-endian by name.
pub const ESTIMATES: Table = Table("estimates");

/// The tables this crate owns.
pub const TABLES: [Table; 4] = [JOBS, UNFINISHED, ESTIMATES, EXPIRING];

/// A newly accepted job, marked unfinished.
pub fn write_new(writes: &mut WriteSet, job: &JobRecord) {
    writes.put_record(JOBS, job.id.as_bytes(), job);
    writes.put(UNFINISHED, job.id.as_bytes(), Vec::new());
}

/// A job's new state; a terminal one leaves the unfinished set and is
/// indexed under the time its data expires.
pub fn write_state(writes: &mut WriteSet, job: &JobRecord, retention: &RetentionConfig) {
    if job.status.is_terminal() {
        writes.delete(UNFINISHED, job.id.as_bytes());
        write_ended(writes, job, retention);
    } else {
        writes.put_record(JOBS, job.id.as_bytes(), job);
    }
}

/// A terminal job, indexed under the time its data expires. Alone, for a job
/// written first at its end (`deferred.rs`), which was never in the
/// unfinished set: no tombstone for what was never there.
pub fn write_ended(writes: &mut WriteSet, job: &JobRecord, retention: &RetentionConfig) {
    writes.put_record(JOBS, job.id.as_bytes(), job);
    crate::retention::index(writes, job, retention);
}

pub async fn get(store: &Store, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
    store.get(JOBS, id.as_bytes().to_vec()).await
}

/// Ids of every job accepted and not yet terminal.
pub async fn unfinished(store: &Store) -> Result<Vec<JobId>, StoreError> {
    store
        .read(ReadMode::Latest, |view| {
            let mut ids = Vec::new();
            view.scan(UNFINISHED, &[], None, &mut |key, _| {
                match std::str::from_utf8(key).ok().and_then(JobId::parse) {
                    Some(id) => ids.push(id),
                    None => {
                        tracing::error!(key = ?key, "unfinished-job entry with a bad id skipped")
                    }
                }
                ControlFlow::Continue(())
            })?;
            Ok(ids)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::sample;
    use gpubridge_protocol::JobStatus;

    #[tokio::test]
    async fn unfinished_set_follows_job_state() {
        let store = Store::memory(&TABLES);
        let (a, b) = (sample("a"), sample("b"));
        let mut writes = WriteSet::new();
        write_new(&mut writes, &a);
        write_new(&mut writes, &b);
        store.commit(writes).await.unwrap();
        let mut done = a.clone();
        done.status = JobStatus::Completed;
        let mut writes = WriteSet::new();
        write_state(&mut writes, &done, &RetentionConfig::default());
        store.commit(writes).await.unwrap();
        assert_eq!(unfinished(&store).await.unwrap(), vec![b.id.clone()]);
        assert_eq!(
            get(&store, &a.id).await.unwrap().unwrap().status,
            JobStatus::Completed
        );
        assert_eq!(get(&store, &JobId::random()).await.unwrap(), None);
    }
}
