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
pub(crate) mod partition;
pub mod prefix;
pub mod reason;
pub mod relay;
pub mod snapshot;

#[cfg(test)]
mod tests;

pub use explain::{explain, ExplainRequest};

pub(crate) use explain::domain_of;
pub use level::{Direction, MinTlsVersion, SecurityLevel};
pub use model::{Defaults, DirectionPolicy, ManagedDomain, PeerEntry, PolicyRule, TenantName};
pub(crate) use name::{DomainName, NameError, PeerMatcher};
pub(crate) use partition::Partition;
pub use reason::Reason;
pub(crate) use reason::Resolution;
#[cfg(test)]
pub(crate) use reason::{DefaultSource, DisabledPeer, GlobalDefaultCause};
pub(crate) use relay::{RelayRefusal, RelaySources};
#[cfg(test)]
pub(crate) use snapshot::LINEAR_MAX;
pub(crate) use snapshot::{BuildError, SnapshotBuilder};
pub use snapshot::{Domains, PeerQuery, PolicySnapshot};
