//! Types shared by every GPU-Bridge component: money in integer micro-dollars,
//! routing priorities and job states. Nothing here does I/O.

mod job;
mod money;
mod priority;

pub use job::{JobStatus, UnknownStatus};
pub use money::{Micros, MoneyError};
pub use priority::{Priority, UnknownPriority};
