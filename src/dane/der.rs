//! A minimal DER walk to find a certificate's SubjectPublicKeyInfo (RFC
//! 5280 section 4.1), for TLSA selector SPKI(1). Works on any certificate
//! in a chain (webpki's `EndEntityCert` is meant for leaves only). Returns
//! `None` on anything malformed, never panics.

/// One TLV element: its tag, the whole encoding, and what follows it.
/// Also used by `probe::certinfo` to show certificate names and dates.
pub(crate) struct Element<'a> {
    pub(crate) tag: u8,
    pub(crate) whole: &'a [u8],
    pub(crate) content: &'a [u8],
    pub(crate) rest: &'a [u8],
}

/// The first DER element of `input`; `None` when malformed or truncated.
pub(crate) fn element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, after_len) = after_tag.split_first()?;
    let (length, after_header) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let count = usize::from(first & 0x7f);
        // DER forbids the indefinite form (0x80); 4 length bytes is plenty
        // for a certificate.
        if count == 0 || count > 4 || after_len.len() < count {
            return None;
        }
        let (bytes, rest) = after_len.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if after_header.len() < length {
        return None;
    }
    let header_len = input.len() - after_header.len();
    let (content, rest) = after_header.split_at(length);
    Some(Element {
        tag,
        whole: &input[..header_len + length],
        content,
        rest,
    })
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;

/// The DER bytes of the SubjectPublicKeyInfo SEQUENCE of `cert_der`.
pub fn subject_public_key_info(cert_der: &[u8]) -> Option<&[u8]> {
    let certificate = element(cert_der)?;
    if certificate.tag != SEQUENCE {
        return None;
    }
    let tbs = element(certificate.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut field = element(tbs.content)?;
    if field.tag == VERSION {
        field = element(field.rest)?;
    }
    if field.tag != INTEGER {
        return None;
    }
    // signature AlgorithmIdentifier, issuer, validity, subject: skip 4.
    let mut rest = field.rest;
    for _ in 0..4 {
        let skipped = element(rest)?;
        if skipped.tag != SEQUENCE {
            return None;
        }
        rest = skipped.rest;
    }
    let spki = element(rest)?;
    (spki.tag == SEQUENCE).then_some(spki.whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn finds_the_same_spki_as_webpki() {
        for _ in 0..3 {
            let key = rcgen::KeyPair::generate().expect("key");
            let params =
                rcgen::CertificateParams::new(vec!["mx.example.test".to_string()]).expect("params");
            let cert = params.self_signed(&key).expect("cert");
            let der = CertificateDer::from(cert.der().to_vec());
            let ee = webpki::EndEntityCert::try_from(&der).expect("parse");
            let expected = ee.subject_public_key_info();
            assert_eq!(subject_public_key_info(&der), Some(expected.as_ref()));
            let spki = subject_public_key_info(&der).expect("spki");
            assert!(spki.ends_with(key.public_key_raw()));
        }
    }

    #[test]
    fn malformed_input_yields_none() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x05, 0x01],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x04, 0x00],
            &[0x30, 0x02, 0x30, 0x00],
        ];
        for case in cases {
            assert_eq!(subject_public_key_info(case), None, "{case:02x?}");
        }
    }

    fn sample_certificate() -> &'static [u8] {
        static CERT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        CERT.get_or_init(|| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params =
                rcgen::CertificateParams::new(vec!["mx.example.test".to_string()]).expect("params");
            params.self_signed(&key).expect("cert").der().to_vec()
        })
    }

    proptest::proptest! {
        /// Truncated or corrupted certificates never panic the walk.
        #[test]
        fn damaged_certificates_are_handled(cut in 0usize..1000, flip in 0usize..1000, mask: u8) {
            let mut bytes = sample_certificate().to_vec();
            let at = flip % bytes.len();
            bytes[at] ^= mask;
            bytes.truncate(cut.min(bytes.len()));
            if let Some(spki) = subject_public_key_info(&bytes) {
                proptest::prop_assert!(spki.len() <= bytes.len());
            }
        }

        #[test]
        fn never_panics_and_stays_inside_the_input(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Some(spki) = subject_public_key_info(&bytes) {
                let start = spki.as_ptr() as usize - bytes.as_ptr() as usize;
                proptest::prop_assert!(start + spki.len() <= bytes.len());
                proptest::prop_assert_eq!(spki.first(), Some(&SEQUENCE));
            }
        }
    }
}
