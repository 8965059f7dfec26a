//! The seam through which billing sees jobs finish: whatever a hook adds to the
//! batch is written atomically with the job's terminal state.

use crate::job::JobRecord;
use crate::store::Batch;

pub trait JobHooks: Send + Sync + 'static {
    /// Called exactly once per job, as it reaches `completed` or `failed`.
    fn on_terminal(&self, job: &JobRecord, batch: &mut Batch);
}

/// No billing: nothing to add.
pub struct NoHooks;

impl JobHooks for NoHooks {
    fn on_terminal(&self, _job: &JobRecord, _batch: &mut Batch) {}
}
