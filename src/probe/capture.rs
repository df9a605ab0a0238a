//! The probe's certificate verifier: it records the chain an MX host
//! presents and asks the real verifiers what they think of it, the MTA-STS
//! WebPKI check for the MX name ([`StsCertVerifier`], RFC 8461 section 4.1)
//! and, where usable TLSA records exist, the DANE matcher ([`DaneVerifier`],
//! RFC 7672 section 3), then lets the handshake continue whatever they
//! said. One connection per address then answers for every security level;
//! the per-level decision is made afterwards by [`super::verdict`].
//!
//! The handshake signatures are still verified (with the ring provider), so
//! a server that presents a certificate without its key fails the handshake.
//! The probe never sends mail over such a session: after EHLO it sends QUIT.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::dane::{DaneFailure, DaneMatch, DaneVerifier};
use crate::mta_sts::{CertOutcome, Mode, StsCertVerifier};
use crate::tls::certinfo::CertInfo;

/// What the verifiers found about the presented chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertCheck {
    /// The chain as presented, leaf first.
    pub chain: Vec<CertInfo>,
    /// WebPKI validation for the MX host name (`None`: the MX name is not
    /// a DNS name, so there was nothing to check against).
    pub webpki: Option<CertOutcome>,
    /// DANE authentication; `None` when the host has no usable TLSA records.
    pub dane: Option<Result<DaneMatch, DaneFailure>>,
}

/// A recording verifier for one probe connection.
#[derive(Debug)]
pub(crate) struct ProbeVerifier {
    mx_name: Option<ServerName<'static>>,
    webpki: Arc<StsCertVerifier>,
    dane: Option<DaneVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<CertCheck>>,
}

impl ProbeVerifier {
    /// `mx_name` is the name WebPKI checks (the MX host, RFC 8461 section
    /// 4.1), whatever SNI the connection sends; `dane` is the verifier of
    /// the host's DANE plan, if it has one.
    pub fn new(
        mx_name: &str,
        webpki: Arc<WebPkiServerVerifier>,
        dane: Option<DaneVerifier>,
    ) -> ProbeVerifier {
        ProbeVerifier {
            mx_name: ServerName::try_from(mx_name.trim_end_matches('.').to_string()).ok(),
            // Testing mode: record the result, never abort the handshake.
            webpki: StsCertVerifier::new(webpki, Mode::Testing),
            dane,
            algorithms: crate::tls::provider().signature_verification_algorithms,
            seen: Mutex::new(None),
        }
    }

    /// What was seen; `None` when the server sent no certificate (the
    /// handshake did not get that far).
    pub fn check(&self) -> Option<CertCheck> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for ProbeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![CertInfo::parse(end_entity)];
        chain.extend(intermediates.iter().map(|c| CertInfo::parse(c)));
        let webpki = self.mx_name.as_ref().map(|name| {
            // The testing-mode verifier always accepts; its outcome is the answer.
            let _ =
                self.webpki
                    .verify_server_cert(end_entity, intermediates, name, ocsp_response, now);
            self.webpki
                .outcome()
                .unwrap_or(CertOutcome::HandshakeFailed(
                    "no certificate check was made".to_string(),
                ))
        });
        let dane = self.dane.as_ref().map(|dane| {
            let _ =
                dane.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
            dane.outcome()
                .unwrap_or(Err(DaneFailure::NoMatch { records: 0 }))
        });
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(CertCheck {
            chain,
            webpki,
            dane,
        });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::tls::HandshakeSignatures(self.algorithms).tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::tls::HandshakeSignatures(self.algorithms).tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        crate::tls::HandshakeSignatures(self.algorithms).schemes()
    }
}
