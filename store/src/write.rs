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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    ops: Vec<Op>,
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

    /// Adds another set's writes after this one's.
    pub fn append(&mut self, other: WriteSet) {
        self.ops.extend(other.ops);
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
