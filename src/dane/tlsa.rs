//! TLSA record usability and matching for SMTP (RFC 7672 section 3.1,
//! RFC 6698 section 2.1, RFC 7218 acronyms).
//!
//! Usable for SMTP: usage DANE-TA(2) and DANE-EE(3); PKIX-TA(0) and
//! PKIX-EE(1) are unusable (RFC 7672 section 3.1.3), as are unknown usages,
//! selectors and matching types, and digests of the wrong length (RFC 7671
//! section 4 treats a malformed record as unusable). Selector Cert(0) is the
//! whole certificate DER, SPKI(1) its SubjectPublicKeyInfo; matching
//! Full(0) compares the bytes, SHA2-256(1) and SHA2-512(2) their digests.

use std::fmt;

use ring::digest;

use super::der::subject_public_key_info;
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
    Ok(UsableTlsa {
        usage,
        selector,
        matching,
        record: record.clone(),
    })
}

/// A TLSA RRset split into the records usable for SMTP and the others
/// with the reason each is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsaSet {
    pub usable: Vec<UsableTlsa>,
    pub unusable: Vec<(TlsaRecord, Unusable)>,
}

impl TlsaSet {
    pub fn from_records(records: &[TlsaRecord]) -> TlsaSet {
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

    fn record(usage: u8, selector: u8, matching: u8, len: usize) -> TlsaRecord {
        TlsaRecord {
            usage,
            selector,
            matching,
            data: vec![0xaa; len],
        }
    }

    #[test]
    fn usability_table() {
        type Row = (
            u8,
            u8,
            u8,
            usize,
            Result<(Usage, Selector, Matching), Unusable>,
        );
        // (usage, selector, matching, data length, expected)
        let table: &[Row] = &[
            (
                3,
                1,
                1,
                32,
                Ok((Usage::DaneEe, Selector::Spki, Matching::Sha256)),
            ),
            (
                3,
                0,
                1,
                32,
                Ok((Usage::DaneEe, Selector::Cert, Matching::Sha256)),
            ),
            (
                3,
                1,
                2,
                64,
                Ok((Usage::DaneEe, Selector::Spki, Matching::Sha512)),
            ),
            (
                3,
                0,
                0,
                300,
                Ok((Usage::DaneEe, Selector::Cert, Matching::Full)),
            ),
            (
                2,
                0,
                1,
                32,
                Ok((Usage::DaneTa, Selector::Cert, Matching::Sha256)),
            ),
            (
                2,
                1,
                0,
                91,
                Ok((Usage::DaneTa, Selector::Spki, Matching::Full)),
            ),
            (0, 0, 1, 32, Err(Unusable::PkixTa)),
            (1, 1, 1, 32, Err(Unusable::PkixEe)),
            (4, 1, 1, 32, Err(Unusable::UnknownUsage(4))),
            (255, 1, 1, 32, Err(Unusable::UnknownUsage(255))),
            (3, 2, 1, 32, Err(Unusable::UnknownSelector(2))),
            (3, 255, 1, 32, Err(Unusable::UnknownSelector(255))),
            (3, 1, 3, 32, Err(Unusable::UnknownMatching(3))),
            (3, 1, 255, 32, Err(Unusable::UnknownMatching(255))),
            (
                3,
                1,
                1,
                31,
                Err(Unusable::WrongDigestLength {
                    matching: 1,
                    expected: 32,
                    actual: 31,
                }),
            ),
            (
                3,
                1,
                1,
                64,
                Err(Unusable::WrongDigestLength {
                    matching: 1,
                    expected: 32,
                    actual: 64,
                }),
            ),
            (
                2,
                0,
                2,
                32,
                Err(Unusable::WrongDigestLength {
                    matching: 2,
                    expected: 64,
                    actual: 32,
                }),
            ),
            (3, 1, 0, 0, Err(Unusable::EmptyData)),
        ];
        for (usage, selector, matching, len, expected) in table {
            let rec = record(*usage, *selector, *matching, *len);
            let got = usability(&rec).map(|u| (u.usage, u.selector, u.matching));
            assert_eq!(
                &got, expected,
                "TLSA {usage} {selector} {matching} len {len}"
            );
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
        /// usable and the data length fits the matching type.
        #[test]
        fn usability_agrees_with_the_rules(usage: u8, selector: u8, matching: u8, len in 0usize..80) {
            let rec = record(usage, selector, matching, len);
            let length_ok = match matching {
                0 => len > 0,
                1 => len == 32,
                2 => len == 64,
                _ => false,
            };
            let expected = matches!(usage, 2 | 3) && selector <= 1 && matching <= 2 && length_ok;
            proptest::prop_assert_eq!(usability(&rec).is_ok(), expected);
            // Matching never panics, whatever the certificate bytes.
            if let Ok(usable) = usability(&rec) {
                let _ = usable.matches(&rec.data);
            }
        }
    }
}
