//! What can go wrong between GPU-Bridge and its store.

use crate::codec::DecodeError;

/// Storage failures. `Clone`: one group commit's outcome is every member's.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("stored data is from an incompatible version (schema {found}, this build reads up to {supported})")]
    Schema { found: u32, supported: u32 },
    #[error("no table {0:?} in this store")]
    UnknownTable(&'static str),
    #[error("{table} record {key} is unreadable: {source}")]
    Undecodable {
        table: &'static str,
        key: String,
        source: DecodeError,
    },
    #[error("this store was opened read-only")]
    ReadOnly,
    #[error("the store is shut down")]
    Closed,
    #[error("storage is unavailable for a moment: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// A stored record is damaged or from an unknown version: not retryable,
    /// and never to be mistaken for an absent record.
    pub fn is_undecodable(&self) -> bool {
        matches!(self, StoreError::Undecodable { .. })
    }

    /// May the same write succeed later (a full disk freed, a reopen done)?
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend(_) | StoreError::Unavailable(_))
    }
}
