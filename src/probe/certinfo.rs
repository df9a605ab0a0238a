//! What a person wants to see of a certificate an MX host presented:
//! subject, issuer, validity period and DNS names (RFC 5280 sections
//! 4.1.2.4 to 4.1.2.6 and 4.2.1.6). A read-only DER walk for display; the
//! decisions are made by webpki and the DANE matcher, never from this.
//! Anything malformed shows as `?` and never panics.

use std::fmt;

use serde::Serialize;

use crate::dane::der::{element, Element};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const BMP_STRING: u8 = 0x1e;
/// `dNSName [2] IA5String` inside GeneralNames.
const SAN_DNS_NAME: u8 = 0x82;
/// `iPAddress [7] OCTET STRING` inside GeneralNames.
const SAN_IP_ADDRESS: u8 = 0x87;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// A moment from a certificate's validity period, in seconds since the Unix
/// epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertTime(pub i64);

impl fmt::Display for CertTime {
    /// `2027-01-31 12:00:00 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
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
        parse_tbs(der).unwrap_or_else(|| CertInfo {
            subject: "?".to_string(),
            issuer: "?".to_string(),
            not_before: None,
            not_after: None,
            names: Vec::new(),
        })
    }

    /// Whether `now` (Unix seconds) lies outside the validity period.
    pub fn expired_at(&self, now: i64) -> bool {
        self.not_after.is_some_and(|t| t.0 < now) || self.not_before.is_some_and(|t| t.0 > now)
    }
}

fn expect(input: &[u8], tag: u8) -> Option<Element<'_>> {
    let e = element(input)?;
    (e.tag == tag).then_some(e)
}

fn parse_tbs(der: &[u8]) -> Option<CertInfo> {
    let certificate = expect(der, SEQUENCE)?;
    let tbs = expect(certificate.content, SEQUENCE)?;
    let mut field = element(tbs.content)?;
    if field.tag == VERSION {
        field = element(field.rest)?;
    }
    if field.tag != INTEGER {
        return None;
    }
    let signature = expect(field.rest, SEQUENCE)?;
    let issuer = expect(signature.rest, SEQUENCE)?;
    let validity = expect(issuer.rest, SEQUENCE)?;
    let subject = expect(validity.rest, SEQUENCE)?;
    let not_before = element(validity.content);
    let not_after = not_before.as_ref().and_then(|e| element(e.rest));
    let spki = expect(subject.rest, SEQUENCE)?;
    // Optional issuerUniqueID [1], subjectUniqueID [2], then extensions [3].
    let mut rest = spki.rest;
    let mut names = Vec::new();
    while let Some(e) = element(rest) {
        if e.tag == EXTENSIONS {
            names = subject_alt_names(e.content).unwrap_or_default();
            break;
        }
        rest = e.rest;
    }
    Some(CertInfo {
        subject: name_text(subject.content),
        issuer: name_text(issuer.content),
        not_before: not_before.and_then(|e| time(&e)),
        not_after: not_after.and_then(|e| time(&e)),
        names,
    })
}

/// `Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)`.
fn name_text(mut rdns: &[u8]) -> String {
    let mut parts = Vec::new();
    while let Some(set) = expect(rdns, SET) {
        let mut attributes = set.content;
        while let Some(pair) = expect(attributes, SEQUENCE) {
            if let Some(oid) = expect(pair.content, OID) {
                let value = element(oid.rest)
                    .map(|v| string_value(v.tag, v.content))
                    .unwrap_or_else(|| "?".to_string());
                parts.push(format!("{}={value}", attribute_name(oid.content)));
            }
            attributes = pair.rest;
        }
        rdns = set.rest;
    }
    if parts.is_empty() {
        "(empty)".to_string()
    } else {
        parts.join(", ")
    }
}

fn attribute_name(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".to_string(),
        [0x55, 0x04, 0x06] => "C".to_string(),
        [0x55, 0x04, 0x07] => "L".to_string(),
        [0x55, 0x04, 0x08] => "ST".to_string(),
        [0x55, 0x04, 0x0a] => "O".to_string(),
        [0x55, 0x04, 0x0b] => "OU".to_string(),
        [0x55, 0x04, 0x05] => "serialNumber".to_string(),
        other => dotted(other),
    }
}

/// An OBJECT IDENTIFIER's content in dotted form (X.690 section 8.19).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &byte in oid {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    let text: Vec<String> = arcs.iter().map(u64::to_string).collect();
    text.join(".")
}

fn string_value(tag: u8, content: &[u8]) -> String {
    if tag == BMP_STRING {
        let units: Vec<u16> = content
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(content)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`
/// (RFC 5280 section 4.1.2.5).
fn time(e: &Element<'_>) -> Option<CertTime> {
    let text = std::str::from_utf8(e.content).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (e.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(CertTime(
        days * 86_400 + hour * 3600 + minute * 60 + second.min(60),
    ))
}

/// Extensions `SEQUENCE OF Extension`; the DNS names and IP addresses of
/// subjectAltName.
fn subject_alt_names(explicit: &[u8]) -> Option<Vec<String>> {
    let list = expect(explicit, SEQUENCE)?;
    let mut rest = list.content;
    while let Some(extension) = expect(rest, SEQUENCE) {
        let oid = expect(extension.content, OID)?;
        if oid.content == SUBJECT_ALT_NAME {
            // An optional `critical BOOLEAN` precedes the OCTET STRING.
            let mut value = element(oid.rest)?;
            if value.tag != OCTET_STRING {
                value = expect(value.rest, OCTET_STRING)?;
            }
            let general_names = expect(value.content, SEQUENCE)?;
            let mut names = Vec::new();
            let mut items = general_names.content;
            while let Some(item) = element(items) {
                match item.tag {
                    SAN_DNS_NAME => names.push(string_value(item.tag, item.content)),
                    SAN_IP_ADDRESS => {
                        if let Some(ip) = ip_text(item.content) {
                            names.push(ip);
                        }
                    }
                    _ => {}
                }
                items = item.rest;
            }
            return Some(names);
        }
        rest = extension.rest;
    }
    Some(Vec::new())
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

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

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
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
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
