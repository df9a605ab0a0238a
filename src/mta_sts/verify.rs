//! WebPKI validation of MX certificates under an MTA-STS policy (RFC 8461
//! section 4.1: the certificate must be valid for the MX host name and
//! chain to a trusted root, as in RFC 6125 and RFC 5280).
//!
//! [`StsCertVerifier`] is a rustls verifier for one connection: it records
//! what it found ([`CertOutcome`]) for the probe and the TLS report, and a
//! refusal reads back through [`classify`]. In enforce mode a failure aborts
//! the handshake; in testing mode the handshake continues (the session is
//! then opportunistic TLS) and only the failure is recorded. The server
//! name given to the connector must be the MX host name.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::decision::{CertOutcome, CertProblem};
use super::fetch::TrustRoots;
use super::policy::Mode;

/// Why a WebPKI verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("MTA-STS trust roots: {0}")]
    Roots(#[from] rustls::Error),
    #[error("MTA-STS WebPKI verifier: {0}")]
    Build(#[from] rustls::client::VerifierBuilderError),
}

/// The shared WebPKI verifier (build once, reuse for every connection).
pub fn webpki_verifier(roots: &TrustRoots) -> Result<Arc<WebPkiServerVerifier>, VerifierError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots.root_store()?), provider)
            .build()?,
    )
}

/// Maps a rustls certificate error to the MTA-STS / TLSRPT vocabulary.
pub(crate) fn classify(error: &rustls::Error) -> CertOutcome {
    match error {
        rustls::Error::InvalidCertificate(cert) => CertOutcome::Invalid(match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertProblem::HostMismatch
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => CertProblem::Expired,
            CertificateError::UnknownIssuer => CertProblem::NotTrusted,
            other => CertProblem::Other(format!("{other:?}")),
        }),
        other => CertOutcome::HandshakeFailed(other.to_string()),
    }
}

/// A per-connection verifier that records the WebPKI result.
#[derive(Debug)]
pub(crate) struct StsCertVerifier {
    inner: Arc<WebPkiServerVerifier>,
    enforce: bool,
    outcome: Mutex<Option<CertOutcome>>,
}

impl StsCertVerifier {
    /// `mode` is the policy mode: `Enforce` fails the handshake on an
    /// invalid certificate, `Testing` (and `None`) only record it.
    pub fn new(inner: Arc<WebPkiServerVerifier>, mode: Mode) -> Arc<StsCertVerifier> {
        Arc::new(StsCertVerifier {
            inner,
            enforce: mode == Mode::Enforce,
            outcome: Mutex::new(None),
        })
    }

    /// What the certificate check found; `None` if the server sent no
    /// certificate to check (the handshake did not get that far).
    pub fn outcome(&self) -> Option<CertOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, outcome: CertOutcome) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }
}

impl ServerCertVerifier for StsCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => {
                self.record(CertOutcome::Valid);
                Ok(verified)
            }
            Err(error) => {
                self.record(classify(&error));
                if self.enforce {
                    Err(error)
                } else {
                    Ok(ServerCertVerified::assertion())
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
