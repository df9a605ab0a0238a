//! What a person wants to see of a certificate an MX host presented:
//! subject, issuer, validity period and DNS names (RFC 5280 sections
//! 4.1.2.4 to 4.1.2.6 and 4.2.1.6), read with `x509-parser`. For display
//! only; the decisions are made by webpki and the DANE matcher, never from
//! this. Anything unreadable shows as `?` and never panics.

use std::fmt;

use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A moment from a certificate's validity period, in seconds since the Unix
/// epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertTime(pub i64);

impl fmt::Display for CertTime {
    /// `2027-01-31 12:00:00 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = crate::date::civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl Serialize for CertTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The displayable facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// RFC 4514-like, most significant first as encoded: `CN=mx.example.com, O=Example`.
    pub subject: String,
    pub issuer: String,
    pub not_before: Option<CertTime>,
    pub not_after: Option<CertTime>,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub names: Vec<String>,
}

impl CertInfo {
    /// Reads `der`; fields that cannot be read are `?` or absent.
    pub fn parse(der: &[u8]) -> CertInfo {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return CertInfo {
                subject: "?".to_string(),
                issuer: "?".to_string(),
                not_before: None,
                not_after: None,
                names: Vec::new(),
            };
        };
        let validity = cert.validity();
        CertInfo {
            subject: name_text(cert.subject()),
            issuer: name_text(cert.issuer()),
            not_before: Some(CertTime(validity.not_before.timestamp())),
            not_after: Some(CertTime(validity.not_after.timestamp())),
            names: alt_names(&cert),
        }
    }

    /// Whether `now` (Unix seconds) lies outside the validity period.
    pub(crate) fn expired_at(&self, now: i64) -> bool {
        self.not_after.is_some_and(|t| t.0 < now) || self.not_before.is_some_and(|t| t.0 > now)
    }
}

/// RFC 4514-like, as encoded: `CN=mx.example.com, O=Example`; control
/// characters shown as `?`.
fn name_text(name: &x509_parser::x509::X509Name<'_>) -> String {
    if name.iter().next().is_none() {
        return "(empty)".to_string();
    }
    name.to_string()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The DNS names and IP addresses of the subjectAltName extension.
fn alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(
                dns.chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect(),
            ),
            GeneralName::IPAddress(bytes) => ip_text(bytes),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => {
            let octets: [u8; 4] = bytes.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(octets).to_string())
        }
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    /// algorithm), the inverse of `civil_from_days`.
    fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[test]
    fn reads_names_dates_and_alt_names() {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["mx.example.test".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "mx.example.test");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params
            .subject_alt_names
            .push(SanType::IpAddress("192.0.2.7".parse().expect("ip")));
        params.not_before = rcgen::date_time_ymd(2001, 2, 3);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let cert = params.self_signed(&key).expect("cert");
        let info = CertInfo::parse(cert.der());
        assert_eq!(info.subject, "CN=mx.example.test, O=Example");
        assert_eq!(info.issuer, info.subject);
        assert_eq!(
            info.not_before.map(|t| t.to_string()).as_deref(),
            Some("2001-02-03 00:00:00 UTC")
        );
        assert_eq!(
            info.not_after.map(|t| t.to_string()).as_deref(),
            Some("2049-12-31 00:00:00 UTC")
        );
        assert_eq!(info.names, ["mx.example.test", "192.0.2.7"]);
        assert!(!info.expired_at(1_800_000_000));
        assert!(info.expired_at(2_600_000_000));
    }

    #[test]
    fn generalized_time_after_2049_and_calendar_round_trip() {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["a.test".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2100, 3, 1);
        let cert = params.self_signed(&key).expect("cert");
        let info = CertInfo::parse(cert.der());
        assert_eq!(
            info.not_after.map(|t| t.to_string()).as_deref(),
            Some("2100-03-01 00:00:00 UTC")
        );
        for days in [-1, 0, 59, 60, 365, 11_016, 47_541] {
            let (y, m, d) = crate::date::civil_from_days(days);
            assert_eq!(days_from_civil(y, m as i64, i64::from(d)), days);
        }
    }

    #[test]
    fn malformed_input_shows_question_marks() {
        for bytes in [&[][..], &[0x30, 0x03, 0x30, 0x01, 0x00], &[0x04, 0x00]] {
            let info = CertInfo::parse(bytes);
            assert_eq!(info.subject, "?");
            assert!(info.names.is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = CertInfo::parse(&bytes);
        }
    }
}
