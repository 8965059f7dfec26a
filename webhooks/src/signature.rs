//! Webhook secrets and signatures. A secret is derived, not stored: an HMAC of
//! the account (and how many times its secret was rotated) under a key derived
//! from the server's secret, so the database alone holds nothing to sign with.
//! A delivery carries `X-GPUBridge-Signature: t=<unix seconds>,v1=<hex>`, the
//! HMAC-SHA256 of `"{t}.{body}"` keyed with the secret's text (the scheme of
//! `gpubridge_protocol::signature`, Stripe's).

pub use gpubridge_protocol::signature::VerifyError;
use gpubridge_protocol::{signature, AccountId, JobId};
use ring::hmac;

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
    signature::sign(secret.as_str().as_bytes(), unix_seconds, body)
}

/// What a receiver does: checks `header` against `body` and the secret, and
/// that it was made within `tolerance_seconds` of `now_seconds` (replays).
pub fn verify(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    now_seconds: u64,
    tolerance_seconds: u64,
) -> Result<u64, VerifyError> {
    signature::verify(
        secret.as_str().as_bytes(),
        header,
        body,
        now_seconds,
        tolerance_seconds,
    )
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
    fn deliveries_verify_with_their_secret_only() {
        let secret = WebhookSecret::from_text("whsec_test");
        let header = sign(&secret, 1_700_000_000, b"{}");
        assert_eq!(
            verify(&secret, &header, b"{}", 1_700_000_000, 300),
            Ok(1_700_000_000)
        );
        let wrong = WebhookSecret::from_text("whsec_other");
        assert_eq!(
            verify(&wrong, &header, b"{}", 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
    }
}
