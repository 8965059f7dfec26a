//! The storage port. Everything GPU-Bridge persists goes through [`Store`], a
//! handle on any [`Kv`]: an ordered key-value store with atomic multi-table
//! commits. Nothing here names a domain type, and no RocksDB type leaves `rocks`.
//!
//! - A new table: declare a [`Table`] in the crate that owns its records and add
//!   it to that crate's `TABLES`.
//! - A new record type: implement [`Record`] with its own `VERSION`; bump the
//!   version and decode the old layout in `upgrade` when the layout changes.
//! - A new backend (a distributed store): implement [`Kv`] (commits through
//!   [`WriteSlot`], reads through [`View`]); [`MemoryKv`] is the smallest example.

mod codec;
mod error;
mod handle;
mod kv;
mod memory;
mod metrics;
mod migrate;
mod queue;
mod rocks;
mod store;
mod write;

#[cfg(test)]
mod fuzz;

pub use codec::{decode, encode, payload_of, DecodeError, Record};
pub use error::StoreError;
pub use kv::{
    Ack, BoxFuture, Kv, MemoryUse, ReadMode, Reader, SlotSink, Then, View, Visit, WriteSlot,
};
pub use memory::MemoryKv;
pub use metrics::{StoreMetrics, SyncCause};
pub use migrate::add_version_bytes;
pub use rocks::{RocksKv, RocksOptions};
pub use store::{Page, Store};
pub use write::{Durability, Op, Table, WriteSet, LOGGED_LINGER, LOGGED_SYNC_WITHIN};
