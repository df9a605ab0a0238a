//! DANE for SMTP (RFC 7672): which TLSA records are usable, how a server's
//! certificate chain is matched against them, the rustls verifier, and the
//! decision table that turns DNS evidence into per-MX plans.
//!
//! The delivery engine (`delivery::plan`) calls [`resolve_destination`];
//! `delivery::decision` turns each MX host's [`DanePlan`] into its TLS
//! requirement (a [`DaneVerifier`] for `Authenticate` plans) and decides
//! each connection (RFC 7672 sections 2.2 and 3: no STARTTLS or no match
//! under secure TLSA records means that host is never used). `sealpost
//! probe` calls the same functions. See `docs/dane.md`.

pub mod decision;
pub mod plan;
pub mod tlsa;
pub(crate) mod verify;

#[cfg(test)]
mod decision_tests;

pub use decision::{DaneLevel, DanePlan, DestinationOutcome, NoDaneReason, SkipReason};

#[cfg(test)]
pub(crate) use decision::{plan_destination, HostEvidence};
pub(crate) use decision::{DeferReason, DestinationPlan, FailReason, PartialAddresses};
pub use plan::resolve_destination;
pub(crate) use plan::{resolve_destination_for, tlsa_for_host};
#[cfg(test)]
pub(crate) use tlsa::Unusable;
pub use tlsa::{association_data, usability, Matching, Selector, UsableTlsa, Usage};
pub use verify::DaneMatch;
pub use verify::{authenticate_chain, dane_failure, DaneFailure, DaneVerifier};
