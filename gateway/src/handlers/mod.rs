//! One module per endpoint family.

pub mod account;
pub mod admin;
pub mod catalog;
pub mod inference;
pub mod nodes;
pub mod ops;
pub mod run;
pub mod status;

use crate::app::App;
use crate::error::ApiError;
use gpubridge_scheduler::accounts::Admission;
use gpubridge_scheduler::{JobRecord, SubmitError};
use hyper::header::HeaderName;
use hyper::StatusCode;

/// Marks an answer that repeats an earlier job for the same Idempotency-Key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

impl App {
    /// The job an admission stands for, and whether it is an idempotent replay.
    pub(crate) fn admitted(&self, admission: Admission) -> Result<(JobRecord, bool), ApiError> {
        match admission {
            Admission::Accepted(record) => Ok((*record, false)),
            Admission::Replayed(id) => match self.scheduler.status(&id) {
                Ok(Some(record)) => Ok((record, true)),
                other => {
                    tracing::error!(job_id = %id, found = ?other.as_ref().map(Option::is_some), "idempotent replay of a missing job");
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The job for this Idempotency-Key cannot be read right now",
                        "Retry shortly with the same Idempotency-Key; nothing new was charged.",
                    )
                    .retry_after(1))
                }
            },
        }
    }

    /// A scheduler refusal in the spec's envelope.
    pub(crate) fn submit_error(&self, error: SubmitError) -> ApiError {
        ApiError::from_scheduler(&self.scheduler, error)
    }
}
