//! The product's vocabulary: security levels, minimum TLS versions and the
//! direction of mail flow. These are the words configuration, logs, the
//! queue's attempt records and the admin socket all use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which way mail flows relative to the managed domain.
///
/// Outbound: a tenant's own server relays through sealpost; the managed
/// domain is the sender's, the TLS peer is the recipient domain.
/// Inbound: an internet sender delivers to a managed domain; the managed
/// domain is the recipient's, the TLS peer is the connecting IP, its CIDR
/// or the envelope sender domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inbound" => Ok(Direction::Inbound),
            "outbound" => Ok(Direction::Outbound),
            other => Err(UnknownWord::new(
                "direction",
                other,
                &["inbound", "outbound"],
            )),
        }
    }
}

/// How strictly TLS is required towards (outbound) or from (inbound) a peer.
///
/// See `docs/policy.md` and `shared/RFC-NOTES.md` for the exact semantics.
/// The DANE levels and `mta-sts` apply to outbound mail only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityLevel {
    /// STARTTLS when offered; cleartext otherwise. Never refuses.
    Opportunistic,
    /// TLS required, certificate not authenticated.
    Mandatory,
    /// RFC 7672 DANE where usable TLSA records exist, else opportunistic.
    OpportunisticDane,
    /// RFC 7672 DANE authentication required on every MX used.
    MandatoryDane,
    /// RFC 8461 MTA-STS: the recipient domain's published policy decides.
    MtaSts,
}

impl SecurityLevel {
    pub(crate) const ALL: [SecurityLevel; 5] = [
        SecurityLevel::Opportunistic,
        SecurityLevel::Mandatory,
        SecurityLevel::OpportunisticDane,
        SecurityLevel::MandatoryDane,
        SecurityLevel::MtaSts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::Opportunistic => "opportunistic",
            SecurityLevel::Mandatory => "mandatory",
            SecurityLevel::OpportunisticDane => "opportunistic-dane",
            SecurityLevel::MandatoryDane => "mandatory-dane",
            SecurityLevel::MtaSts => "mta-sts",
        }
    }

    /// Whether the level may be configured for this direction. DANE and
    /// MTA-STS authenticate a destination, so they exist only outbound.
    pub(crate) fn allowed_in(self, direction: Direction) -> bool {
        match direction {
            Direction::Outbound => true,
            Direction::Inbound => {
                matches!(
                    self,
                    SecurityLevel::Opportunistic | SecurityLevel::Mandatory
                )
            }
        }
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityLevel {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecurityLevel::ALL
            .into_iter()
            .find(|level| level.as_str() == s)
            .ok_or_else(|| {
                UnknownWord::new(
                    "security level",
                    s,
                    &[
                        "opportunistic",
                        "mandatory",
                        "opportunistic-dane",
                        "mandatory-dane",
                        "mta-sts",
                    ],
                )
            })
    }
}

/// The lowest TLS protocol version accepted for a peer.
///
/// rustls speaks TLS 1.2 and 1.3 only, so `any` means "whatever rustls
/// negotiates"; a legacy TLS 1.0/1.1-only peer cannot complete a handshake
/// and is treated as not supporting TLS (RFC 8996).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MinTlsVersion {
    #[serde(rename = "any")]
    Any,
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl MinTlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            MinTlsVersion::Any => "any",
            MinTlsVersion::Tls12 => "1.2",
            MinTlsVersion::Tls13 => "1.3",
        }
    }

    /// Whether a negotiated protocol version satisfies this minimum.
    pub fn accepts(self, negotiated: rustls::ProtocolVersion) -> bool {
        use rustls::ProtocolVersion as V;
        match self {
            MinTlsVersion::Any => true,
            MinTlsVersion::Tls12 => matches!(negotiated, V::TLSv1_2 | V::TLSv1_3),
            MinTlsVersion::Tls13 => matches!(negotiated, V::TLSv1_3),
        }
    }

    /// The rustls protocol versions to offer or accept under this minimum.
    pub fn rustls_versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinTlsVersion::Any | MinTlsVersion::Tls12 => &BOTH,
            MinTlsVersion::Tls13 => &ONLY_13,
        }
    }
}

impl fmt::Display for MinTlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MinTlsVersion {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(MinTlsVersion::Any),
            "1.2" => Ok(MinTlsVersion::Tls12),
            "1.3" => Ok(MinTlsVersion::Tls13),
            other => Err(UnknownWord::new(
                "minimum TLS version",
                other,
                &["1.3", "1.2", "any"],
            )),
        }
    }
}

/// A word that is not one of the values a setting accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}` (expected one of: {})", .expected.join(", "))]
pub struct UnknownWord {
    pub what: &'static str,
    pub given: String,
    pub expected: Vec<&'static str>,
}

impl UnknownWord {
    pub fn new(what: &'static str, given: &str, expected: &[&'static str]) -> Self {
        UnknownWord {
            what,
            given: given.to_owned(),
            expected: expected.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_round_trips_through_its_name() {
        for level in SecurityLevel::ALL {
            assert_eq!(level.as_str().parse::<SecurityLevel>(), Ok(level));
        }
        assert!("dane".parse::<SecurityLevel>().is_err());
    }

    #[test]
    fn dane_and_mta_sts_are_outbound_only() {
        let inbound: Vec<_> = SecurityLevel::ALL
            .into_iter()
            .filter(|l| l.allowed_in(Direction::Inbound))
            .collect();
        assert_eq!(
            inbound,
            [SecurityLevel::Opportunistic, SecurityLevel::Mandatory]
        );
        assert!(SecurityLevel::ALL
            .iter()
            .all(|l| l.allowed_in(Direction::Outbound)));
    }

    #[test]
    fn minimum_version_accepts_what_it_should() {
        use rustls::ProtocolVersion as V;
        assert!(MinTlsVersion::Any.accepts(V::TLSv1_2));
        assert!(MinTlsVersion::Tls12.accepts(V::TLSv1_3));
        assert!(!MinTlsVersion::Tls13.accepts(V::TLSv1_2));
        assert!(MinTlsVersion::Tls13.accepts(V::TLSv1_3));
        assert!(!MinTlsVersion::Tls12.accepts(V::TLSv1_1));
        assert_eq!("1.3".parse::<MinTlsVersion>(), Ok(MinTlsVersion::Tls13));
        assert!("1.1".parse::<MinTlsVersion>().is_err());
    }
}
