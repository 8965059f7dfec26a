//! Persistence of learned estimates: backend latency and service duration
//! averages are flushed to the store periodically and restored at start.

use crate::jobs::ESTIMATES;
use crate::scheduler::Inner;
use gpubridge_store::{ReadMode, StoreError, WriteSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};
use std::time::Duration;

const BACKEND_PREFIX: &str = "backend/";
const SERVICE_PREFIX: &str = "service/";

pub(crate) async fn restore(inner: &Inner) -> Result<(), StoreError> {
    let entries = inner
        .store
        .read(ReadMode::Latest, |view| {
            let mut entries = Vec::new();
            view.scan(ESTIMATES, &[], None, &mut |key, value| {
                if let (Ok(key), Ok(bytes)) = (std::str::from_utf8(key), <[u8; 8]>::try_from(value))
                {
                    entries.push((key.to_string(), f64::from_le_bytes(bytes)));
                }
                ControlFlow::Continue(())
            })?;
            Ok(entries)
        })
        .await?;
    let mut restored = 0usize;
    for (key, value) in entries {
        if let Some(label) = key.strip_prefix(BACKEND_PREFIX) {
            if let Some(backend) = inner.backends.all().iter().find(|b| b.label == label) {
                backend.latency_ms.set(value);
                restored += 1;
            }
        } else if let Some(ewma) = key
            .strip_prefix(SERVICE_PREFIX)
            .and_then(|s| inner.service_seconds.get(s))
        {
            ewma.set(value);
            restored += 1;
        }
    }
    tracing::info!(restored, "restored learned estimates");
    Ok(())
}

pub(crate) async fn flush(inner: &Inner) {
    let mut writes = WriteSet::new();
    for backend in inner.backends.all() {
        if let Some(value) = backend.latency_ms.get() {
            writes.put(
                ESTIMATES,
                format!("{BACKEND_PREFIX}{}", backend.label),
                value.to_le_bytes(),
            );
        }
    }
    for (service, ewma) in &inner.service_seconds {
        if let Some(value) = ewma.get() {
            writes.put(
                ESTIMATES,
                format!("{SERVICE_PREFIX}{service}"),
                value.to_le_bytes(),
            );
        }
    }
    if writes.is_empty() {
        return;
    }
    // Learned figures, rewritten every few seconds: losing the last ones to a
    // power cut costs nothing, so they wait for the log's next fsync.
    writes.logged_only();
    if let Err(e) = inner.store.commit(writes).await {
        tracing::warn!(error = %e, "could not persist estimates");
    }
}

/// Flushes every few seconds, and sweeps the finished-job cache every quarter
/// second, for as long as the scheduler exists.
pub(crate) fn spawn_maintenance(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let period = inner
            .upgrade()
            .map_or(5, |i| i.cfg.estimates_flush_seconds.max(1));
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        let mut ticks = 0u64;
        loop {
            ticker.tick().await;
            let Some(inner): Option<Arc<Inner>> = inner.upgrade() else {
                break;
            };
            inner.live.sweep();
            ticks += 1;
            if ticks.is_multiple_of(period * 4) {
                flush(&inner).await;
            }
        }
    });
}
