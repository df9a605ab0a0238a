//! The immutable, indexed policy snapshot and its resolution.
//!
//! A [`PolicySnapshot`] is built once from the validated model, shared
//! through `Arc` and replaced whole on reload, so a session reads policy
//! without locks or messages. Every lookup is a bounded number of hash
//! probes, independent of how many domains are configured:
//! - managed domain: one hash probe;
//! - exact peer domain / exact IP: one hash probe;
//! - wildcards: one probe per parent of the peer name (at most 127 labels);
//! - CIDR blocks: one probe per distinct prefix length configured for that
//!   domain (at most 33 for IPv4, 129 for IPv6), longest first.
//!
//! A direction with few peer entries (at most [`LINEAR_MAX`], the common
//! case) has no hash index: its entries are scanned, which costs less than
//! hashing the name and saves the tables' memory at 100,000 domains.
//!
//! Precedence (most specific wins): exact IP, then longest CIDR, then exact
//! domain, then longest wildcard, then the domain's default, then the global
//! default. The most specific matching entry decides whether it is enabled
//! or not: a disabled one sends the peer to the domain's default for
//! unspecified peers, never to a less specific entry.

use std::collections::HashMap;
use std::net::IpAddr;

use super::prefix::PrefixMap;

use super::level::Direction;
use super::model::{Defaults, DirectionPolicy, ManagedDomain, PeerEntry, PolicyRule};
use super::name::{normalize_lookup, DomainName, PeerMatcher};
use super::reason::{DefaultSource, DisabledPeer, GlobalDefaultCause, Reason, Resolution};

/// The peer side of a lookup; its variant fixes the direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerQuery<'a> {
    /// Outbound: the recipient domain is the TLS peer.
    Outbound { recipient_domain: &'a str },
    /// Inbound: the connecting IP and, once `MAIL FROM` is known, the
    /// envelope sender's domain (`None` for the null reverse-path).
    Inbound {
        ip: Option<IpAddr>,
        sender_domain: Option<&'a str>,
    },
}

impl PeerQuery<'_> {
    pub fn direction(&self) -> Direction {
        match self {
            PeerQuery::Outbound { .. } => Direction::Outbound,
            PeerQuery::Inbound { .. } => Direction::Inbound,
        }
    }
}

/// A model the snapshot refuses; indices point into the `domains` vector
/// given to [`PolicySnapshot::build`] and its `peers` vectors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("managed domain {name} is configured twice")]
    DuplicateDomain {
        name: DomainName,
        first: usize,
        second: usize,
    },
    #[error("{direction} peer {peer} of {domain_name} is configured twice")]
    DuplicatePeer {
        domain: usize,
        domain_name: DomainName,
        direction: Direction,
        peer: PeerMatcher,
        first: usize,
        second: usize,
    },
    /// DANE and MTA-STS levels authenticate a destination: outbound only.
    #[error("level {} is outbound only and cannot apply to inbound mail", .rule.level)]
    LevelNotAllowed {
        /// `None` for the global defaults.
        domain: Option<usize>,
        direction: Direction,
        /// `None` for the default rule of that direction.
        peer: Option<usize>,
        rule: PolicyRule,
    },
    /// Outbound peers are recipient domains, never addresses.
    #[error("outbound peer {peer} is an address; outbound peers are recipient domains (IP addresses and CIDR blocks are inbound only)")]
    AddressPeerOutbound {
        domain: usize,
        peer_index: usize,
        peer: PeerMatcher,
    },
}

/// Index of one direction of one managed domain: values are indices into
/// that direction's `peers`.
#[derive(Debug, Default)]
struct PeerIndex {
    exact: HashMap<DomainName, usize>,
    wildcard: HashMap<DomainName, usize>,
    ip: HashMap<IpAddr, usize>,
    cidr: PrefixMap<usize>,
}

/// Directions with at most this many peer entries are scanned, not indexed.
pub const LINEAR_MAX: usize = 8;

#[derive(Debug)]
struct DomainIndex {
    /// `None` when the direction has at most [`LINEAR_MAX`] peer entries
    /// (they are scanned; saves memory at scale).
    outbound: Option<Box<PeerIndex>>,
    inbound: Option<Box<PeerIndex>>,
}

/// The immutable, indexed policy. Build once, share via `Arc`, swap on reload.
#[derive(Debug)]
pub struct PolicySnapshot {
    defaults: Defaults,
    domains: Vec<ManagedDomain>,
    by_name: HashMap<DomainName, usize>,
    indexes: Vec<DomainIndex>,
}

impl Default for PolicySnapshot {
    /// No managed domains, default global policy.
    fn default() -> Self {
        PolicySnapshot {
            defaults: Defaults::default(),
            domains: Vec::new(),
            by_name: HashMap::new(),
            indexes: Vec::new(),
        }
    }
}

impl PolicySnapshot {
    /// Indexes the model, reporting every problem at once.
    pub fn build(defaults: Defaults, domains: Vec<ManagedDomain>) -> Result<Self, Vec<BuildError>> {
        let mut errors = Vec::new();
        for direction in [Direction::Outbound, Direction::Inbound] {
            let rule = defaults.for_direction(direction);
            if !rule.level.allowed_in(direction) {
                errors.push(BuildError::LevelNotAllowed {
                    domain: None,
                    direction,
                    peer: None,
                    rule,
                });
            }
        }
        let mut by_name = HashMap::with_capacity(domains.len());
        let mut indexes = Vec::with_capacity(domains.len());
        for (i, domain) in domains.iter().enumerate() {
            if let Some(&first) = by_name.get(&domain.name) {
                errors.push(BuildError::DuplicateDomain {
                    name: domain.name.clone(),
                    first,
                    second: i,
                });
            } else {
                by_name.insert(domain.name.clone(), i);
            }
            indexes.push(DomainIndex {
                outbound: index_direction(i, domain, Direction::Outbound, &mut errors),
                inbound: index_direction(i, domain, Direction::Inbound, &mut errors),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PolicySnapshot {
            defaults,
            domains,
            by_name,
            indexes,
        })
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Every managed domain, in configuration order.
    pub fn domains(&self) -> &[ManagedDomain] {
        &self.domains
    }

    /// The managed domain with this name (case-insensitive, trailing dot ignored).
    pub fn domain(&self, name: &str) -> Option<&ManagedDomain> {
        let key = normalize_lookup(name);
        self.by_name.get(&*key).map(|&i| &self.domains[i])
    }

    /// The effective level and minimum TLS version for mail of `managed_domain`
    /// (the sender's domain outbound, the recipient's inbound) with `peer`,
    /// and why. Never fails: unknown or malformed names get the defaults.
    pub fn resolve(&self, managed_domain: &str, peer: PeerQuery<'_>) -> Resolution {
        let direction = peer.direction();
        let key = normalize_lookup(managed_domain);
        let Some(&i) = self.by_name.get(&*key) else {
            return self.global(direction, None, GlobalDefaultCause::UnknownDomain);
        };
        let domain = &self.domains[i];
        if !domain.enabled {
            return self.global(direction, Some(domain), GlobalDefaultCause::DisabledDomain);
        }
        let policy = domain.direction(direction);
        let index = match direction {
            Direction::Outbound => self.indexes[i].outbound.as_deref(),
            Direction::Inbound => self.indexes[i].inbound.as_deref(),
        };
        let (ip, peer_domain) = match peer {
            PeerQuery::Outbound { recipient_domain } => (None, Some(recipient_domain)),
            PeerQuery::Inbound { ip, sender_domain } => (ip, sender_domain),
        };
        let found = match index {
            Some(index) => find_entry(index, policy, ip, peer_domain),
            None if policy.peers.is_empty() => None,
            None => scan_entries(&policy.peers, ip, peer_domain),
        };
        let (default_rule, source) = match policy.default {
            Some(rule) => (rule, DefaultSource::Domain),
            None => (
                self.defaults.for_direction(direction),
                DefaultSource::GlobalFallback,
            ),
        };
        let (rule, reason) = match found {
            Some(entry) if entry.enabled => (entry.rule, peer_reason(&entry.matcher)),
            Some(entry) => (
                default_rule,
                Reason::PeerDisabled {
                    entry: DisabledPeer::from(entry),
                    source,
                },
            ),
            None => (default_rule, Reason::DomainDefault { source }),
        };
        Resolution {
            direction,
            level: rule.level,
            min_tls: rule.min_tls,
            managed_domain: Some(domain.name.clone()),
            tenant: Some(domain.tenant.clone()),
            reason,
        }
    }

    fn global(
        &self,
        direction: Direction,
        domain: Option<&ManagedDomain>,
        cause: GlobalDefaultCause,
    ) -> Resolution {
        let rule = self.defaults.for_direction(direction);
        Resolution {
            direction,
            level: rule.level,
            min_tls: rule.min_tls,
            managed_domain: domain.map(|d| d.name.clone()),
            tenant: domain.map(|d| d.tenant.clone()),
            reason: Reason::GlobalDefault { cause },
        }
    }
}

/// The most specific entry matching the peer, enabled or not, in
/// precedence order: exact IP, longest CIDR, exact domain, longest wildcard.
fn find_entry<'p>(
    index: &PeerIndex,
    policy: &'p DirectionPolicy,
    ip: Option<IpAddr>,
    peer_domain: Option<&str>,
) -> Option<&'p PeerEntry> {
    let entry = |i: usize| policy.peers.get(i);
    if let Some(ip) = ip.map(|ip| ip.to_canonical()) {
        if let Some(&e) = index.ip.get(&ip) {
            return entry(e);
        }
        if let Some(&e) = index.cidr.longest(ip) {
            return entry(e);
        }
    }
    if let Some(name) = peer_domain {
        let name = normalize_lookup(name);
        if let Some(&e) = index.exact.get(&*name) {
            return entry(e);
        }
        // Parents, longest first: `a.b.c` tries `*.b.c`, then `*.c`.
        let mut rest = &*name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&e) = index.wildcard.get(rest) {
                return entry(e);
            }
        }
    }
    None
}

/// [`find_entry`] for a short list: the same precedence, by scanning.
fn scan_entries<'p>(
    peers: &'p [PeerEntry],
    ip: Option<IpAddr>,
    peer_domain: Option<&str>,
) -> Option<&'p PeerEntry> {
    if let Some(ip) = ip.map(|ip| ip.to_canonical()) {
        let mut longest: Option<(u8, &PeerEntry)> = None;
        for entry in peers {
            match &entry.matcher {
                PeerMatcher::Ip(exact) if exact.to_canonical() == ip => return Some(entry),
                PeerMatcher::Cidr(net) if net.contains(&ip) => {
                    let len = net.prefix_len();
                    if longest.is_none_or(|(l, _)| len > l) {
                        longest = Some((len, entry));
                    }
                }
                _ => {}
            }
        }
        if let Some((_, entry)) = longest {
            return Some(entry);
        }
    }
    let name = normalize_lookup(peer_domain?);
    let mut longest: Option<(usize, &PeerEntry)> = None;
    for entry in peers {
        match &entry.matcher {
            PeerMatcher::Domain(exact) if exact.as_str() == &*name => return Some(entry),
            // `*.b.c` covers `a.b.c` and `x.a.b.c`, never `b.c` itself.
            PeerMatcher::Wildcard(suffix) => {
                let suffix = suffix.as_str();
                let covered = name.len() > suffix.len()
                    && name.ends_with(suffix)
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.';
                if covered && longest.is_none_or(|(l, _)| suffix.len() > l) {
                    longest = Some((suffix.len(), entry));
                }
            }
            _ => {}
        }
    }
    longest.map(|(_, entry)| entry)
}

/// Whether two entries of one direction would take the same index slot.
fn same_key(a: &PeerMatcher, b: &PeerMatcher) -> bool {
    match (a, b) {
        (PeerMatcher::Domain(a), PeerMatcher::Domain(b)) => a == b,
        (PeerMatcher::Wildcard(a), PeerMatcher::Wildcard(b)) => a == b,
        (PeerMatcher::Ip(a), PeerMatcher::Ip(b)) => a.to_canonical() == b.to_canonical(),
        (PeerMatcher::Cidr(a), PeerMatcher::Cidr(b)) => a.trunc() == b.trunc(),
        _ => false,
    }
}

fn peer_reason(matcher: &PeerMatcher) -> Reason {
    match matcher {
        PeerMatcher::Ip(ip) => Reason::PeerExactIp { ip: *ip },
        PeerMatcher::Cidr(network) => Reason::PeerCidr { network: *network },
        PeerMatcher::Domain(domain) => Reason::PeerDomain {
            domain: domain.clone(),
        },
        PeerMatcher::Wildcard(suffix) => Reason::PeerWildcard {
            suffix: suffix.clone(),
        },
    }
}

fn index_direction(
    domain_index: usize,
    domain: &ManagedDomain,
    direction: Direction,
    errors: &mut Vec<BuildError>,
) -> Option<Box<PeerIndex>> {
    let policy = domain.direction(direction);
    if let Some(rule) = policy.default {
        if !rule.level.allowed_in(direction) {
            errors.push(BuildError::LevelNotAllowed {
                domain: Some(domain_index),
                direction,
                peer: None,
                rule,
            });
        }
    }
    let indexed = policy.peers.len() > LINEAR_MAX;
    let mut index = PeerIndex::default();
    for (i, entry) in policy.peers.iter().enumerate() {
        if !entry.rule.level.allowed_in(direction) {
            errors.push(BuildError::LevelNotAllowed {
                domain: Some(domain_index),
                direction,
                peer: Some(i),
                rule: entry.rule,
            });
        }
        if direction == Direction::Outbound && entry.matcher.is_address() {
            errors.push(BuildError::AddressPeerOutbound {
                domain: domain_index,
                peer_index: i,
                peer: entry.matcher.clone(),
            });
        }
        let previous = if indexed {
            match &entry.matcher {
                PeerMatcher::Domain(d) => index.exact.insert(d.clone(), i),
                PeerMatcher::Wildcard(d) => index.wildcard.insert(d.clone(), i),
                PeerMatcher::Ip(ip) => index.ip.insert(ip.to_canonical(), i),
                PeerMatcher::Cidr(net) => index.cidr.insert(*net, i),
            }
        } else {
            policy.peers[..i]
                .iter()
                .position(|earlier| same_key(&earlier.matcher, &entry.matcher))
        };
        if let Some(first) = previous {
            errors.push(BuildError::DuplicatePeer {
                domain: domain_index,
                domain_name: domain.name.clone(),
                direction,
                peer: entry.matcher.clone(),
                first,
                second: i,
            });
        }
    }
    indexed.then(|| Box::new(index))
}
