//! Restart recovery: every job accepted but not finished when the daemon stopped
//! (cleanly or by kill -9) is resumed, or failed cleanly if its deadline passed.

use crate::job::{now_ms, JobRecord};
use crate::runner::Start;
use crate::scheduler::Inner;
use gpubridge_protocol::JobStatus;
use gpubridge_store::{StoreError, WriteSet};
use serde_json::Value;
use std::sync::Arc;

pub(crate) async fn resume(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let ids = crate::jobs::unfinished(&inner.store).await?;
    let keys = ids.iter().map(|id| id.as_bytes().to_vec()).collect();
    let records = inner
        .store
        .get_many::<JobRecord>(crate::jobs::JOBS, keys)
        .await?;
    let (mut resumed, mut expired, mut stale) = (0usize, 0usize, WriteSet::new());
    for (id, record) in ids.iter().zip(records) {
        let Some(mut record) = record.filter(|r| !r.status.is_terminal()) else {
            stale.delete(crate::jobs::UNFINISHED, id.as_bytes());
            continue;
        };
        match serde_json::from_str::<Value>(&record.input) {
            Ok(input) if now_ms() < record.deadline_ms => {
                record.status = JobStatus::Pending;
                record.started_ms = None;
                record.recoveries += 1;
                // Resumed jobs are counted whatever the limit: they were accepted.
                let _ = inner.live.try_count(usize::MAX, record.owner, None);
                inner.metrics.recovered.inc();
                let (_, run) =
                    crate::runner::job(inner.clone(), record, input, None, None, Start::Written);
                tokio::spawn(run);
                resumed += 1;
            }
            _ => {
                fail(inner, &mut record).await;
                expired += 1;
            }
        }
    }
    if !stale.is_empty() {
        inner.store.commit(stale).await?;
    }
    if resumed + expired > 0 {
        tracing::info!(resumed, expired, "recovered unfinished jobs after restart");
    }
    Ok(())
}

async fn fail(inner: &Inner, record: &mut JobRecord) {
    record.status = JobStatus::Failed;
    record.finished_ms = Some(now_ms());
    record.error = Some(
        "interrupted by a scheduler restart, and its deadline passed before it could be retried"
            .into(),
    );
    crate::terminal::persist(inner, record).await;
}
