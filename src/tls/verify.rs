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

/// The handshake signature checks every sealpost verifier shares (rustls
/// delegates them to the verifier): TLS 1.2 and 1.3 signatures verified
/// with the provider's algorithms, whatever the verifier decided about
/// the certificate. Each verifier's trait methods call these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandshakeSignatures(pub WebPkiSupportedAlgorithms);

impl HandshakeSignatures {
    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    pub(crate) fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

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
        HandshakeSignatures(self.algorithms).tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        HandshakeSignatures(self.algorithms).tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        HandshakeSignatures(self.algorithms).schemes()
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
