//! Encryption without authentication: a certificate verifier that accepts
//! any server certificate but still checks the handshake signatures, so the
//! session is real TLS with the key the server presented.
//!
//! This is what the `opportunistic` and `mandatory` levels ask for (RFC 7435
//! opportunistic security; RFC 7672 section 2.2 "encrypt, no
//! authentication" when every TLSA record is unusable). DANE and MTA-STS
//! have their own verifiers.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::policy::MinTlsVersion;

/// Accepts any server certificate; verifies the handshake signatures with
/// the provider's algorithms.
#[derive(Debug)]
pub struct Unauthenticated {
    algorithms: WebPkiSupportedAlgorithms,
}

impl Unauthenticated {
    pub fn new() -> Unauthenticated {
        Unauthenticated {
            algorithms: super::provider().signature_verification_algorithms,
        }
    }
}

impl Default for Unauthenticated {
    fn default() -> Self {
        Unauthenticated::new()
    }
}

impl ServerCertVerifier for Unauthenticated {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client config that encrypts without authenticating the server,
/// offering the protocol versions `min` allows.
pub fn unauthenticated_client_config(min: MinTlsVersion) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(min.rustls_versions())
        // The ring provider supports every version rustls offers.
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unauthenticated::new()))
        .with_no_client_auth();
    Arc::new(config)
}
