//! `Idempotency-Key`: per account, a key names one request. The same key with the
//! same request returns the first job; with a different request it is refused.
//! Requests racing with one key take turns: the first holds the key while it is
//! admitted, the others wait and then find what it wrote.

use crate::tables::IDEMPOTENCY;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gpubridge_protocol::{AccountId, JobId};
use gpubridge_store::{decode, Record, StoreError, WriteSet};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A request's claim on an Idempotency-Key.
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    pub key: String,
    /// SHA-256 of the route and the request as parsed, so formatting differences
    /// (whitespace) do not make the same request look different.
    pub fingerprint: [u8; 32],
}

impl IdempotencyClaim {
    pub fn new(key: String, route: &str, request: &impl Serialize) -> IdempotencyClaim {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(route.as_bytes());
        bytes.push(0);
        // Writing plain data into a Vec cannot fail; if it did, the claim would
        // only ever match an identical failure.
        let _ = serde_json::to_writer(&mut bytes, request);
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest(&SHA256, &bytes).as_ref());
        IdempotencyClaim { key, fingerprint }
    }

    pub(crate) fn storage_key(&self, account: AccountId) -> Vec<u8> {
        let mut key = Vec::with_capacity(16 + self.key.len());
        key.extend_from_slice(&account.0);
        key.extend_from_slice(self.key.as_bytes());
        key
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: [u8; 32],
    pub job_id: JobId,
    pub created_ms: u64,
}

impl Record for IdempotencyRecord {
    const KIND: &'static str = "idempotency key";
    const VERSION: u8 = 1;
}

/// Keys held by requests being admitted right now.
#[derive(Default)]
pub(crate) struct Claims {
    held: DashMap<Vec<u8>, watch::Sender<()>>,
}

/// A key held; dropping it lets the next request with the key go.
pub(crate) struct Held<'a> {
    claims: &'a Claims,
    key: Vec<u8>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Dropping the sender wakes every waiter.
        self.claims.held.remove(&self.key);
    }
}

impl Claims {
    /// Waits until no other request holds `key`, then holds it.
    pub async fn hold(&self, key: Vec<u8>) -> Held<'_> {
        loop {
            let mut turn = match self.held.entry(key.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(watch::channel(()).0);
                    return Held { claims: self, key };
                }
                Entry::Occupied(holder) => holder.get().subscribe(),
            };
            // Resolves (with an error) once the holder lets go.
            let _ = turn.changed().await;
        }
    }
}

/// Idempotency-Keys examined per sweep step (one read, one write).
const SWEEP_PAGE: usize = 1024;

impl crate::accounts::Accounts {
    /// Forgets Idempotency-Keys older than the configured window, a page at a
    /// time off the async workers; returns how many.
    pub async fn sweep_idempotency(&self) -> Result<usize, StoreError> {
        let (mut start, mut removed) = (None, 0);
        loop {
            let page = self
                .store
                .page(IDEMPOTENCY, Vec::new(), start, SWEEP_PAGE)
                .await?;
            let now = crate::now_ms();
            let mut writes = WriteSet::new();
            for (key, value) in &page.items {
                let expired = decode::<IdempotencyRecord>(value).map_or(true, |r| {
                    now.saturating_sub(r.created_ms) >= self.rules.idempotency_ms
                });
                if expired {
                    writes.delete(IDEMPOTENCY, key.clone());
                }
            }
            removed += writes.len();
            if !writes.is_empty() {
                self.store.commit(writes).await?;
            }
            match page.next {
                Some(next) => start = Some(next),
                None => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn one_request_holds_a_key_at_a_time() {
        let claims = Claims::default();
        let first = claims.hold(b"k".to_vec()).await;
        let waiter = claims.hold(b"k".to_vec());
        tokio::pin!(waiter);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), waiter.as_mut())
                .await
                .is_err(),
            "a second holder waits"
        );
        let _other = claims.hold(b"other".to_vec()).await;
        drop(first);
        let _second = waiter.await;
    }

    #[test]
    fn fingerprint_follows_route_and_content() {
        let a = IdempotencyClaim::new(
            "k".into(),
            "/run",
            &json!({"service": "echo", "input": {"a": 1}}),
        );
        let same = IdempotencyClaim::new(
            "k".into(),
            "/run",
            &serde_json::from_str::<serde_json::Value>(r#"{ "service":"echo",  "input":{"a":1} }"#)
                .unwrap(),
        );
        let other = IdempotencyClaim::new(
            "k".into(),
            "/run",
            &json!({"service": "echo", "input": {"a": 2}}),
        );
        let route = IdempotencyClaim::new(
            "k".into(),
            "/inference",
            &json!({"service": "echo", "input": {"a": 1}}),
        );
        assert_eq!(a.fingerprint, same.fingerprint);
        assert_ne!(a.fingerprint, other.fingerprint);
        assert_ne!(a.fingerprint, route.fingerprint);
        let id = AccountId([9; 16]);
        assert!(a.storage_key(id).starts_with(&[9; 16]));
    }
}
