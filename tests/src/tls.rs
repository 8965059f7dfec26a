//! TLS for tests: self-signed certificates written as PEM files, and a client
//! that trusts exactly one of them, speaking HTTP/1.1 or HTTP/2 as ALPN agrees.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

/// A certificate for `localhost` and its key, as files.
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert: CertificateDer<'static>,
}

impl CertFiles {
    /// A new self-signed pair at `dir/name.{crt,key}` (overwriting).
    pub fn write(dir: &Path, name: &str) -> CertFiles {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        let files = CertFiles {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
            cert: cert.der().clone(),
        };
        std::fs::write(&files.cert_file, cert.pem()).expect("cert file");
        std::fs::write(&files.key_file, key.serialize_pem()).expect("key file");
        files
    }

    /// A server accepting TLS with this certificate, offering h2 and http/1.1.
    pub fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key_file)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// `[http.tls]` naming these files.
    pub fn toml(&self) -> String {
        format!(
            "[http.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }
}

/// One open TLS connection to the gateway.
pub enum TlsConnection {
    Http1(http1::SendRequest<Empty<Bytes>>),
    Http2(http2::SendRequest<Empty<Bytes>>),
}

/// Connects to `addr` as `localhost`, trusting only `trusted`, offering `alpn`.
pub async fn connect(
    addr: &str,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> anyhow::Result<(TlsConnection, Option<Vec<u8>>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(stream);
    let connection = if negotiated.as_deref() == Some(b"h2") {
        let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        TlsConnection::Http2(send)
    } else {
        let (send, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        TlsConnection::Http1(send)
    };
    Ok((connection, negotiated))
}

impl TlsConnection {
    /// `GET path`: the status, the response headers, and the body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
        let request = hyper::Request::get(format!("https://localhost{path}"))
            .header("host", "localhost")
            .body(Empty::new())?;
        let response = match self {
            TlsConnection::Http1(send) => send.send_request(request).await?,
            TlsConnection::Http2(send) => send.send_request(request).await?,
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status.as_u16(), parts.headers, body))
    }
}
