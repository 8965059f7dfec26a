//! Tables and the write sets committed to them. A write set is applied whole or
//! not at all, whatever tables it spans: a job and the ledger entry paying for
//! it are one write set.

use crate::codec::{encode, Record};

/// A named keyspace (a RocksDB column family). Declared by the crate owning its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Table(pub &'static str);

impl Table {
    /// Small facts about the store itself (its schema version).
    pub const META: Table = Table("meta");

    pub fn name(self) -> &'static str {
        self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
}

impl Op {
    pub fn table(&self) -> Table {
        match self {
            Op::Put { table, .. } | Op::Delete { table, .. } => *table,
        }
    }
}

/// When a commit must be on disk, on a store that fsyncs at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Durability {
    /// Acknowledged once in the write-ahead log, so it survives the process
    /// crashing; fsync'd with the next synced commit or within
    /// [`LOGGED_SYNC_WITHIN`]. For records whose loss in a power failure breaks
    /// no promise: an answer already delivered, with no money in it.
    Logged,
    /// fsync'd before it is acknowledged.
    #[default]
    Synced,
}

/// The longest a [`Durability::Logged`] commit waits for its fsync.
pub const LOGGED_SYNC_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest a [`Durability::Logged`] commit nobody waits on stays queued
/// before the writer takes it, so that many share one wake-up and one write.
pub const LOGGED_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    ops: Vec<Op>,
    durability: Durability,
}

impl WriteSet {
    pub fn new() -> WriteSet {
        WriteSet::default()
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put {
            table,
            key: key.into(),
            value: value.into(),
        });
    }

    /// Stores a record under its current version.
    pub fn put_record<R: Record>(&mut self, table: Table, key: impl Into<Vec<u8>>, record: &R) {
        self.put(table, key, encode(record));
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete {
            table,
            key: key.into(),
        });
    }

    /// Adds another set's writes after this one's; the whole is as durable as
    /// the stricter of the two asks.
    pub fn append(&mut self, other: WriteSet) {
        self.ops.extend(other.ops);
        self.durability = self.durability.max(other.durability);
    }

    /// Lets this set be acknowledged before its fsync (see [`Durability::Logged`]).
    pub fn logged_only(&mut self) {
        self.durability = Durability::Logged;
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}
