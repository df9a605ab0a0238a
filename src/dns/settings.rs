//! Resolver settings: where to send queries and what to trust. The
//! configuration layer builds these; tests point them at an in-process
//! server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the DNSSEC trust anchor comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchorSource {
    /// The IANA root zone KSKs built into hickory (KSK-2017 and KSK-2024).
    IanaRoot,
    /// A file of DNSKEY records in zone-file format, e.g.
    /// `example. 3600 IN DNSKEY 257 3 15 <base64>`. The owner name of each
    /// key is the zone it anchors. DS lines are not accepted (hickory's
    /// trust-anchor parser reads DNSKEY records only).
    DnskeyFile(PathBuf),
}

/// Everything the resolver needs. The configuration layer maps the
/// operator's settings onto this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Recursive resolvers to query (each over UDP, falling back to TCP on
    /// truncation). Validation is done locally, so these need not validate.
    pub nameservers: Vec<SocketAddr>,
    /// The DNSSEC trust anchor.
    pub trust_anchor: TrustAnchorSource,
    /// Time allowed for one query to one server.
    pub timeout: Duration,
    /// How many times a query is tried before it counts as failed.
    pub attempts: usize,
    /// Maximum number of answers kept in the cache.
    pub cache_size: usize,
}

impl ResolverSettings {
    /// Settings for the given servers with the IANA root as trust anchor and
    /// conservative defaults (5 s timeout, 2 attempts, 10 000 answers).
    pub fn new(nameservers: Vec<SocketAddr>) -> ResolverSettings {
        ResolverSettings {
            nameservers,
            trust_anchor: TrustAnchorSource::IanaRoot,
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_size: 10_000,
        }
    }
}
