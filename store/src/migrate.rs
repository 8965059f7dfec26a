//! Helpers for upgrading a store's layout, safe to run again after a crash.

use crate::error::StoreError;
use crate::kv::ReadMode;
use crate::store::Store;
use crate::write::{Table, WriteSet};

const PAGE: usize = 1024;

/// Turns values written before records had versions into version-1 records:
/// the same bytes after a `1`. Pages are committed with a note in the meta table
/// (under `step/table`) of where to resume, so a crash part-way loses nothing.
pub async fn add_version_bytes(store: &Store, table: Table, step: &str) -> Result<(), StoreError> {
    let marker = format!("{step}/{}", table.name()).into_bytes();
    let mut start = store
        .read(ReadMode::Latest, {
            let marker = marker.clone();
            move |view| view.get(Table::META, &marker)
        })
        .await?;
    // An empty marker means the table is done.
    if start.as_deref() == Some(&[][..]) {
        return Ok(());
    }
    loop {
        let page = store.page(table, Vec::new(), start, PAGE).await?;
        let mut writes = WriteSet::new();
        for (key, value) in page.items {
            let mut versioned = Vec::with_capacity(value.len() + 1);
            versioned.push(1);
            versioned.extend_from_slice(&value);
            writes.put(table, key, versioned);
        }
        writes.put(
            Table::META,
            marker.clone(),
            page.next.clone().unwrap_or_default(),
        );
        store.commit(writes).await?;
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(()),
        }
    }
}
