//! Authenticating an SMTP server's certificate chain with TLSA records
//! (RFC 7672 section 3.1, RFC 7671 section 5), and the rustls verifier
//! built on it.
//!
//! - DANE-EE(3): the leaf certificate (selector 0) or its public key
//!   (selector 1) must match. No name check and no validity-period check
//!   (RFC 7672 section 3.1.1).
//! - DANE-TA(2): a certificate in the presented chain above the leaf must
//!   match; it becomes the trust anchor, the leaf must chain to it (webpki,
//!   with the leaf's and intermediates' validity periods checked, the
//!   anchor's own not, as for any trust anchor), and the leaf must be valid
//!   for one of the reference identifiers: the TLSA base domain, the MX
//!   host name before CNAME expansion, the next-hop domain (RFC 7672
//!   section 3.2.2). The TA must be in the chain the server sends
//!   (RFC 7672 section 3.1.2); a bare public key not in the chain is not
//!   used.
//!
//! Whatever matched, the handshake signature is always verified with the
//! ring provider's algorithms, so a server that presents a certificate
//! without holding its private key fails.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use super::tlsa::{UsableTlsa, Usage};
use crate::dns::TlsaRecord;

/// What authenticated the server: kept for the delivery log ("DANE-verified
/// via 3 1 1 ...") and TLS reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneMatch {
    pub usage: Usage,
    /// The TLSA record that matched.
    pub record: TlsaRecord,
    /// Position in the presented chain of the matching certificate (0 is
    /// the leaf).
    pub depth: usize,
    /// For DANE-TA, the reference identifier the leaf was valid for.
    pub matched_name: Option<String>,
}

impl fmt::Display for DaneMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DANE-verified via {} ({} at depth {}",
            self.record, self.usage, self.depth
        )?;
        if let Some(name) = &self.matched_name {
            write!(f, ", name {name}")?;
        }
        f.write_str(")")
    }
}

/// Why a chain was not authenticated. RFC 8460 result type in brackets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneFailure {
    #[error("no usable TLSA records to authenticate with")]
    NoUsableRecords,
    #[error("the server presented no certificate")]
    NoCertificate,
    #[error("no TLSA record matches the presented chain ({records} usable records)")]
    NoMatch { records: usize },
    #[error("chain does not validate to the DANE-TA trust anchor {record}: {reason}")]
    TaChainInvalid { record: TlsaRecord, reason: String },
    #[error("certificate is not valid for any of {names:?} (DANE-TA {record})")]
    NameMismatch {
        record: TlsaRecord,
        names: Vec<String>,
    },
}

impl DaneFailure {
    /// The RFC 8460 section 4.3 result type for TLS reports.
    pub fn tlsrpt_result_type(&self) -> &'static str {
        match self {
            DaneFailure::NoUsableRecords => "tlsa-invalid",
            DaneFailure::NoCertificate | DaneFailure::NoMatch { .. } => "validation-failure",
            DaneFailure::TaChainInvalid { .. } => "certificate-not-trusted",
            DaneFailure::NameMismatch { .. } => "certificate-host-mismatch",
        }
    }
}

/// Authenticate `chain` (leaf first, as presented) against `tlsa`.
///
/// `reference_names` are the names a DANE-TA leaf may be valid for;
/// `now` is the time validity periods are checked against (DANE-TA only).
pub fn authenticate_chain(
    tlsa: &[UsableTlsa],
    reference_names: &[String],
    chain: &[CertificateDer<'_>],
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<DaneMatch, DaneFailure> {
    if tlsa.is_empty() {
        return Err(DaneFailure::NoUsableRecords);
    }
    let Some(leaf) = chain.first() else {
        return Err(DaneFailure::NoCertificate);
    };
    // DANE-EE first: cheapest, and needs nothing else.
    for record in tlsa.iter().filter(|r| r.usage == Usage::DaneEe) {
        if record.matches(leaf) {
            return Ok(DaneMatch {
                usage: Usage::DaneEe,
                record: record.record.clone(),
                depth: 0,
                matched_name: None,
            });
        }
    }
    // DANE-TA: the most telling failure is kept for the report.
    let mut failure = DaneFailure::NoMatch {
        records: tlsa.len(),
    };
    for record in tlsa.iter().filter(|r| r.usage == Usage::DaneTa) {
        for (depth, candidate) in chain.iter().enumerate().skip(1) {
            if !record.matches(candidate) {
                continue;
            }
            match verify_to_anchor(leaf, &chain[1..depth], candidate, now, algorithms) {
                Ok(()) => {}
                Err(reason) => {
                    failure = DaneFailure::TaChainInvalid {
                        record: record.record.clone(),
                        reason,
                    };
                    continue;
                }
            }
            match valid_for_any(leaf, reference_names) {
                Some(name) => {
                    return Ok(DaneMatch {
                        usage: Usage::DaneTa,
                        record: record.record.clone(),
                        depth,
                        matched_name: Some(name),
                    })
                }
                None => {
                    failure = DaneFailure::NameMismatch {
                        record: record.record.clone(),
                        names: reference_names.to_vec(),
                    }
                }
            }
        }
    }
    Err(failure)
}

fn verify_to_anchor(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchor: &CertificateDer<'_>,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), String> {
    let anchor = webpki::anchor_from_trusted_cert(anchor).map_err(|err| err.to_string())?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|err| err.to_string())?;
    ee.verify_for_usage(
        algorithms.all,
        &[anchor],
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|err| err.to_string())
}

fn valid_for_any(leaf: &CertificateDer<'_>, names: &[String]) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(leaf).ok()?;
    names.iter().find_map(|name| {
        let server_name = ServerName::try_from(name.as_str()).ok()?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .ok()
            .map(|()| name.clone())
    })
}

/// A rustls verifier for one DANE-authenticated connection.
///
/// Build one per connection attempt from the MX host's plan; after the
/// handshake, [`DaneVerifier::outcome`] tells what matched (or why not).
/// The server name rustls passes is ignored: the reference identifiers
/// given here are used instead.
#[derive(Debug)]
pub struct DaneVerifier {
    tlsa: Vec<UsableTlsa>,
    reference_names: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
    outcome: Mutex<Option<Result<DaneMatch, DaneFailure>>>,
}

impl DaneVerifier {
    /// A verifier accepting chains that `tlsa` authenticates, with DANE-TA
    /// leaves valid for one of `reference_names`, and handshake signatures
    /// checked with `provider`'s algorithms.
    pub fn new(
        tlsa: Vec<UsableTlsa>,
        reference_names: Vec<String>,
        provider: &CryptoProvider,
    ) -> DaneVerifier {
        DaneVerifier {
            tlsa,
            reference_names,
            algorithms: provider.signature_verification_algorithms,
            outcome: Mutex::new(None),
        }
    }

    /// The result of the last certificate check, `None` before one ran.
    pub fn outcome(&self) -> Option<Result<DaneMatch, DaneFailure>> {
        self.outcome
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let result = authenticate_chain(
            &self.tlsa,
            &self.reference_names,
            &chain,
            now,
            &self.algorithms,
        );
        *self
            .outcome
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(result.clone());
        match result {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(failure) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(failure)),
            ))),
        }
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

/// The DANE failure inside a rustls error from [`DaneVerifier`], if any.
pub fn dane_failure(error: &rustls::Error) -> Option<&DaneFailure> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<DaneFailure>()
        }
        _ => None,
    }
}
