//! One part of a [`PolicySnapshot`](super::PolicySnapshot): the managed
//! domains of one configuration file (the main file, or one tenant file of
//! `[server] tenants_dir`) with their peer indexes.
//!
//! A partition is immutable and shared by `Arc` between snapshots, so a
//! change to one tenant builds one new partition and keeps every other one
//! as it was (issue 17): the other tenants' domains are neither re-read
//! nor re-indexed, and their memory is not copied.

use std::collections::HashMap;
use std::net::IpAddr;

use super::level::Direction;
use super::model::{ManagedDomain, PolicyRule};
use super::name::{DomainName, PeerMatcher};
use super::prefix::PrefixMap;

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

/// Directions with at most this many peer entries are scanned, not indexed.
pub(crate) const LINEAR_MAX: usize = 8;

/// Index of one direction of one managed domain: values are indices into
/// that direction's `peers`.
#[derive(Debug, Default)]
pub(super) struct PeerIndex {
    pub(super) exact: HashMap<DomainName, usize>,
    pub(super) wildcard: HashMap<DomainName, usize>,
    pub(super) ip: HashMap<IpAddr, usize>,
    pub(super) cidr: PrefixMap<usize>,
}

#[derive(Debug)]
pub(super) struct DomainIndex {
    /// `None` when the direction has at most [`LINEAR_MAX`] peer entries
    /// (they are scanned; saves memory at scale).
    pub(super) outbound: Option<Box<PeerIndex>>,
    pub(super) inbound: Option<Box<PeerIndex>>,
}

impl DomainIndex {
    pub(super) fn direction(&self, direction: Direction) -> Option<&PeerIndex> {
        match direction {
            Direction::Outbound => self.outbound.as_deref(),
            Direction::Inbound => self.inbound.as_deref(),
        }
    }
}

/// The managed domains of one file, indexed; in file order.
#[derive(Debug, Default)]
pub(crate) struct Partition {
    pub(super) domains: Vec<ManagedDomain>,
    pub(super) indexes: Vec<DomainIndex>,
}

impl Partition {
    /// Indexes `domains`, checking each on its own (levels allowed in
    /// their direction, outbound peers that are addresses, a peer twice
    /// in one direction). The indices of the errors are counted from
    /// `first_index` (the partition's place in a whole snapshot). Names
    /// are checked for uniqueness by the snapshot, across partitions.
    pub fn build(
        domains: Vec<ManagedDomain>,
        first_index: usize,
    ) -> Result<Partition, Vec<BuildError>> {
        let mut errors = Vec::new();
        let indexes = domains
            .iter()
            .enumerate()
            .map(|(i, domain)| DomainIndex {
                outbound: index_direction(
                    first_index + i,
                    domain,
                    Direction::Outbound,
                    &mut errors,
                ),
                inbound: index_direction(first_index + i, domain, Direction::Inbound, &mut errors),
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Partition { domains, indexes })
    }

    /// Its managed domains, in file order.
    pub fn domains(&self) -> &[ManagedDomain] {
        &self.domains
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }
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
