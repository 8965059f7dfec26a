//! How the daemon connects to a hosted provider: which HTTP versions it offers
//! and which certificate authorities it trusts.

use crate::config::ProviderConfig;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The HTTP version spoken to a provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// Over TLS, HTTP/2 when the provider offers it (ALPN), else HTTP/1.1;
    /// plain `http://` is HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only, a connection per request in flight.
    Http1,
    /// HTTP/2 only: by ALPN over TLS, by prior knowledge (h2c) on `http://`.
    Http2,
}

/// A provider's `ca_file` that cannot be used. Found at start, not at the first call.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("reading CA certificates from {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no PEM certificate")]
    Empty { path: PathBuf },
    #[error("a CA certificate in {path} is not usable: {source}")]
    Unusable {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS client setup: {0}")]
    Setup(rustls::Error),
}

/// How to reach one provider: its connector and HTTP settings.
#[derive(Clone)]
pub struct Upstream {
    pub connector: HttpsConnector<HttpConnector>,
    pub version: HttpVersion,
    /// Requests in flight on one HTTP/2 connection before another is opened.
    pub streams: u32,
}

impl Upstream {
    pub fn new(
        cfg: &ProviderConfig,
        connect_timeout: Duration,
    ) -> Result<Upstream, UpstreamTlsError> {
        let version = cfg.http_version.unwrap_or_default();
        Ok(Upstream {
            connector: connector(version, cfg.ca_file.as_deref(), connect_timeout)?,
            version,
            streams: cfg.max_streams_per_connection.unwrap_or(100).max(1),
        })
    }
}

/// TCP (`TCP_NODELAY`, the connect limit), then TLS for `https://` with the
/// public web roots plus the certificates in `ca_file`, offering `version` by ALPN.
pub fn connector(
    version: HttpVersion,
    ca_file: Option<&Path>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, UpstreamTlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_file)?)
        .https_or_http();
    Ok(match version {
        HttpVersion::Auto => builder.enable_all_versions().wrap_connector(http),
        HttpVersion::Http1 => builder.enable_http1().wrap_connector(http),
        HttpVersion::Http2 => builder.enable_http2().wrap_connector(http),
    })
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamTlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in extra_roots(path)? {
            roots
                .add(cert)
                .map_err(|source| UpstreamTlsError::Unusable {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(UpstreamTlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn extra_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let read = |source| UpstreamTlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(UpstreamTlsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_ca_file_must_hold_a_usable_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = Duration::from_secs(1);
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            connector(HttpVersion::Auto, Some(&missing), limit),
            Err(UpstreamTlsError::Read { .. })
        ));
        let empty = write(dir.path(), "empty.pem", "no certificate here\n");
        assert!(matches!(
            connector(HttpVersion::Auto, Some(&empty), limit),
            Err(UpstreamTlsError::Empty { .. })
        ));
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let good = write(dir.path(), "ca.pem", &cert.pem());
        for version in [HttpVersion::Auto, HttpVersion::Http1, HttpVersion::Http2] {
            assert!(connector(version, Some(&good), limit).is_ok());
        }
    }

    #[test]
    fn versions_are_written_in_lowercase() {
        let read = |text: &str| serde_json::from_str::<HttpVersion>(text).ok();
        assert_eq!(read("\"auto\""), Some(HttpVersion::Auto));
        assert_eq!(read("\"http1\""), Some(HttpVersion::Http1));
        assert_eq!(read("\"http2\""), Some(HttpVersion::Http2));
        assert_eq!(read("\"h3\""), None);
    }
}
