//! API keys: `gpub_` + 32 random bytes in base58, shown once and stored only as
//! an HMAC-SHA256 digest keyed with a server secret, so a leaked database alone
//! cannot be turned back into keys or used to test guesses offline.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::path::Path;

pub const KEY_PREFIX: &str = "gpub_";
/// Random bytes behind every key.
const KEY_BYTES: usize = 32;
/// Shortest secret accepted for keying the digests.
const MIN_SECRET_BYTES: usize = 32;

/// The keyed digest of an API key: what is stored and looked up.
pub type KeyDigest = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system random number generator failed")]
    Random,
    #[error("key secret {path}: {reason}")]
    Secret { path: String, reason: String },
}

pub struct KeyHasher {
    key: hmac::Key,
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> KeyHasher {
        KeyHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn digest(&self, api_key: &str) -> KeyDigest {
        let tag = hmac::sign(&self.key, api_key.as_bytes());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(tag.as_ref());
        digest
    }
}

/// A new API key.
pub fn generate() -> Result<String, KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Random)?;
    Ok(format!("{KEY_PREFIX}{}", bs58::encode(bytes).into_string()))
}

/// Cheap shape check before hashing: refuses obvious non-keys without work.
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        (32..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Reads the digest secret, creating it (owner-only permissions) on first start.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let fail = |reason: String| KeyError::Secret {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            if text.len() < MIN_SECRET_BYTES {
                return Err(fail(format!("shorter than {MIN_SECRET_BYTES} characters")));
            }
            Ok(text.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| KeyError::Random)?;
            let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| fail(e.to_string()))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            Ok(text.into_bytes())
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Checks a configured secret's length.
pub fn check_secret(secret: &str) -> Result<Vec<u8>, KeyError> {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::Secret {
            path: "GPUBRIDGE_KEY_HASH_SECRET".into(),
            reason: format!("shorter than {MIN_SECRET_BYTES} characters"),
        });
    }
    Ok(secret.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_recognised() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("gpub_") && a.len() >= 5 + 43, "{a}");
        assert!(looks_like_key(&a));
        assert!(!looks_like_key("gpub_short"));
        assert!(!looks_like_key(
            "sk-live-something-else-entirely-000000000000"
        ));
    }

    #[test]
    fn digests_depend_on_the_secret() {
        let key = generate().unwrap();
        let one = KeyHasher::new(&[1; 32]);
        let two = KeyHasher::new(&[2; 32]);
        assert_eq!(one.digest(&key), one.digest(&key));
        assert_ne!(one.digest(&key), two.digest(&key));
    }

    #[test]
    fn secret_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let first = load_or_create_secret(&path).unwrap();
        assert_eq!(load_or_create_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "no access for group or others");
        }
        std::fs::write(&path, "short").unwrap();
        assert!(load_or_create_secret(&path).is_err());
        assert!(check_secret("too short").is_err());
    }
}
