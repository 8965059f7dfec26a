//! Types shared by every GPU-Bridge component: money in integer micro-dollars,
//! routing priorities, job states, and the messages and frames between the
//! scheduler and node agents. Nothing here does I/O.

mod job;
mod money;
pub mod node;
mod priority;
pub mod wire;

pub use job::{JobStatus, UnknownStatus};
pub use money::{Micros, MoneyError};
pub use priority::{Priority, UnknownPriority};
pub use wire::{WireError, PROTOCOL_VERSION};
