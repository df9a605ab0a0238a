//! The typed TLS peer policy model: what configuration validation produces
//! and what [`PolicySnapshot`](super::PolicySnapshot) indexes.
//!
//! A managed domain is a customer domain sealpost relays for. For each
//! direction it has a list of peer entries and optionally its own default
//! for unspecified peers; the global [`Defaults`] apply to domains that are
//! unknown or disabled, and to a domain's direction without its own default.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::level::{Direction, MinTlsVersion, SecurityLevel};
use super::name::{DomainName, PeerMatcher};

/// A level and a minimum TLS version: what a policy decision yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyRule {
    pub level: SecurityLevel,
    pub min_tls: MinTlsVersion,
}

impl PolicyRule {
    pub const fn new(level: SecurityLevel, min_tls: MinTlsVersion) -> Self {
        PolicyRule { level, min_tls }
    }
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (minimum TLS {})", self.level, self.min_tls)
    }
}

/// The policy for managed domains that are not configured or are disabled,
/// and the fallback for a configured domain's direction without a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Defaults {
    pub outbound: PolicyRule,
    pub inbound: PolicyRule,
}

impl Defaults {
    pub(crate) fn for_direction(&self, direction: Direction) -> PolicyRule {
        match direction {
            Direction::Outbound => self.outbound,
            Direction::Inbound => self.inbound,
        }
    }
}

impl Default for Defaults {
    /// Opportunistic TLS, no minimum version, both ways.
    fn default() -> Self {
        let rule = PolicyRule::new(SecurityLevel::Opportunistic, MinTlsVersion::Any);
        Defaults {
            outbound: rule,
            inbound: rule,
        }
    }
}

/// The name of the tenant (customer) owning a managed domain. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantName(Arc<str>);

impl TenantName {
    pub fn new(name: &str) -> Self {
        TenantName(Arc::from(name))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TenantName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One configured TLS peer of a managed domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    pub matcher: PeerMatcher,
    pub rule: PolicyRule,
    /// A disabled entry never applies its rule: when it is the most specific
    /// match, the domain's default for unspecified peers applies instead.
    pub enabled: bool,
}

/// A managed domain's policy for one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionPolicy {
    /// The default for unspecified peers (no entry matches, or the most
    /// specific match is disabled); `None` falls back to
    /// the global default of that direction.
    pub default: Option<PolicyRule>,
    pub peers: Vec<PeerEntry>,
}

/// A customer domain sealpost relays for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedDomain {
    pub name: DomainName,
    pub tenant: TenantName,
    /// A disabled domain is treated like an unknown one: global defaults.
    pub enabled: bool,
    pub outbound: DirectionPolicy,
    pub inbound: DirectionPolicy,
}

impl ManagedDomain {
    pub fn direction(&self, direction: Direction) -> &DirectionPolicy {
        match direction {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        }
    }
}
