//! Names the policy model compares: DNS domain names (RFC 1035 section 2.3.1
//! preferred syntax, RFC 5321 section 4.1.2 `Domain`), `*.` wildcards over
//! them, and the peer patterns of the configuration (domain, wildcard, IP
//! address, CIDR block).
//!
//! Domain names are compared case-insensitively (RFC 4343) with a trailing
//! root dot ignored, so they are stored lowercased without it. They are
//! compared in A-label form (RFC 5890 section 2.3.2.1): a name given with
//! U-labels (`bücher.example`) is converted with IDNA, UTS 46 processing
//! (the `idna` crate), when it is parsed, i.e. at configuration load, and
//! so is a name looked up ([`normalize_lookup`]).

use std::borrow::Borrow;
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

/// Longest name in presentation form without the trailing dot (RFC 1035 2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// A validated, lowercased domain name without trailing dot. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(Arc<str>);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// `Hash`/`Eq` derive from the inner `str`, so looking a `DomainName` key up by
// `&str` is consistent.
impl Borrow<str> for DomainName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for DomainName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why a string is not a usable domain name or peer pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("empty domain name")]
    Empty,
    #[error("domain name longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("empty label in `{0}`")]
    EmptyLabel(String),
    #[error("label `{0}` longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong(String),
    #[error("label `{0}` may not start or end with `-`")]
    HyphenAtEdge(String),
    #[error("character {0:?} not allowed in a domain name (letters, digits and `-`, or an internationalized name)")]
    BadCharacter(char),
    #[error("`{0}` is not a valid internationalized domain name (IDNA, UTS 46)")]
    Idna(String),
    #[error(
        "bad wildcard `{0}`: a wildcard is `*.` followed by a domain name, e.g. `*.example.com`"
    )]
    BadWildcard(String),
    #[error("bad IP address or CIDR block: {reason}")]
    BadAddress { given: String, reason: String },
    #[error("the CIDR block has host bits set; did you mean `{network}`?")]
    HostBitsSet { given: String, network: IpNet },
}

impl FromStr for DomainName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        checked(s).map(|name| DomainName(Arc::from(&*name)))
    }
}

impl DomainName {
    /// `s` checked as [`DomainName::from_str`] does, as the equal name
    /// in `names` when there is one (else added to it): the peers that
    /// 100,000 domains name are each held once, and a name already known
    /// costs no allocation.
    pub(crate) fn parse_shared<S: std::hash::BuildHasher>(
        s: &str,
        names: &mut std::collections::HashSet<DomainName, S>,
    ) -> Result<DomainName, NameError> {
        let name = checked(s)?;
        if let Some(known) = names.get(&*name) {
            return Ok(known.clone());
        }
        let name = DomainName(Arc::from(&*name));
        names.insert(name.clone());
        Ok(name)
    }
}

/// `s` as a domain name: A-labels, lowercase, without a trailing dot;
/// borrowed when `s` is already so.
fn checked(s: &str) -> Result<Cow<'_, str>, NameError> {
    let name = to_a_labels(s.strip_suffix('.').unwrap_or(s))?;
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel(s.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(label.to_owned()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(NameError::BadCharacter(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::HyphenAtEdge(label.to_owned()));
        }
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(Cow::Owned(name.to_ascii_lowercase()));
    }
    Ok(name)
}

/// `name` in A-label form: ASCII names are returned as they are; a name
/// with non-ASCII characters is converted with IDNA (UTS 46 processing:
/// case folding and normalization, then Punycode), e.g. `Bücher.example` is
/// `xn--bcher-kva.example`.
pub(crate) fn to_a_labels(name: &str) -> Result<Cow<'_, str>, NameError> {
    if name.is_ascii() {
        return Ok(Cow::Borrowed(name));
    }
    idna::domain_to_ascii(name)
        .map(Cow::Owned)
        .map_err(|_| NameError::Idna(name.to_owned()))
}

/// Normalizes a name taken from the network for lookup: A-labels,
/// lowercase, without a trailing dot. Performs no validation: a malformed
/// name simply matches nothing. Borrows when the input is already normal.
pub(crate) fn normalize_lookup(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.is_ascii() {
        // Not an IDNA name either: keep it; it matches no entry.
        return match idna::domain_to_ascii(name) {
            Ok(a_labels) => Cow::Owned(a_labels),
            Err(_) => Cow::Borrowed(name),
        };
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// What a configured peer entry matches.
///
/// Outbound peers are recipient domains (`Domain` or `Wildcard`); inbound
/// peers may also be the connecting `Ip` or a `Cidr` block containing it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerMatcher {
    /// Exactly this domain.
    Domain(DomainName),
    /// `*.suffix`: any subdomain of `suffix` at any depth, not `suffix` itself.
    Wildcard(DomainName),
    /// Exactly this address (IPv4-mapped IPv6 addresses are stored as IPv4).
    Ip(IpAddr),
    /// Any address in this network (host bits are zero).
    Cidr(IpNet),
}

impl PeerMatcher {
    /// Whether this matcher names an address rather than a domain.
    pub(crate) fn is_address(&self) -> bool {
        matches!(self, PeerMatcher::Ip(_) | PeerMatcher::Cidr(_))
    }
}

impl fmt::Display for PeerMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMatcher::Domain(d) => write!(f, "{d}"),
            PeerMatcher::Wildcard(d) => write!(f, "*.{d}"),
            PeerMatcher::Ip(ip) => write!(f, "{ip}"),
            PeerMatcher::Cidr(net) => write!(f, "{net}"),
        }
    }
}

impl Serialize for PeerMatcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for PeerMatcher {
    type Err = NameError;

    /// `a/b` is a CIDR block, something that parses as an address is an
    /// address, `*.x` is a wildcard, anything else must be a domain name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerMatcher::parse_with(s, str::parse)
    }
}

impl PeerMatcher {
    /// As [`PeerMatcher::from_str`], the domain names shared with (or
    /// added to) `names` ([`DomainName::parse_shared`]).
    pub(crate) fn parse_shared<S: std::hash::BuildHasher>(
        s: &str,
        names: &mut std::collections::HashSet<DomainName, S>,
    ) -> Result<Self, NameError> {
        PeerMatcher::parse_with(s, |name| DomainName::parse_shared(name, names))
    }

    fn parse_with(
        s: &str,
        domain: impl FnOnce(&str) -> Result<DomainName, NameError>,
    ) -> Result<Self, NameError> {
        if let Some((addr, len)) = s.split_once('/') {
            let bad = |reason: String| NameError::BadAddress {
                given: s.to_owned(),
                reason,
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| bad(format!("`{addr}` is not an IP address")))?;
            let len: u8 = len
                .parse()
                .map_err(|_| bad(format!("`{len}` is not a prefix length")))?;
            let net = IpNet::new(addr, len).map_err(|_| {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                bad(format!("prefix length {len} is longer than {max}"))
            })?;
            let canonical = canonical_net(net);
            if canonical.trunc() != canonical {
                return Err(NameError::HostBitsSet {
                    given: s.to_owned(),
                    network: canonical.trunc(),
                });
            }
            return Ok(PeerMatcher::Cidr(canonical));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(PeerMatcher::Ip(ip.to_canonical()));
        }
        if s.contains(':') {
            return Err(NameError::BadAddress {
                given: s.to_owned(),
                reason: "not an IPv6 address".to_owned(),
            });
        }
        if let Some(suffix) = s.strip_prefix("*.") {
            return domain(suffix)
                .map(PeerMatcher::Wildcard)
                .map_err(|_| NameError::BadWildcard(s.to_owned()));
        }
        if s.contains('*') {
            return Err(NameError::BadWildcard(s.to_owned()));
        }
        domain(s).map(PeerMatcher::Domain)
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:0:0/96` and longer) as IPv4, so it
/// matches the IPv4 addresses the server sees after `to_canonical`.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_are_normalized_or_rejected() {
        let ok = [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a-b.c1", "a-b.c1"),
            // U-labels are converted to A-labels (IDNA, UTS 46), any case.
            ("bücher.example", "xn--bcher-kva.example"),
            ("Bücher.Example.", "xn--bcher-kva.example"),
            ("mail.bücher.example", "mail.xn--bcher-kva.example"),
            ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ];
        for (given, want) in ok {
            assert_eq!(
                given.parse::<DomainName>().map(|d| d.to_string()),
                Ok(want.to_owned())
            );
        }
        let bad = [
            ("", NameError::Empty),
            (".", NameError::Empty),
            ("a..b", NameError::EmptyLabel("a..b".into())),
            ("-a.b", NameError::HyphenAtEdge("-a".into())),
            ("a_b.c", NameError::BadCharacter('_')),
            (
                "a\u{fffd}b.example",
                NameError::Idna("a\u{fffd}b.example".into()),
            ),
        ];
        for (given, want) in bad {
            assert_eq!(given.parse::<DomainName>(), Err(want), "{given}");
        }
        assert_eq!(
            format!("{}.com", "a".repeat(64)).parse::<DomainName>(),
            Err(NameError::LabelTooLong("a".repeat(64)))
        );
        assert_eq!(
            ["abcdefghi"; 26].join(".").parse::<DomainName>(),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn peer_patterns_parse_by_shape() {
        let cases: [(&str, Option<&str>); 13] = [
            ("mail.example.com", Some("mail.example.com")),
            ("*.Example.com", Some("*.example.com")),
            ("*.bücher.example", Some("*.xn--bcher-kva.example")),
            ("192.0.2.1", Some("192.0.2.1")),
            ("::ffff:192.0.2.1", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("192.0.2.0/24", Some("192.0.2.0/24")),
            ("::ffff:192.0.2.0/120", Some("192.0.2.0/24")),
            ("2001:db8::/32", Some("2001:db8::/32")),
            ("192.0.2.1/24", None),
            ("192.0.2.0/33", None),
            ("a.*.example.com", None),
            ("*", None),
        ];
        for (given, want) in cases {
            let got = given.parse::<PeerMatcher>().map(|m| m.to_string()).ok();
            assert_eq!(got.as_deref(), want, "{given}");
        }
        assert!(matches!(
            "*example.com".parse::<PeerMatcher>(),
            Err(NameError::BadWildcard(_))
        ));
        assert!(matches!(
            "10.0.0.1/8".parse::<PeerMatcher>(),
            Err(NameError::HostBitsSet { .. })
        ));
    }

    #[test]
    fn lookup_normalization_borrows_when_it_can() {
        assert!(matches!(
            normalize_lookup("a.example"),
            Cow::Borrowed("a.example")
        ));
        assert_eq!(normalize_lookup("A.Example."), "a.example");
        assert_eq!(
            normalize_lookup("MX.Bücher.example."),
            "mx.xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_lookup("xn--bcher-kva.example"),
            "xn--bcher-kva.example"
        );
    }
}
