//! One module per endpoint family.

pub mod account;
pub mod admin;
pub mod catalog;
pub mod inference;
pub mod nodes;
pub mod ops;
pub mod run;
pub mod status;

use hyper::header::HeaderName;

/// Marks an answer that repeats an earlier job for the same Idempotency-Key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
