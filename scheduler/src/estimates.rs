//! Persistence of learned estimates: backend latency and service duration
//! averages are flushed to RocksDB periodically and restored at start.

use crate::scheduler::Inner;
use crate::store::StoreError;
use std::sync::{Arc, Weak};
use std::time::Duration;

const BACKEND_PREFIX: &str = "backend/";
const SERVICE_PREFIX: &str = "service/";

pub(crate) fn restore(inner: &Inner) -> Result<(), StoreError> {
    let mut restored = 0usize;
    for (key, value) in inner.store.estimates()? {
        if let Some(id) = key.strip_prefix(BACKEND_PREFIX) {
            if let Some(backend) = inner.backends.all().iter().find(|b| b.id == id) {
                backend.latency_ms.set(value);
                restored += 1;
            }
        } else if let Some(service) = key.strip_prefix(SERVICE_PREFIX) {
            if let Some(ewma) = inner.service_seconds.get(service) {
                ewma.set(value);
                restored += 1;
            }
        }
    }
    tracing::info!(restored, "restored learned estimates");
    Ok(())
}

pub(crate) fn flush(inner: &Inner) {
    let backends = inner.backends.all().iter().filter_map(|b| {
        b.latency_ms
            .get()
            .map(|v| (format!("{BACKEND_PREFIX}{}", b.id), v))
    });
    let services = inner
        .service_seconds
        .iter()
        .filter_map(|(k, e)| e.get().map(|v| (format!("{SERVICE_PREFIX}{k}"), v)));
    let entries: Vec<(String, f64)> = backends.chain(services).collect();
    if entries.is_empty() {
        return;
    }
    if let Err(e) = inner.store.put_estimates(&entries) {
        tracing::warn!(error = %e, "could not persist estimates");
    }
}

/// Flushes every few seconds for as long as the scheduler exists.
pub(crate) fn spawn_flusher(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let period = inner
            .upgrade()
            .map_or(5, |i| i.cfg.estimates_flush_seconds.max(1));
        let mut ticker = tokio::time::interval(Duration::from_secs(period));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(inner): Option<Arc<Inner>> = inner.upgrade() else {
                break;
            };
            flush(&inner);
        }
    });
}
