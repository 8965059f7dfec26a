//! One module per endpoint family.

pub mod catalog;
pub mod inference;
pub mod ops;
pub mod run;
pub mod status;

use crate::app::App;
use crate::error::ApiError;
use gpubridge_scheduler::SubmitError;

impl App {
    /// A scheduler refusal in the spec's envelope.
    pub(crate) fn submit_error(&self, error: SubmitError) -> ApiError {
        let catalog = self.scheduler.catalog();
        ApiError::from_submit(
            error,
            || catalog.service_keys(),
            self.scheduler.config().breaker.open_seconds,
        )
    }
}
