//! MTA-STS, SMTP MTA Strict Transport Security (RFC 8461), for outbound
//! delivery: discovery (`_mta-sts` TXT, section 3.1), the policy file and its
//! HTTPS fetch (sections 3.2, 3.3), MX matching (section 4.1), the persisted
//! policy cache (sections 5.1, 10.3) and the `mta-sts` security level's
//! decisions (sections 4, 5), with DANE taking precedence (section 2).
//!
//! Parsing and decisions are pure ([`txt`], [`policy`], [`decision`]); DNS
//! ([`StsTxtSource`]), HTTPS ([`PolicyFetcher`]) and time ([`Clock`]) are
//! injected. In a fleet the cache also consults and feeds the policies
//! other nodes fetched ([`SharedPolicies`]). See `docs/mta-sts.md`.

pub mod cache;
pub mod decision;
pub mod fetch;
pub mod host;
pub mod policy;
pub mod shared;
pub mod store;
pub mod txt;
pub(crate) mod verify;

pub use cache::{
    BounceCheck, DiscoveryFailure, LookupReason, PolicyCache, RefreshOutcome, TxtProblem,
    RETRY_AFTER_FAILURE,
};

pub(crate) use cache::spawn_refresher;
pub(crate) use decision::{plan_mx, CertOutcome, StsMxPlan};
pub use decision::{CertProblem, MxFailure};
pub use fetch::{
    FetchError, HttpsFetcherConfig, HttpsPolicyFetcher, PolicyFetcher, StaticHosts, TrustRoots,
};
pub(crate) use host::tlsrpt_record;
pub use host::{mta_sts_record, HostedPolicy, PolicyHost};
pub(crate) use policy::IgnoredField;
pub use policy::{Mode, MxPattern, Policy};
pub use shared::SharedPolicies;
pub use store::{CachedPolicy, Clock, ManualClock, PolicyStore};
pub(crate) use store::{StoreError, SystemClock};
pub(crate) use txt::StsTxtRecord;
pub use txt::{StsTxtSource, TxtLookupError};
pub use verify::webpki_verifier;
pub(crate) use verify::StsCertVerifier;
