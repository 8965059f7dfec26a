//! The seam where accounts and payments decide who may run what. This build has
//! no accounts: every caller is anonymous and a job's id is its read token.
//! The accounts and x402 issues implement `Access` without touching handlers.

use crate::error::ApiError;
use gpubridge_scheduler::{Batch, JobRecord, PreparedJob};
use hyper::HeaderMap;

/// Who is calling, as far as the headers prove.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub account: Option<String>,
}

/// Permission to run one job, and the writes that pay for it (persisted atomically
/// with the job itself).
pub struct Admitted {
    pub owner: Option<String>,
    pub batch: Batch,
}

pub trait Access: Send + Sync + 'static {
    fn identify(&self, headers: &HeaderMap) -> Result<Caller, ApiError>;

    fn admit(
        &self,
        caller: &Caller,
        job: &PreparedJob,
        headers: &HeaderMap,
    ) -> Result<Admitted, ApiError>;

    /// May this caller see the job's output (not only its status)?
    fn may_read_output(&self, caller: &Caller, job: &JobRecord) -> bool {
        job.owner.is_none() || job.owner == caller.account
    }
}

/// No accounts configured: everything is allowed and unowned.
pub struct OpenAccess;

impl Access for OpenAccess {
    fn identify(&self, _headers: &HeaderMap) -> Result<Caller, ApiError> {
        Ok(Caller::default())
    }

    fn admit(
        &self,
        caller: &Caller,
        _job: &PreparedJob,
        _headers: &HeaderMap,
    ) -> Result<Admitted, ApiError> {
        Ok(Admitted {
            owner: caller.account.clone(),
            batch: Batch::default(),
        })
    }
}
