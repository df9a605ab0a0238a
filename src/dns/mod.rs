//! DNS with in-process DNSSEC validation: the lookups mail delivery needs,
//! each answer carrying its DNSSEC status.
//!
//! - MX with RFC 7505 null MX (a permanent failure) and the RFC 5321
//!   section 5.1 implicit MX (no MX records: the domain itself, when it has
//!   address records).
//! - A/AAAA, TXT (strings of one record concatenated, RFC 7208 3.3 style, as
//!   RFC 8461 section 3.1 needs), and TLSA at `_25._tcp.<host>` following
//!   CNAMEs (RFC 7672 section 2.2.3), reporting the TLSA base domain.
//! - Validation is done here with hickory's DNSSEC support against a
//!   configurable trust anchor (IANA root by default); an upstream AD bit is
//!   never trusted. Only answers validated as [`DnssecStatus::Secure`] may
//!   enable DANE (RFC 7672 section 2.1).
//! - Every lookup result tells records, NODATA, NXDOMAIN (each with its
//!   DNSSEC status) and failure (SERVFAIL, timeout, bogus, ...) apart,
//!   because "secure denial" and "lookup failed" lead to opposite DANE
//!   decisions (RFC 7672 section 2.1.1).
//! - Answers are cached by TTL and concurrent identical lookups share one
//!   upstream query (single flight), see [`cache`].

pub mod answer;
pub mod cache;
pub mod resolver;
mod settings;

pub use answer::{DnssecStatus, Lookup, LookupFailure, MxHost, MxLookup, TlsaRecord};

pub(crate) use answer::{AddressLookup, TlsaLookup};
pub use resolver::ResolverStats;
pub use resolver::{Resolver, ResolverError};
pub use settings::{ResolverSettings, TrustAnchorSource};
