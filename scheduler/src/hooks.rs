//! The settlement seam through which billing sees jobs finish: whatever a hook
//! adds to the write set is committed atomically with the job's terminal state.

use crate::job::JobRecord;
use gpubridge_store::WriteSet;

pub trait JobHooks: Send + Sync + 'static {
    /// Called once per job as it reaches `completed` or `failed`, before it is
    /// persisted: may record the settlement on the job and add writes.
    fn on_terminal(&self, job: &mut JobRecord, writes: &mut WriteSet);

    /// Called after that write is durable.
    fn after_persist(&self, _job: &JobRecord) {}
}

/// No billing: nothing to add.
pub struct NoHooks;

impl JobHooks for NoHooks {
    fn on_terminal(&self, _job: &mut JobRecord, _writes: &mut WriteSet) {}
}

/// Several hooks, each seeing every job in turn (billing's credits, x402's proofs).
pub struct AllHooks(pub Vec<std::sync::Arc<dyn JobHooks>>);

impl JobHooks for AllHooks {
    fn on_terminal(&self, job: &mut JobRecord, writes: &mut WriteSet) {
        for hooks in &self.0 {
            hooks.on_terminal(job, writes);
        }
    }

    fn after_persist(&self, job: &JobRecord) {
        for hooks in &self.0 {
            hooks.after_persist(job);
        }
    }
}
