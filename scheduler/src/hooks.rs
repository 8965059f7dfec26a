//! The settlement seam through which billing sees jobs finish: whatever a hook
//! adds to the write set is committed atomically with the job's terminal state.

use crate::job::JobRecord;
use gpubridge_protocol::JobId;
use gpubridge_store::{StoreError, View, WriteSet};

/// Whether a finished job's data may go now that its retention is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Proceed,
    /// Not yet: something still needs it (a webhook being delivered).
    Hold,
}

pub trait JobHooks: Send + Sync + 'static {
    /// Called once per job as it reaches `completed` or `failed`, before it is
    /// persisted: may record the settlement on the job and add writes.
    fn on_terminal(&self, job: &mut JobRecord, writes: &mut WriteSet);

    /// Called after that write is durable.
    fn after_persist(&self, _job: &JobRecord) {}

    /// Asked, with the store in view, before a finished job's retention
    /// sweep removes its data.
    fn on_expiry(&self, _view: &dyn View, _job: &JobId) -> Result<Expiry, StoreError> {
        Ok(Expiry::Proceed)
    }

    /// The job's data goes in `writes`: remove what this hook keeps for it.
    fn expire(&self, _job: &JobId, _writes: &mut WriteSet) {}
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

    fn on_expiry(&self, view: &dyn View, job: &JobId) -> Result<Expiry, StoreError> {
        for hooks in &self.0 {
            if hooks.on_expiry(view, job)? == Expiry::Hold {
                return Ok(Expiry::Hold);
            }
        }
        Ok(Expiry::Proceed)
    }

    fn expire(&self, job: &JobId, writes: &mut WriteSet) {
        for hooks in &self.0 {
            hooks.expire(job, writes);
        }
    }
}
