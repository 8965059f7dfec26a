//! Restart recovery: every job accepted but not finished when the daemon stopped
//! (cleanly or by kill -9) is resumed, or failed cleanly if its deadline passed.

use crate::job::{now_ms, JobRecord};
use crate::scheduler::Inner;
use crate::store::StoreError;
use gpubridge_protocol::JobStatus;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn resume(inner: &Arc<Inner>) -> Result<(), StoreError> {
    let ids = inner.store.unfinished_ids()?;
    let (mut resumed, mut expired) = (0usize, 0usize);
    for id in ids {
        let Some(mut record) = inner.store.job(&id)? else {
            inner.store.forget_unfinished(&id)?;
            continue;
        };
        if record.status.is_terminal() {
            inner.store.forget_unfinished(&id)?;
            continue;
        }
        let input = serde_json::from_str::<Value>(&record.input);
        match input {
            Ok(input) if now_ms() < record.deadline_ms => {
                record.status = JobStatus::Pending;
                record.started_ms = None;
                record.recoveries += 1;
                inner.live_count.fetch_add(1, Ordering::AcqRel);
                inner.metrics.recovered.inc();
                crate::runner::spawn(inner.clone(), record, input);
                resumed += 1;
            }
            _ => {
                fail(inner, &mut record);
                expired += 1;
            }
        }
    }
    if resumed + expired > 0 {
        tracing::info!(resumed, expired, "recovered unfinished jobs after restart");
    }
    Ok(())
}

fn fail(inner: &Inner, record: &mut JobRecord) {
    record.status = JobStatus::Failed;
    record.finished_ms = Some(now_ms());
    record.error = Some(
        "interrupted by a scheduler restart, and its deadline passed before it could be retried"
            .into(),
    );
    crate::runner::persist_terminal(inner, record);
}
