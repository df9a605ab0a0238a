//! TLSA record usability and matching for SMTP (RFC 7672 section 3.1,
//! RFC 6698 section 2.1, RFC 7218 acronyms).
//!
//! Usable for SMTP: usage DANE-TA(2) and DANE-EE(3); PKIX-TA(0) and
//! PKIX-EE(1) are unusable (RFC 7672 section 3.1.3), as are unknown usages,
//! selectors and matching types, and malformed records (RFC 7672 section
//! 3.1, RFC 7671 section 4): digests of the wrong length, and full data
//! (matching Full(0)) that is not what its selector says it is. RFC 6698
//! section 2.1: Selector Cert(0) is the whole certificate DER, SPKI(1) its
//! SubjectPublicKeyInfo; so `x 0 0` data must parse as one X.509
//! certificate and `x 1 0` data as one SubjectPublicKeyInfo, with nothing
//! left over. Matching Full(0) compares the bytes, SHA2-256(1) and
//! SHA2-512(2) their digests.
//!
//! Certificates and SPKIs are parsed with `x509-parser`, never by hand.

use std::fmt;

use ring::digest;

use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

use crate::dns::TlsaRecord;

/// Certificate usage (RFC 6698 section 2.1.1), the two usable for SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// DANE-TA(2): the record names a trust anchor in the server's chain.
    DaneTa,
    /// DANE-EE(3): the record names the server's own certificate or key.
    DaneEe,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::DaneTa => "DANE-TA",
            Usage::DaneEe => "DANE-EE",
        })
    }
}

/// Which part of a certificate is matched (RFC 6698 section 2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selector {
    Cert,
    Spki,
}

/// How the association data is compared (RFC 6698 section 2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Matching {
    Full,
    Sha256,
    Sha512,
}

/// Why a TLSA record cannot be used for SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Unusable {
    #[error("usage PKIX-TA(0) is not usable for SMTP (RFC 7672 section 3.1.3)")]
    PkixTa,
    #[error("usage PKIX-EE(1) is not usable for SMTP (RFC 7672 section 3.1.3)")]
    PkixEe,
    #[error("unknown certificate usage {0}")]
    UnknownUsage(u8),
    #[error("unknown selector {0}")]
    UnknownSelector(u8),
    #[error("unknown matching type {0}")]
    UnknownMatching(u8),
    #[error("matching type {matching} needs {expected} bytes of digest, record has {actual}")]
    WrongDigestLength {
        matching: u8,
        expected: usize,
        actual: usize,
    },
    #[error("empty certificate association data")]
    EmptyData,
    /// `x 0 0`: the data is not one DER X.509 certificate.
    #[error("selector Cert(0) with full data: the data ({len} bytes) is not an X.509 certificate")]
    MalformedCertificate { len: usize },
    /// `x 1 0`: the data is not one DER SubjectPublicKeyInfo.
    #[error(
        "selector SPKI(1) with full data: the data ({len} bytes) is not a SubjectPublicKeyInfo"
    )]
    MalformedSpki { len: usize },
}

/// A TLSA record that can authenticate an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsableTlsa {
    pub usage: Usage,
    pub selector: Selector,
    pub matching: Matching,
    /// The record as published, for logs ("DANE-verified via 3 1 1 ...").
    pub record: TlsaRecord,
}

/// Decide whether `record` is usable for SMTP.
pub fn usability(record: &TlsaRecord) -> Result<UsableTlsa, Unusable> {
    let usage = match record.usage {
        0 => return Err(Unusable::PkixTa),
        1 => return Err(Unusable::PkixEe),
        2 => Usage::DaneTa,
        3 => Usage::DaneEe,
        other => return Err(Unusable::UnknownUsage(other)),
    };
    let selector = match record.selector {
        0 => Selector::Cert,
        1 => Selector::Spki,
        other => return Err(Unusable::UnknownSelector(other)),
    };
    let (matching, expected) = match record.matching {
        0 => (Matching::Full, None),
        1 => (Matching::Sha256, Some(32)),
        2 => (Matching::Sha512, Some(64)),
        other => return Err(Unusable::UnknownMatching(other)),
    };
    if record.data.is_empty() {
        return Err(Unusable::EmptyData);
    }
    if let Some(expected) = expected {
        if record.data.len() != expected {
            return Err(Unusable::WrongDigestLength {
                matching: record.matching,
                expected,
                actual: record.data.len(),
            });
        }
    }
    if matching == Matching::Full {
        let len = record.data.len();
        match selector {
            Selector::Cert if !is_certificate(&record.data) => {
                return Err(Unusable::MalformedCertificate { len })
            }
            Selector::Spki if !is_spki(&record.data) => {
                return Err(Unusable::MalformedSpki { len })
            }
            _ => {}
        }
    }
    Ok(UsableTlsa {
        usage,
        selector,
        matching,
        record: record.clone(),
    })
}

/// Whether `data` is exactly one DER X.509 certificate.
fn is_certificate(data: &[u8]) -> bool {
    matches!(X509Certificate::from_der(data), Ok((rest, _)) if rest.is_empty())
}

/// Whether `data` is exactly one DER SubjectPublicKeyInfo.
fn is_spki(data: &[u8]) -> bool {
    matches!(SubjectPublicKeyInfo::from_der(data), Ok((rest, _)) if rest.is_empty())
}

/// The DER bytes of the SubjectPublicKeyInfo of `cert_der` (RFC 5280
/// section 4.1), for selector SPKI(1); any certificate of a chain, not only
/// leaves. `None` when `cert_der` is not a certificate.
pub(crate) fn subject_public_key_info(cert_der: &[u8]) -> Option<&[u8]> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw)
}

/// A TLSA RRset split into the records usable for SMTP and the others
/// with the reason each is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TlsaSet {
    pub usable: Vec<UsableTlsa>,
    pub unusable: Vec<(TlsaRecord, Unusable)>,
}

impl TlsaSet {
    pub(crate) fn from_records(records: &[TlsaRecord]) -> TlsaSet {
        let mut set = TlsaSet::default();
        for record in records {
            match usability(record) {
                Ok(usable) => set.usable.push(usable),
                Err(why) => set.unusable.push((record.clone(), why)),
            }
        }
        set
    }
}

impl UsableTlsa {
    /// Whether this record's association data matches `cert_der` (a DER
    /// X.509 certificate). A certificate whose SPKI cannot be found does
    /// not match a selector-1 record.
    pub fn matches(&self, cert_der: &[u8]) -> bool {
        let selected = match self.selector {
            Selector::Cert => cert_der,
            Selector::Spki => match subject_public_key_info(cert_der) {
                Some(spki) => spki,
                None => return false,
            },
        };
        let data = self.record.data.as_slice();
        match self.matching {
            Matching::Full => selected == data,
            Matching::Sha256 => digest::digest(&digest::SHA256, selected).as_ref() == data,
            Matching::Sha512 => digest::digest(&digest::SHA512, selected).as_ref() == data,
        }
    }
}

/// Association data for `cert_der` with the given selector and matching
/// type, as a zone would publish it (used by tests and tooling).
pub fn association_data(
    cert_der: &[u8],
    selector: Selector,
    matching: Matching,
) -> Option<Vec<u8>> {
    let selected = match selector {
        Selector::Cert => cert_der,
        Selector::Spki => subject_public_key_info(cert_der)?,
    };
    Some(match matching {
        Matching::Full => selected.to_vec(),
        Matching::Sha256 => digest::digest(&digest::SHA256, selected).as_ref().to_vec(),
        Matching::Sha512 => digest::digest(&digest::SHA512, selected).as_ref().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose data is `len` bytes of 0xaa: never a certificate or SPKI.
    fn record(usage: u8, selector: u8, matching: u8, len: usize) -> TlsaRecord {
        TlsaRecord {
            usage,
            selector,
            matching,
            data: vec![0xaa; len],
        }
    }

    /// A real certificate, its SPKI, and their digests, made once.
    struct Sample {
        cert: Vec<u8>,
        spki: Vec<u8>,
    }

    fn sample() -> &'static Sample {
        static SAMPLE: std::sync::OnceLock<Sample> = std::sync::OnceLock::new();
        SAMPLE.get_or_init(|| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params =
                rcgen::CertificateParams::new(vec!["mx.example.test".to_string()]).expect("params");
            let cert = params.self_signed(&key).expect("cert").der().to_vec();
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            Sample { cert, spki }
        })
    }

    fn with_data(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> TlsaRecord {
        TlsaRecord {
            usage,
            selector,
            matching,
            data,
        }
    }

    /// Every selector x matching type, with good data, data of the wrong
    /// length, and full data that does not parse as what it claims.
    #[test]
    fn usability_table() {
        let s = sample();
        let sha256 = |d: &[u8]| digest::digest(&digest::SHA256, d).as_ref().to_vec();
        let sha512 = |d: &[u8]| digest::digest(&digest::SHA512, d).as_ref().to_vec();
        let mut truncated_cert = s.cert.clone();
        truncated_cert.pop();
        let mut cert_with_trailer = s.cert.clone();
        cert_with_trailer.push(0);
        let mut spki_with_trailer = s.spki.clone();
        spki_with_trailer.extend_from_slice(&[0x05, 0x00]);
        let garbage = vec![0xaa; 300];
        use Matching::{Full, Sha256, Sha512};
        use Selector::{Cert, Spki};
        type Row = (
            u8,
            u8,
            u8,
            Vec<u8>,
            Result<(Usage, Selector, Matching), Unusable>,
        );
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // Selector Cert(0) x every matching type.
            (3, 0, 0, s.cert.clone(), Ok((Usage::DaneEe, Cert, Full))),
            (2, 0, 0, s.cert.clone(), Ok((Usage::DaneTa, Cert, Full))),
            (3, 0, 1, sha256(&s.cert), Ok((Usage::DaneEe, Cert, Sha256))),
            (2, 0, 1, sha256(&s.cert), Ok((Usage::DaneTa, Cert, Sha256))),
            (3, 0, 2, sha512(&s.cert), Ok((Usage::DaneEe, Cert, Sha512))),
            (2, 0, 2, sha512(&s.cert), Ok((Usage::DaneTa, Cert, Sha512))),
            // Selector SPKI(1) x every matching type.
            (3, 1, 0, s.spki.clone(), Ok((Usage::DaneEe, Spki, Full))),
            (2, 1, 0, s.spki.clone(), Ok((Usage::DaneTa, Spki, Full))),
            (3, 1, 1, sha256(&s.spki), Ok((Usage::DaneEe, Spki, Sha256))),
            (2, 1, 1, sha256(&s.spki), Ok((Usage::DaneTa, Spki, Sha256))),
            (3, 1, 2, sha512(&s.spki), Ok((Usage::DaneEe, Spki, Sha512))),
            (2, 1, 2, sha512(&s.spki), Ok((Usage::DaneTa, Spki, Sha512))),
            // Full data that does not hold what the selector claims.
            (3, 0, 0, garbage.clone(), Err(Unusable::MalformedCertificate { len: 300 })),
            (2, 0, 0, garbage.clone(), Err(Unusable::MalformedCertificate { len: 300 })),
            (3, 0, 0, s.spki.clone(), Err(Unusable::MalformedCertificate { len: s.spki.len() })),
            (3, 0, 0, truncated_cert.clone(), Err(Unusable::MalformedCertificate { len: truncated_cert.len() })),
            (3, 0, 0, cert_with_trailer.clone(), Err(Unusable::MalformedCertificate { len: cert_with_trailer.len() })),
            (3, 1, 0, garbage.clone(), Err(Unusable::MalformedSpki { len: 300 })),
            (2, 1, 0, garbage.clone(), Err(Unusable::MalformedSpki { len: 300 })),
            (3, 1, 0, s.cert.clone(), Err(Unusable::MalformedSpki { len: s.cert.len() })),
            (3, 1, 0, spki_with_trailer.clone(), Err(Unusable::MalformedSpki { len: spki_with_trailer.len() })),
            (3, 1, 0, vec![0x30, 0x00], Err(Unusable::MalformedSpki { len: 2 })),
            (3, 0, 0, vec![], Err(Unusable::EmptyData)),
            (3, 1, 0, vec![], Err(Unusable::EmptyData)),
            // Digests of the wrong length, both selectors.
            (3, 0, 1, vec![0xaa; 31], Err(Unusable::WrongDigestLength { matching: 1, expected: 32, actual: 31 })),
            (3, 1, 1, vec![0xaa; 33], Err(Unusable::WrongDigestLength { matching: 1, expected: 32, actual: 33 })),
            (3, 1, 1, sha512(&s.spki), Err(Unusable::WrongDigestLength { matching: 1, expected: 32, actual: 64 })),
            (2, 0, 2, sha256(&s.cert), Err(Unusable::WrongDigestLength { matching: 2, expected: 64, actual: 32 })),
            (3, 1, 2, vec![0xaa; 65], Err(Unusable::WrongDigestLength { matching: 2, expected: 64, actual: 65 })),
            (3, 0, 1, vec![], Err(Unusable::EmptyData)),
            // Unusable usages, unknown selector and matching type.
            (0, 0, 1, sha256(&s.cert), Err(Unusable::PkixTa)),
            (1, 1, 1, sha256(&s.spki), Err(Unusable::PkixEe)),
            (4, 1, 1, sha256(&s.spki), Err(Unusable::UnknownUsage(4))),
            (255, 1, 1, sha256(&s.spki), Err(Unusable::UnknownUsage(255))),
            (3, 2, 1, sha256(&s.spki), Err(Unusable::UnknownSelector(2))),
            (3, 255, 0, s.spki.clone(), Err(Unusable::UnknownSelector(255))),
            (3, 1, 3, sha256(&s.spki), Err(Unusable::UnknownMatching(3))),
            (3, 1, 255, sha256(&s.spki), Err(Unusable::UnknownMatching(255))),
        ];
        for (usage, selector, matching, data, expected) in table {
            let len = data.len();
            let rec = with_data(usage, selector, matching, data);
            let got = usability(&rec).map(|u| (u.usage, u.selector, u.matching));
            assert_eq!(
                got, expected,
                "TLSA {usage} {selector} {matching} len {len}"
            );
        }
    }

    /// Every usable record made from a certificate matches it, and its
    /// association data is what the table above calls good.
    #[test]
    fn association_data_matches_its_certificate() {
        let s = sample();
        for selector in [Selector::Cert, Selector::Spki] {
            for matching in [Matching::Full, Matching::Sha256, Matching::Sha512] {
                let data = association_data(&s.cert, selector, matching).expect("data");
                let (sel, mat) = (selector as u8, matching as u8);
                let rec = with_data(3, sel, mat, data);
                let usable = usability(&rec).unwrap_or_else(|e| panic!("3 {sel} {mat}: {e}"));
                assert!(usable.matches(&s.cert), "3 {sel} {mat}");
            }
        }
    }

    #[test]
    fn finds_the_same_spki_as_webpki() {
        let s = sample();
        let der = rustls::pki_types::CertificateDer::from(s.cert.clone());
        let ee = webpki::EndEntityCert::try_from(&der).expect("parse");
        let expected = ee.subject_public_key_info();
        assert_eq!(subject_public_key_info(&s.cert), Some(expected.as_ref()));
        assert_eq!(subject_public_key_info(&s.cert), Some(s.spki.as_slice()));
        let cases: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x05, 0x01],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x04, 0x00],
            &[0x30, 0x02, 0x30, 0x00],
        ];
        for case in cases {
            assert_eq!(subject_public_key_info(case), None, "{case:02x?}");
        }
    }

    #[test]
    fn set_splits_usable_from_unusable() {
        let set = TlsaSet::from_records(&[record(3, 1, 1, 32), record(1, 1, 1, 32)]);
        assert_eq!(set.usable.len(), 1);
        assert_eq!(set.unusable.len(), 1);
        assert_eq!(set.unusable[0].1, Unusable::PkixEe);
    }

    proptest::proptest! {
        /// Usable exactly when usage, selector and matching are known and
        /// usable and the data fits the matching type: a digest of the
        /// right length; full data (0xaa bytes) never parses, so never.
        #[test]
        fn usability_agrees_with_the_rules(usage: u8, selector: u8, matching: u8, len in 0usize..80) {
            let rec = record(usage, selector, matching, len);
            let length_ok = match matching {
                0 => false,
                1 => len == 32,
                2 => len == 64,
                _ => false,
            };
            let expected = matches!(usage, 2 | 3) && selector <= 1 && matching <= 2 && length_ok;
            proptest::prop_assert_eq!(usability(&rec).is_ok(), expected);
            // Matching never panics, whatever the certificate bytes.
            if let Ok(usable) = usability(&rec) {
                proptest::prop_assert!(!usable.matches(&rec.data));
            }
        }

        /// Damaged certificates never panic the parser, and an SPKI found
        /// lies inside the input.
        #[test]
        fn damaged_certificates_are_handled(cut in 0usize..1000, flip in 0usize..1000, mask: u8) {
            let mut bytes = sample().cert.clone();
            let at = flip % bytes.len();
            bytes[at] ^= mask;
            bytes.truncate(cut.min(bytes.len()));
            if let Some(spki) = subject_public_key_info(&bytes) {
                let start = spki.as_ptr() as usize - bytes.as_ptr() as usize;
                proptest::prop_assert!(start + spki.len() <= bytes.len());
            }
            let _ = usability(&with_data(3, 0, 0, bytes.clone()));
            let _ = usability(&with_data(3, 1, 0, bytes));
        }
    }
}
