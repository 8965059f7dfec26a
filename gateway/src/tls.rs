//! TLS on the front door: rustls with the operator's PEM certificate chain and
//! key, ALPN `h2` then `http/1.1`, and a certificate slot that a reload
//! (SIGHUP) refills without touching connections already open.

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[http.tls]`: PEM files, read at start and again on every reload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate in use, swappable while connections come and go.
#[derive(Debug)]
struct Slot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Slot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

pub struct Tls {
    slot: Arc<Slot>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Tls {
    pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
        let slot = Arc::new(Slot(RwLock::new(Arc::new(certified_key(config)?))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(slot.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            slot,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let key = certified_key(config)?;
        *self.slot.0.write() = Arc::new(key);
        Ok(())
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}

fn certified_key(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let (cert, key) = (&config.cert_file, &config.key_file);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| read_error(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| read_error(key, e))?;
    let mismatch = |reason: String| TlsError::Mismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        reason,
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| mismatch(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    Ok(certified)
}

fn read_error(path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let config = TlsConfig {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
        };
        std::fs::write(&config.cert_file, cert.pem()).unwrap();
        std::fs::write(&config.key_file, key.serialize_pem()).unwrap();
        config
    }

    #[test]
    fn a_bad_reload_keeps_the_certificate_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), "a");
        let second = write_pair(dir.path(), "b");
        let tls = Tls::load(&first).unwrap();
        let in_use = || tls.slot.0.read().cert[0].clone();
        let before = in_use();
        let crossed = TlsConfig {
            cert_file: first.cert_file.clone(),
            key_file: second.key_file.clone(),
        };
        assert!(matches!(
            tls.reload(&crossed),
            Err(TlsError::Mismatch { .. })
        ));
        std::fs::write(&second.cert_file, "not a certificate").unwrap();
        assert!(tls.reload(&second).is_err());
        assert_eq!(in_use(), before);
        let third = write_pair(dir.path(), "c");
        tls.reload(&third).unwrap();
        assert_ne!(in_use(), before);
    }

    #[test]
    fn missing_files_are_named() {
        let missing = TlsConfig {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
        };
        let error = Tls::load(&missing).err().unwrap().to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
