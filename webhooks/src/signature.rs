//! Webhook secrets and signatures. A secret is derived, not stored: an HMAC of
//! the account (and how many times its secret was rotated) under a key derived
//! from the server's secret, so the database alone holds nothing to sign with.
//! A delivery carries `X-GPUBridge-Signature: t=<unix seconds>,v1=<hex>`, the
//! HMAC-SHA256 of `"{t}.{body}"` keyed with the secret's text.

use gpubridge_protocol::{AccountId, JobId};
use ring::hmac;
use subtle::ConstantTimeEq;

pub const SECRET_PREFIX: &str = "whsec_";
pub const SIGNATURE_HEADER: &str = "x-gpubridge-signature";

/// A webhook signing secret, as its owner sees it (`whsec_…`).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A secret as the receiver knows it.
    pub fn from_text(text: &str) -> WebhookSecret {
        WebhookSecret(text.to_string())
    }
}

// Never printed in logs by accident.
impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// Derives every secret from the server's.
pub struct Signer {
    key: hmac::Key,
}

impl Signer {
    pub fn new(server_secret: &[u8]) -> Signer {
        let root = hmac::Key::new(hmac::HMAC_SHA256, server_secret);
        // Its own key, so no webhook secret is ever an API-key digest.
        let derived = hmac::sign(&root, b"gpubridge webhook secrets v1");
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// The account's secret after `generation` rotations.
    pub fn account_secret(&self, account: AccountId, generation: u32) -> WebhookSecret {
        let mut message = b"account:".to_vec();
        message.extend_from_slice(&account.0);
        message.extend_from_slice(&generation.to_be_bytes());
        self.secret(&message)
    }

    /// The secret of a job nobody's account owns (open access, x402): shown
    /// once, with the job's acceptance.
    pub fn job_secret(&self, job: &JobId) -> WebhookSecret {
        self.secret(format!("job:{job}").as_bytes())
    }

    fn secret(&self, message: &[u8]) -> WebhookSecret {
        let tag = hmac::sign(&self.key, message);
        WebhookSecret(format!(
            "{SECRET_PREFIX}{}",
            bs58::encode(tag.as_ref()).into_string()
        ))
    }
}

/// The signature header's value for `body` sent at `unix_seconds`.
pub fn sign(secret: &WebhookSecret, unix_seconds: u64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex(mac(secret, unix_seconds, body).as_ref())
    )
}

fn mac(secret: &WebhookSecret, unix_seconds: u64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_str().as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(unix_seconds.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signature is {0} s away from now, beyond the tolerance")]
    Stale(u64),
}

/// What a receiver does: checks `header` against `body` and the secret, and
/// that it was made within `tolerance_seconds` of `now_seconds` (replays).
/// Compares in constant time.
pub fn verify(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    now_seconds: u64,
    tolerance_seconds: u64,
) -> Result<u64, VerifyError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let expected = hex(mac(secret, t, body).as_ref());
    let matches = signatures
        .iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
    if !matches {
        return Err(VerifyError::Mismatch);
    }
    let skew = now_seconds.abs_diff(t);
    if skew > tolerance_seconds {
        return Err(VerifyError::Stale(skew));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_stable_distinct_and_rotate() {
        let signer = Signer::new(b"a server secret of at least 32 characters");
        let account = AccountId([1; 16]);
        let first = signer.account_secret(account, 0);
        assert!(first.as_str().starts_with(SECRET_PREFIX));
        assert_eq!(first, signer.account_secret(account, 0));
        assert_ne!(first, signer.account_secret(account, 1));
        assert_ne!(first, signer.account_secret(AccountId([2; 16]), 0));
        let other = Signer::new(b"another server secret, also long enough");
        assert_ne!(first, other.account_secret(account, 0));
        assert_eq!(format!("{first:?}"), "WebhookSecret(…)");
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let secret = WebhookSecret::from_text("whsec_test");
        let body = br#"{"id":"j","status":"completed"}"#;
        let header = sign(&secret, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(&secret, &header, body, 1_700_000_100, 300),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(&secret, &header, b"{}", 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        let wrong = WebhookSecret::from_text("whsec_other");
        assert_eq!(
            verify(&wrong, &header, body, 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&secret, &header, body, 1_700_001_000, 300),
            Err(VerifyError::Stale(1000))
        );
        assert_eq!(
            verify(&secret, "v1=abc", body, 0, 300),
            Err(VerifyError::Malformed)
        );
    }

    /// The signature is plain HMAC-SHA256 over "{t}.{body}": a receiver in
    /// any language computes the same digest (RFC 4231 style check).
    #[test]
    fn the_digest_is_hmac_sha256_of_t_dot_body() {
        let secret = WebhookSecret::from_text("key");
        let header = sign(&secret, 1, b"x");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"key");
        let expected = hex(hmac::sign(&key, b"1.x").as_ref());
        assert_eq!(header, format!("t=1,v1={expected}"));
    }
}
