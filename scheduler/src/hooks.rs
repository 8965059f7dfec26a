//! The seam through which billing sees jobs finish: whatever a hook adds to the
//! batch is written atomically with the job's terminal state.

use crate::job::JobRecord;
use crate::store::Batch;

pub trait JobHooks: Send + Sync + 'static {
    /// Called once per job as it reaches `completed` or `failed`, before it is
    /// persisted: may record the settlement on the job and add writes to the batch.
    fn on_terminal(&self, job: &mut JobRecord, batch: &mut Batch);

    /// Called after that write reached the store.
    fn after_persist(&self, _job: &JobRecord) {}
}

/// No billing: nothing to add.
pub struct NoHooks;

impl JobHooks for NoHooks {
    fn on_terminal(&self, _job: &mut JobRecord, _batch: &mut Batch) {}
}
