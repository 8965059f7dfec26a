//! Join tokens: what an operator hands a node agent so it can join a scheduler.
//! `gbj1.<id>.<secret>.<fingerprint>`: the id names the token, the secret proves
//! the scheduler issued it (the scheduler checks it with a keyed hash, nothing is
//! stored), and the fingerprint — SHA-256 of the scheduler's certificate — lets the
//! agent pin the scheduler it talks to before it sends anything.

use std::fmt;

const PREFIX: &str = "gbj1";
/// Hex characters of a token id.
pub const ID_HEX: usize = 16;
/// Hex characters of the secret and of the fingerprint (32 bytes each).
pub const DIGEST_HEX: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub secret: String,
    /// SHA-256 of the scheduler's DER certificate.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a join token ({0}): create one on the scheduler with `gpubridge token create`")]
pub struct TokenError(&'static str);

impl JoinToken {
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let mut parts = text.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(TokenError("it does not start with gbj1."));
        }
        let (Some(id), Some(secret), Some(fingerprint), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError("it does not have four dot-separated parts"));
        };
        let is_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(id, ID_HEX) || !is_hex(secret, DIGEST_HEX) || !is_hex(fingerprint, DIGEST_HEX) {
            return Err(TokenError("a part has the wrong length or is not hex"));
        }
        Ok(JoinToken {
            id: id.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
            fingerprint: from_hex(fingerprint).ok_or(TokenError("bad fingerprint"))?,
        })
    }

    pub fn fingerprint_hex(&self) -> String {
        to_hex(&self.fingerprint)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.id,
            self.secret,
            self.fingerprint_hex()
        )
    }
}

/// Never prints the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JoinToken({}, fingerprint {})",
            self.id,
            self.fingerprint_hex()
        )
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_hide_their_secret() {
        let token = JoinToken {
            id: "0123456789abcdef".into(),
            secret: "ab".repeat(32),
            fingerprint: [7; 32],
        };
        let text = token.to_string();
        assert_eq!(JoinToken::parse(&text), Ok(token.clone()));
        assert_eq!(JoinToken::parse(&format!(" {text}\n")), Ok(token.clone()));
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for bad in [
            "",
            "gpub_abc",
            "gbj1.0123456789abcdef",
            "gbj1.0123456789abcdef.zz.00",
            &format!(
                "gbj1.0123456789abcdef.{}.{}.x",
                "a".repeat(64),
                "b".repeat(64)
            ),
            &format!("gbj1.012345.{}.{}", "a".repeat(64), "b".repeat(64)),
        ] {
            let error = JoinToken::parse(bad).unwrap_err();
            assert!(
                error.to_string().contains("gpubridge token create"),
                "{bad}"
            );
        }
    }
}
