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

use std::sync::Arc;

use super::level::Direction;
use super::model::{Defaults, DirectionPolicy, ManagedDomain, PeerEntry};
use super::name::{normalize_lookup, DomainName, PeerMatcher};
pub(crate) use super::partition::BuildError;
#[cfg(test)]
pub(crate) use super::partition::LINEAR_MAX;
use super::partition::{DomainIndex, Partition, PeerIndex};
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

/// Where a managed domain is: its partition and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    part: u32,
    index: u32,
}

fn slot(part: usize, index: usize) -> Slot {
    Slot {
        part: part as u32,
        index: index as u32,
    }
}

/// The immutable, indexed policy. Build once, share via `Arc`, swap on
/// reload; a change to one file's domains replaces one [`Partition`]
/// ([`PolicySnapshot::with_partition`]), sharing the others.
#[derive(Debug)]
pub struct PolicySnapshot {
    defaults: Defaults,
    /// In configuration order: the main file's domains, then each tenant
    /// file's.
    parts: Vec<Arc<Partition>>,
    /// Every managed domain, across partitions (names are unique).
    by_name: HashMap<DomainName, Slot>,
}

impl Default for PolicySnapshot {
    /// No managed domains, default global policy.
    fn default() -> Self {
        PolicySnapshot {
            defaults: Defaults::default(),
            parts: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

/// A managed domain name that two partitions both hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("managed domain {0} is configured twice")]
pub(crate) struct NameTaken(pub DomainName);

/// A [`PolicySnapshot`] built one partition at a time, as a load reads
/// one file after another (a partition is indexed while the next file is
/// still being parsed); every problem is reported by [`SnapshotBuilder::finish`].
pub(crate) struct SnapshotBuilder {
    by_name: HashMap<DomainName, Slot>,
    /// Where each partition starts among all domains.
    first_of: Vec<usize>,
    built: Vec<Arc<Partition>>,
    errors: Vec<BuildError>,
    /// How many domains the partitions pushed so far hold.
    total: usize,
}

impl SnapshotBuilder {
    /// For about `domains` managed domains (a hint).
    pub(crate) fn with_capacity(domains: usize) -> SnapshotBuilder {
        SnapshotBuilder {
            by_name: HashMap::with_capacity(domains),
            first_of: Vec::new(),
            built: Vec::new(),
            errors: Vec::new(),
            total: 0,
        }
    }

    /// Indexes `domains` as the next partition; the indices of its errors
    /// count the domains of every partition pushed before.
    pub(crate) fn push_part(&mut self, domains: Vec<ManagedDomain>) {
        let p = self.first_of.len();
        self.first_of.push(self.total);
        for (i, domain) in domains.iter().enumerate() {
            if let Some(first) = self.by_name.get(&domain.name) {
                self.errors.push(BuildError::DuplicateDomain {
                    name: domain.name.clone(),
                    first: self.first_of[first.part as usize] + first.index as usize,
                    second: self.total + i,
                });
            } else {
                self.by_name.insert(domain.name.clone(), slot(p, i));
            }
        }
        let len = domains.len();
        match Partition::build(domains, self.total) {
            Ok(part) => self.built.push(Arc::new(part)),
            Err(mut e) => self.errors.append(&mut e),
        }
        self.total += len;
    }

    /// The snapshot under `defaults`, or every problem found.
    pub(crate) fn finish(self, defaults: Defaults) -> Result<PolicySnapshot, Vec<BuildError>> {
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
        errors.extend(self.errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PolicySnapshot {
            defaults,
            parts: self.built,
            by_name: self.by_name,
        })
    }
}

impl PolicySnapshot {
    /// Indexes the model as one partition, reporting every problem at once.
    pub fn build(defaults: Defaults, domains: Vec<ManagedDomain>) -> Result<Self, Vec<BuildError>> {
        let mut builder = SnapshotBuilder::with_capacity(domains.len());
        builder.push_part(domains);
        builder.finish(defaults)
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Every managed domain, in configuration order.
    pub fn domains(&self) -> Domains<'_> {
        Domains {
            parts: &self.parts,
            len: self.by_name.len(),
        }
    }

    /// The partitions, in configuration order (see [`SnapshotBuilder`]).
    pub(crate) fn partitions(&self) -> &[Arc<Partition>] {
        &self.parts
    }

    /// A snapshot of `parts` (in configuration order), each already
    /// built, shared rather than copied: only the name table is made.
    /// Refused when a name is in two partitions.
    pub(crate) fn assemble(
        defaults: Defaults,
        parts: Vec<Arc<Partition>>,
    ) -> Result<Self, NameTaken> {
        let total = parts.iter().map(|p| p.len()).sum();
        let mut by_name = HashMap::with_capacity(total);
        for (p, part) in parts.iter().enumerate() {
            for (i, domain) in part.domains.iter().enumerate() {
                if by_name.insert(domain.name.clone(), slot(p, i)).is_some() {
                    return Err(NameTaken(domain.name.clone()));
                }
            }
        }
        Ok(PolicySnapshot {
            defaults,
            parts,
            by_name,
        })
    }

    /// This snapshot with partition `at` replaced by `part`; every other
    /// partition is shared, not copied, and only the names of the two
    /// change in the name table. Refused when a name of `part` is in
    /// another partition.
    pub(crate) fn with_partition(
        &self,
        at: usize,
        part: Arc<Partition>,
    ) -> Result<Self, NameTaken> {
        let mut by_name = self.by_name.clone();
        let mut parts = self.parts.clone();
        for domain in &parts[at].domains {
            by_name.remove(&domain.name);
        }
        for (i, domain) in part.domains.iter().enumerate() {
            if by_name.insert(domain.name.clone(), slot(at, i)).is_some() {
                return Err(NameTaken(domain.name.clone()));
            }
        }
        parts[at] = part;
        Ok(PolicySnapshot {
            defaults: self.defaults,
            parts,
            by_name,
        })
    }

    fn at(&self, slot: Slot) -> (&ManagedDomain, &DomainIndex) {
        let part = &self.parts[slot.part as usize];
        let i = slot.index as usize;
        (&part.domains[i], &part.indexes[i])
    }

    /// The managed domain with this name (case-insensitive, trailing dot ignored).
    pub fn domain(&self, name: &str) -> Option<&ManagedDomain> {
        let key = normalize_lookup(name);
        self.by_name.get(&*key).map(|&slot| self.at(slot).0)
    }

    /// The effective level and minimum TLS version for mail of `managed_domain`
    /// (the sender's domain outbound, the recipient's inbound) with `peer`,
    /// and why. Never fails: unknown or malformed names get the defaults.
    pub fn resolve(&self, managed_domain: &str, peer: PeerQuery<'_>) -> Resolution {
        let direction = peer.direction();
        let key = normalize_lookup(managed_domain);
        let Some(&slot) = self.by_name.get(&*key) else {
            return self.global(direction, None, GlobalDefaultCause::UnknownDomain);
        };
        let (domain, indexes) = self.at(slot);
        if !domain.enabled {
            return self.global(direction, Some(domain), GlobalDefaultCause::DisabledDomain);
        }
        let policy = domain.direction(direction);
        let index = indexes.direction(direction);
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

/// Every managed domain of a snapshot, across its partitions, in
/// configuration order.
#[derive(Debug, Clone, Copy)]
pub struct Domains<'a> {
    parts: &'a [Arc<Partition>],
    len: usize,
}

impl<'a> Domains<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a ManagedDomain> + 'a {
        self.parts.iter().flat_map(|p| p.domains.iter())
    }

    /// The `n`th domain in configuration order.
    pub fn get(&self, mut n: usize) -> Option<&'a ManagedDomain> {
        for part in self.parts {
            match part.domains.get(n) {
                Some(domain) => return Some(domain),
                None => n -= part.domains.len(),
            }
        }
        None
    }
}

impl<'a> IntoIterator for Domains<'a> {
    type Item = &'a ManagedDomain;
    type IntoIter = Box<dyn Iterator<Item = &'a ManagedDomain> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.parts.iter().flat_map(|p| p.domains.iter()))
    }
}

impl std::ops::Index<usize> for Domains<'_> {
    type Output = ManagedDomain;

    fn index(&self, n: usize) -> &ManagedDomain {
        match self.get(n) {
            Some(domain) => domain,
            None => panic!("domain {n} of {}", self.len),
        }
    }
}
