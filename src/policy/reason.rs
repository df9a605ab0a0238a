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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// An enabled inbound entry for exactly the connecting IP address.
    PeerExactIp {
        ip: IpAddr,
        passed_over: Vec<DisabledPeer>,
    },
    /// The enabled inbound entry with the longest CIDR block containing the IP.
    PeerCidr {
        network: IpNet,
        passed_over: Vec<DisabledPeer>,
    },
    /// An enabled entry for exactly the peer domain.
    PeerDomain {
        domain: DomainName,
        passed_over: Vec<DisabledPeer>,
    },
    /// The enabled `*.suffix` entry with the longest suffix of the peer domain.
    PeerWildcard {
        suffix: DomainName,
        passed_over: Vec<DisabledPeer>,
    },
    /// No enabled entry matched; the managed domain's default for
    /// unspecified peers applies. `passed_over` lists the disabled entries
    /// that matched but were skipped.
    DomainDefault {
        source: DefaultSource,
        passed_over: Vec<DisabledPeer>,
    },
    /// The managed domain is unknown or disabled: the global default for
    /// unspecified domains applies.
    GlobalDefault { cause: GlobalDefaultCause },
}

impl Reason {
    /// Disabled entries that matched but were skipped on the way.
    pub fn passed_over(&self) -> &[DisabledPeer] {
        match self {
            Reason::PeerExactIp { passed_over, .. }
            | Reason::PeerCidr { passed_over, .. }
            | Reason::PeerDomain { passed_over, .. }
            | Reason::PeerWildcard { passed_over, .. }
            | Reason::DomainDefault { passed_over, .. } => passed_over,
            Reason::GlobalDefault { .. } => &[],
        }
    }
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

/// A disabled peer entry that matched the peer and was skipped.
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
            Reason::PeerExactIp { ip, .. } => {
                write!(f, "peer entry for IP address {ip} of ")?;
                domain(f)?;
            }
            Reason::PeerCidr { network, .. } => {
                write!(f, "peer entry for CIDR block {network} (longest match) of ")?;
                domain(f)?;
            }
            Reason::PeerDomain { domain: d, .. } => {
                write!(f, "peer entry for domain {d} of ")?;
                domain(f)?;
            }
            Reason::PeerWildcard { suffix, .. } => {
                write!(f, "peer entry for wildcard *.{suffix} (longest match) of ")?;
                domain(f)?;
            }
            Reason::DomainDefault { source, .. } => {
                f.write_str("no enabled peer entry matches; default for unspecified peers of ")?;
                domain(f)?;
                if *source == DefaultSource::GlobalFallback {
                    write!(
                        f,
                        " (the domain sets no {} default, so the global default applies)",
                        self.direction
                    )?;
                }
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
        for skipped in self.reason.passed_over() {
            write!(
                f,
                "; passed over disabled entry {} ({}, minimum TLS {})",
                skipped.peer, skipped.level, skipped.min_tls
            )?;
        }
        Ok(())
    }
}
