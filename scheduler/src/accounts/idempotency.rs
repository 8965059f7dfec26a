//! `Idempotency-Key`: per account, a key names one request. The same key with the
//! same request returns the first job; with a different request it is refused.

use super::record::AccountId;
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// A request's claim on an Idempotency-Key.
#[derive(Clone, Debug)]
pub struct IdempotencyClaim {
    pub key: String,
    /// SHA-256 of the route and the request as parsed, so formatting differences
    /// (whitespace) do not make the same request look different.
    pub fingerprint: [u8; 32],
}

impl IdempotencyClaim {
    pub fn new(key: String, route: &str, request: &serde_json::Value) -> IdempotencyClaim {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(route.as_bytes());
        bytes.push(0);
        // Writing a Value into a Vec cannot fail.
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
    pub job_id: String,
    pub created_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            &serde_json::from_str(r#"{ "service":"echo",  "input":{"a":1} }"#).unwrap(),
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
