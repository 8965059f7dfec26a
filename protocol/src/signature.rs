//! Timestamped HMAC signatures of HTTP bodies, in the scheme Stripe documents
//! for its webhooks and GPU-Bridge uses for its own: a header `t=<unix
//! seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">` (several `v1=` while a secret
//! is being rolled), keyed with the secret's text. Checked in constant time,
//! with a tolerance against replays.

use ring::hmac;
use subtle::ConstantTimeEq;

/// The header value signing `body` at `unix_seconds` with `key`.
pub fn sign(key: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    format!(
        "t={unix_seconds},v1={}",
        hex(mac(key, unix_seconds, body).as_ref())
    )
}

fn mac(key: &[u8], unix_seconds: u64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(unix_seconds.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("no signature matches the body")]
    Mismatch,
    #[error("the signature is {0} s away from now, beyond the tolerance")]
    Stale(u64),
}

/// Checks `header` against `body` and `key`: one `v1` must match, and `t` be
/// within `tolerance_seconds` of `now_seconds`. Returns `t`.
pub fn verify(
    key: &[u8],
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
    let expected = hex(mac(key, t, body).as_ref());
    // Every candidate is compared in full: timing says nothing of which matched.
    let matched = signatures.iter().fold(false, |found, candidate| {
        found | bool::from(candidate.as_bytes().ct_eq(expected.as_bytes()))
    });
    if !matched {
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
    fn signatures_verify_and_tampering_fails() {
        let key = b"whsec_test";
        let body = br#"{"id":"j","status":"completed"}"#;
        let header = sign(key, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(key, &header, body, 1_700_000_100, 300),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(key, &header, b"{}", 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec_other", &header, body, 1_700_000_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(key, &header, body, 1_700_001_000, 300),
            Err(VerifyError::Stale(1000))
        );
        assert_eq!(
            verify(key, "v1=abc", body, 0, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(key, "t=5", body, 0, 300),
            Err(VerifyError::Malformed)
        );
        // A rolled secret: one of several v1 values matching is enough.
        let rolled = format!("{header},v1=00ff,v0=ignored");
        assert!(verify(key, &rolled, body, 1_700_000_000, 300).is_ok());
    }

    /// The digest is plain HMAC-SHA256 over "{t}.{body}", as any receiver
    /// computes it.
    #[test]
    fn the_digest_is_hmac_sha256_of_t_dot_body() {
        let header = sign(b"key", 1, b"x");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"key");
        let expected = hex(hmac::sign(&key, b"1.x").as_ref());
        assert_eq!(header, format!("t=1,v1={expected}"));
    }
}
