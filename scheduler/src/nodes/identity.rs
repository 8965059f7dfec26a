//! The scheduler's identity towards node agents: a self-made certificate and key
//! (created on first start, kept in the data directory) and the secret join tokens
//! are keyed with. Tokens are stateless: `id` plus HMAC(secret, id), so issuing one
//! needs no running daemon and checking one needs no lookup. Issued token ids
//! (never their secrets) are listed in `issued-tokens`; ids in `revoked-tokens` are
//! refused at registration; replacing `token.secret` revokes every token at once.

use gpubridge_protocol::token::{to_hex, JoinToken, ID_HEX};
use ring::hmac;
use std::io::Write;
use std::path::{Path, PathBuf};

const CERT_FILE: &str = "cert.der";
const KEY_FILE: &str = "key.der";
const SECRET_FILE: &str = "token.secret";
const ISSUED_FILE: &str = "issued-tokens";
const REVOKED_FILE: &str = "revoked-tokens";
/// The name agents expect in the certificate; pinning, not the name, is what counts.
pub const SERVER_NAME: &str = "gpubridge-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making the scheduler certificate: {0}")]
    Certificate(String),
    #[error("{0} is damaged: delete it to make a new one (agents then need new tokens)")]
    Damaged(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenRefusal {
    #[error("this join token was issued for another scheduler (certificate {theirs}, this one is {ours})")]
    OtherScheduler { theirs: String, ours: String },
    #[error("this join token is not valid here: create one with `gpubridge token create`")]
    Invalid,
    #[error("join token {0} was revoked: create a new one with `gpubridge token create`")]
    Revoked(String),
}

/// An issued token as `gpubridge token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub created_unix_ms: u64,
    pub revoked: bool,
}

pub struct Identity {
    dir: PathBuf,
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
    key: hmac::Key,
    /// SHA-256 of `cert_der`: what tokens pin.
    pub fingerprint: [u8; 32],
}

impl Identity {
    /// Loads the identity kept in `dir`, creating whatever is missing.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
                .map_err(|e| IdentityError::Certificate(e.to_string()))?;
            write_private(
                &key_path,
                &made.signing_key.serialize_der(),
                FileMode::Create,
            )?;
            write_private(&cert_path, made.cert.der(), FileMode::Create)?;
            tracing::info!(dir = %dir.display(), "created the scheduler's node certificate");
        }
        let secret_path = dir.join(SECRET_FILE);
        if !secret_path.exists() {
            let mut secret = [0u8; 32];
            rand::fill(&mut secret);
            write_private(&secret_path, &secret, FileMode::Create)?;
        }
        let cert_der = std::fs::read(&cert_path).map_err(io(&cert_path))?;
        let key_der = std::fs::read(&key_path).map_err(io(&key_path))?;
        let secret = std::fs::read(&secret_path).map_err(io(&secret_path))?;
        if secret.len() < 32 {
            return Err(IdentityError::Damaged(secret_path));
        }
        if cert_der.is_empty() || key_der.is_empty() {
            return Err(IdentityError::Damaged(cert_path));
        }
        Ok(Identity {
            dir: dir.to_path_buf(),
            fingerprint: sha256(&cert_der),
            cert_der,
            key_der,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// A new join token for this scheduler.
    pub fn create_token(&self) -> JoinToken {
        let mut id = [0u8; ID_HEX / 2];
        rand::fill(&mut id);
        let id = to_hex(&id);
        JoinToken {
            secret: to_hex(hmac::sign(&self.key, id.as_bytes()).as_ref()),
            id,
            fingerprint: self.fingerprint,
        }
    }

    /// A new join token, its id recorded for `gpubridge token list`.
    pub fn issue_token(&self) -> Result<JoinToken, IdentityError> {
        let token = self.create_token();
        let line = format!("{} {}\n", token.id, crate::job::now_ms());
        write_private(
            &self.dir.join(ISSUED_FILE),
            line.as_bytes(),
            FileMode::Append,
        )?;
        Ok(token)
    }

    /// Refuses `id` from now on; `false` if it was never issued here.
    pub fn revoke(&self, id: &str) -> Result<bool, IdentityError> {
        let id = id.trim().to_ascii_lowercase();
        if !self.issued()?.iter().any(|t| t.id == id) {
            return Ok(false);
        }
        write_private(
            &self.dir.join(REVOKED_FILE),
            format!("{id}\n").as_bytes(),
            FileMode::Append,
        )?;
        Ok(true)
    }

    /// Every token issued with `issue_token`, oldest first.
    pub fn issued(&self) -> Result<Vec<IssuedToken>, IdentityError> {
        let revoked = self.revoked()?;
        Ok(read_lines(&self.dir.join(ISSUED_FILE))?
            .iter()
            .filter_map(|line| {
                let (id, ms) = line.split_once(' ')?;
                Some(IssuedToken {
                    id: id.to_string(),
                    created_unix_ms: ms.trim().parse().ok()?,
                    revoked: revoked.iter().any(|r| r == id),
                })
            })
            .collect())
    }

    fn revoked(&self) -> Result<Vec<String>, IdentityError> {
        read_lines(&self.dir.join(REVOKED_FILE))
    }

    /// Checks a token: this scheduler's, its secret right (in constant time), and
    /// not revoked. Registrations are rare, so the revocation list is read each time
    /// and a revocation needs no restart.
    pub fn verify(&self, token: &JoinToken) -> Result<(), TokenRefusal> {
        if token.fingerprint != self.fingerprint {
            return Err(TokenRefusal::OtherScheduler {
                theirs: token.fingerprint_hex(),
                ours: to_hex(&self.fingerprint),
            });
        }
        let tag = from_hex(&token.secret).ok_or(TokenRefusal::Invalid)?;
        hmac::verify(&self.key, token.id.as_bytes(), &tag).map_err(|_| TokenRefusal::Invalid)?;
        match self.revoked() {
            Ok(revoked) if revoked.contains(&token.id) => {
                Err(TokenRefusal::Revoked(token.id.clone()))
            }
            Ok(_) => Ok(()),
            // Unreadable list: refuse rather than let a revoked token in.
            Err(e) => {
                tracing::error!(error = %e, "cannot read the revoked-token list");
                Err(TokenRefusal::Invalid)
            }
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

fn read_lines(path: &Path) -> Result<Vec<String>, IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(IdentityError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[derive(Clone, Copy)]
enum FileMode {
    /// A new file; an existing one is an error.
    Create,
    Append,
}

/// Writes to a file only its owner can read, and syncs it.
fn write_private(path: &Path, bytes: &[u8], how: FileMode) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    match how {
        FileMode::Create => options.write(true).create_new(true),
        FileMode::Append => options.append(true).create(true),
    };
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_here_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path()).unwrap();
        let token = identity.create_token();
        assert_eq!(identity.verify(&token), Ok(()));
        // Reloading keeps the same certificate and secret.
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(again.verify(&token), Ok(()));
        assert_eq!(again.fingerprint, identity.fingerprint);

        let mut forged = token.clone();
        forged.secret = "0".repeat(64);
        assert_eq!(identity.verify(&forged), Err(TokenRefusal::Invalid));
        let mut renamed = token.clone();
        renamed.id = "ffffffffffffffff".into();
        assert_eq!(identity.verify(&renamed), Err(TokenRefusal::Invalid));

        // Issued tokens are listed and can be revoked one by one.
        let issued = identity.issue_token().unwrap();
        assert_eq!(identity.verify(&issued), Ok(()));
        let listed = identity.issued().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].revoked),
            (issued.id.as_str(), false)
        );
        assert!(
            !identity.revoke("0123456789abcdef").unwrap(),
            "never issued"
        );
        assert!(identity.revoke(&issued.id).unwrap());
        assert_eq!(
            identity.verify(&issued),
            Err(TokenRefusal::Revoked(issued.id.clone()))
        );
        assert!(identity.issued().unwrap()[0].revoked);
        assert_eq!(identity.verify(&token), Ok(()), "other tokens stay valid");

        let other_dir = tempfile::tempdir().unwrap();
        let other = Identity::load_or_create(other_dir.path()).unwrap();
        assert!(matches!(
            other.verify(&token),
            Err(TokenRefusal::OtherScheduler { .. })
        ));
    }
}
