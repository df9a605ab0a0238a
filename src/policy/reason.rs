//! The outcome of a policy lookup and *why*, as data: logs, the queue's
//! attempt records, the admin socket and `sealpost policy explain` all print
//! a [`Resolution`] (`Display` for people, `Serialize` for JSON).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::level::{Direction, MinTlsVersion, SecurityLevel};
use super::model::{PeerEntry, PolicyRule, TenantName};
use super::name::{DomainName, PeerMatcher};

/// The effective policy for one (direction, managed domain, peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub direction: Direction,
    pub level: SecurityLevel,
    pub min_tls: MinTlsVersion,
    /// The managed domain as configured, when it is configured (even disabled).
    pub managed_domain: Option<DomainName>,
    pub tenant: Option<TenantName>,
    pub reason: Reason,
}

impl Resolution {
    pub fn rule(&self) -> PolicyRule {
        PolicyRule::new(self.level, self.min_tls)
    }
}

/// Which rule produced a [`Resolution`].
///
/// The most specific entry matching the peer decides: when it is enabled
/// its rule applies (`Peer*`); when it is disabled the domain's default for
/// unspecified peers applies ([`Reason::PeerDisabled`]), never a less
/// specific entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// An enabled inbound entry for exactly the connecting IP address.
    PeerExactIp { ip: IpAddr },
    /// The enabled inbound entry with the longest CIDR block containing the IP.
    PeerCidr { network: IpNet },
    /// An enabled entry for exactly the peer domain.
    PeerDomain { domain: DomainName },
    /// The enabled `*.suffix` entry with the longest suffix of the peer domain.
    PeerWildcard { suffix: DomainName },
    /// The most specific entry matching the peer is disabled, so the managed
    /// domain's default for unspecified peers applies (a disabled peer is
    /// treated like a peer not in the list).
    PeerDisabled {
        entry: DisabledPeer,
        source: DefaultSource,
    },
    /// No entry matches; the managed domain's default for unspecified peers
    /// applies.
    DomainDefault { source: DefaultSource },
    /// The managed domain is unknown or disabled: the global default for
    /// unspecified domains applies.
    GlobalDefault { cause: GlobalDefaultCause },
}

/// Where a domain default came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultSource {
    /// The managed domain sets `<direction>.default` itself.
    Domain,
    /// The managed domain sets no default for this direction, so the global
    /// `[defaults]` value applies.
    GlobalFallback,
}

/// Why the global default applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GlobalDefaultCause {
    /// The managed domain is not configured.
    UnknownDomain,
    /// The managed domain is configured with `enabled = false`.
    DisabledDomain,
}

/// A disabled peer entry that was the most specific match for the peer, with
/// the rule it would have applied had it been enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisabledPeer {
    pub peer: PeerMatcher,
    pub level: SecurityLevel,
    pub min_tls: MinTlsVersion,
}

impl From<&PeerEntry> for DisabledPeer {
    fn from(entry: &PeerEntry) -> Self {
        DisabledPeer {
            peer: entry.matcher.clone(),
            level: entry.rule.level,
            min_tls: entry.rule.min_tls,
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} level {}, minimum TLS {}: ",
            self.direction, self.level, self.min_tls
        )?;
        let domain = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            match (&self.managed_domain, &self.tenant) {
                (Some(d), Some(t)) => write!(f, "managed domain {d} (tenant {t})"),
                (Some(d), None) => write!(f, "managed domain {d}"),
                _ => f.write_str("the managed domain"),
            }
        };
        match &self.reason {
            Reason::PeerExactIp { ip } => {
                write!(f, "peer entry for IP address {ip} of ")?;
                domain(f)?;
            }
            Reason::PeerCidr { network } => {
                write!(f, "peer entry for CIDR block {network} (longest match) of ")?;
                domain(f)?;
            }
            Reason::PeerDomain { domain: d } => {
                write!(f, "peer entry for domain {d} of ")?;
                domain(f)?;
            }
            Reason::PeerWildcard { suffix } => {
                write!(f, "peer entry for wildcard *.{suffix} (longest match) of ")?;
                domain(f)?;
            }
            Reason::PeerDisabled { entry, source } => {
                write!(
                    f,
                    "peer entry {} matches but is disabled (it would be {}, minimum TLS {}): default for unspecified peers of ",
                    entry.peer, entry.level, entry.min_tls
                )?;
                domain(f)?;
                self.global_fallback_note(f, *source)?;
            }
            Reason::DomainDefault { source } => {
                f.write_str("no peer entry matches; default for unspecified peers of ")?;
                domain(f)?;
                self.global_fallback_note(f, *source)?;
            }
            Reason::GlobalDefault { cause } => {
                f.write_str("global default for unspecified domains: ")?;
                match cause {
                    GlobalDefaultCause::UnknownDomain => {
                        f.write_str("the domain is not managed")?
                    }
                    GlobalDefaultCause::DisabledDomain => {
                        domain(f)?;
                        f.write_str(" is disabled")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Resolution {
    fn global_fallback_note(
        &self,
        f: &mut fmt::Formatter<'_>,
        source: DefaultSource,
    ) -> fmt::Result {
        if source == DefaultSource::GlobalFallback {
            write!(
                f,
                " (the domain sets no {} default, so the global default applies)",
                self.direction
            )?;
        }
        Ok(())
    }
}
