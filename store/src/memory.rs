//! An in-memory [`Kv`]: ordered maps behind one lock, commits applied at once.
//! For unit tests, and the smallest example of a backend behind the port.

use crate::error::StoreError;
use crate::kv::{Ack, BoxFuture, Kv, ReadMode, Reader, SlotSink, Then, View, Visit, WriteSlot};
use crate::metrics::StoreMetrics;
use crate::write::{Op, Table, WriteSet};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type Tables = HashMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

pub struct MemoryKv {
    tables: Arc<RwLock<Tables>>,
    metrics: StoreMetrics,
}

impl MemoryKv {
    pub fn new(tables: &[Table]) -> MemoryKv {
        MemoryKv {
            tables: Arc::new(RwLock::new(
                tables.iter().map(|t| (*t, BTreeMap::new())).collect(),
            )),
            metrics: StoreMetrics::new(),
        }
    }
}

struct MemorySlot {
    tables: Arc<RwLock<Tables>>,
    metrics: StoreMetrics,
}

impl MemorySlot {
    fn apply(&self, writes: &WriteSet) -> Result<(), StoreError> {
        let mut tables = self.tables.write();
        if let Some(op) = writes
            .ops()
            .iter()
            .find(|op| !tables.contains_key(&op.table()))
        {
            return Err(StoreError::UnknownTable(op.table().name()));
        }
        for op in writes.ops() {
            match op {
                Op::Put { table, key, value } => {
                    tables
                        .entry(*table)
                        .or_default()
                        .insert(key.clone(), value.clone());
                }
                Op::Delete { table, key } => {
                    tables.entry(*table).or_default().remove(key);
                }
            }
        }
        self.metrics.commits.inc();
        Ok(())
    }
}

impl SlotSink for MemorySlot {
    fn submit(self: Box<Self>, writes: WriteSet) -> Ack {
        Ack::done(self.apply(&writes))
    }

    fn submit_then(self: Box<Self>, writes: WriteSet, then: Then) {
        let result = self.apply(&writes);
        then(result.map_err(|e| (e, writes)));
    }
}

struct MemoryView<'a>(&'a Tables);

impl View for MemoryView<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self
            .0
            .get(&table)
            .ok_or(StoreError::UnknownTable(table.name()))?;
        Ok(map.get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let map = self
            .0
            .get(&table)
            .ok_or(StoreError::UnknownTable(table.name()))?;
        let from = start.unwrap_or(prefix).to_vec();
        for (key, value) in map.range(from..) {
            if !key.starts_with(prefix) || visit(key, value).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Kv for MemoryKv {
    fn slot(&self) -> BoxFuture<'_, Result<WriteSlot, StoreError>> {
        let sink = MemorySlot {
            tables: self.tables.clone(),
            metrics: self.metrics.clone(),
        };
        Box::pin(async move { Ok(WriteSlot::new(Box::new(sink))) })
    }

    fn read(&self, _mode: ReadMode, reader: Reader) -> BoxFuture<'_, Result<(), StoreError>> {
        // One read lock for the whole closure: every read sees one instant.
        Box::pin(async move {
            let tables = self.tables.read();
            reader(&MemoryView(&tables));
            Ok(())
        })
    }

    fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
