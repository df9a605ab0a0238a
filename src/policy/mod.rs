//! The TLS peer policy: the vocabulary ([`level`]), names and peer patterns
//! ([`name`]), the typed model configuration produces ([`model`]), the
//! indexed immutable [`PolicySnapshot`] and its lookup ([`snapshot`]), and
//! the explained outcome ([`reason`]), and the explanation of one message's
//! policy from its addresses ([`explain`], for `sealpost policy explain` and
//! the admin API). Semantics: `docs/policy.md`.
pub mod explain;
pub mod level;
pub mod model;
pub mod name;
pub mod partition;
pub mod prefix;
pub mod reason;
pub mod relay;
pub mod snapshot;

#[cfg(test)]
mod tests;

pub use explain::{domain_of, explain, DirectionChoice, ExplainError, ExplainRequest, Explanation};
pub use level::{Direction, MinTlsVersion, SecurityLevel};
pub use model::{Defaults, DirectionPolicy, ManagedDomain, PeerEntry, PolicyRule, TenantName};
pub use name::{DomainName, NameError, PeerMatcher};
pub use partition::Partition;
pub use reason::{DefaultSource, DisabledPeer, GlobalDefaultCause, Reason, Resolution};
pub use relay::{RelayRefusal, RelaySources};
pub use snapshot::{BuildError, Domains, NameTaken, PeerQuery, PolicySnapshot, LINEAR_MAX};
