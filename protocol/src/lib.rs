//! Types shared by every GPU-Bridge component: money in integer micro-dollars,
//! account and job ids, routing priorities, job states, join tokens, and the
//! messages and frames between the scheduler and node agents. Nothing here opens
//! a connection but the media fetcher (feature `media`); `stream` reads and
//! writes frames on whatever byte stream it is given.
//!
//! Where to add what: a type two crates must agree on goes here, in the module
//! named for what it is; a node-agent message goes in `node` (bump
//! `PROTOCOL_VERSION` in `wire` when old peers could misread it).

pub mod chat_request;
#[cfg(feature = "media")]
pub mod chat_stream;
mod ids;
mod job;
#[cfg(feature = "media")]
pub mod media;
mod money;
pub mod node;
pub mod openai;
mod priority;
pub mod signature;
pub mod sse;
pub mod stream;
pub mod token;
pub mod wire;

#[cfg(test)]
mod fuzz;

pub use ids::{AccountId, BadAccountId, JobId};
pub use job::{JobStatus, UnknownStatus};
pub use money::{Micros, MoneyError};
pub use priority::{Priority, UnknownPriority};
pub use stream::{write_frame, FrameReader, StreamError};
pub use token::{JoinToken, TokenError};
pub use wire::{WireError, PROTOCOL_VERSION};
