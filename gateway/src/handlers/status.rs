//! `GET /status/:job_id`: full output for whoever may read it, status and timing
//! for anyone else.

use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use crate::views::StatusView;
use gpubridge_protocol::JobId;
use hyper::{HeaderMap, StatusCode};

pub async fn handle(app: &App, headers: &HeaderMap, id: &str) -> Result<HttpResponse, ApiError> {
    let caller = app.access.identify(headers)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No job with id {id:?}"),
            "Job ids come from POST /run and POST /inference.",
        )
    };
    let id = JobId::parse(id).ok_or_else(not_found)?;
    let record = app
        .scheduler
        .status(&id)
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?
        .ok_or_else(not_found)?;
    let full = app.access.may_read_output(&caller, &record);
    Ok(json(StatusCode::OK, &StatusView::of(&record, full)))
}
