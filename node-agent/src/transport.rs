//! The agent's side of QUIC: TLS 1.3 that trusts exactly one certificate, the one
//! whose SHA-256 the join token carries. No certificate authority, no name check:
//! a scheduler with any other certificate is refused before a byte is sent.

use gpubridge_protocol::node::ALPN;
use gpubridge_protocol::token::to_hex;
use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("binding a UDP socket: {0}")]
    Bind(std::io::Error),
}

/// Trusts one certificate by its SHA-256, and remembers a mismatch so the agent can
/// say plainly why it did not connect.
#[derive(Debug)]
pub struct PinnedCertificate {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
    mismatch: Mutex<Option<String>>,
}

impl PinnedCertificate {
    pub fn new(fingerprint: [u8; 32]) -> Arc<Self> {
        Arc::new(PinnedCertificate {
            fingerprint,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            mismatch: Mutex::new(None),
        })
    }

    /// Why the last handshake was refused, if it was for the certificate.
    pub fn mismatch(&self) -> Option<String> {
        self.mismatch.lock().clone()
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if digest.as_ref() == self.fingerprint {
            return Ok(ServerCertVerified::assertion());
        }
        let why = format!(
            "the scheduler's certificate ({}) is not the one the join token pins ({}): wrong scheduler address, or its data directory was replaced; create a new token there",
            to_hex(digest.as_ref()),
            to_hex(&self.fingerprint)
        );
        *self.mismatch.lock() = Some(why.clone());
        Err(rustls::Error::General(why))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client endpoint for `scheduler`'s address family that pins `verifier`'s
/// certificate and lets the scheduler open `job_streams` job streams at once.
pub fn client_endpoint(
    scheduler: SocketAddr,
    verifier: Arc<PinnedCertificate>,
    job_streams: u32,
    keep_alive: Duration,
) -> Result<quinn::Endpoint, TransportError> {
    let tls = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| tls(&e))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(job_streams.saturating_add(16).into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.keep_alive_interval(Some(keep_alive));
    transport.max_idle_timeout(Duration::from_secs(10).try_into().ok());
    client.transport_config(Arc::new(transport));
    let bind: SocketAddr = match scheduler {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(TransportError::Bind)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}
