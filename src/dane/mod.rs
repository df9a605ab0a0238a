//! DANE for SMTP (RFC 7672): which TLSA records are usable, how a server's
//! certificate chain is matched against them, the rustls verifier, and the
//! decision table that turns DNS evidence into per-MX plans.
//!
//! The delivery engine (`delivery::plan`) calls [`resolve_destination`],
//! connects to each MX whose [`DanePlan`] is not `Skip` and uses a
//! [`DaneVerifier`] for `Authenticate` plans; the connection's failure is
//! read back by `delivery::reason`. `sealpost probe` judges a gathered
//! session with [`connection_verdict`]. See `docs/dane.md`.

pub mod connection;
pub mod decision;
pub mod plan;
pub mod tlsa;
pub mod verify;

#[cfg(test)]
mod decision_tests;

pub use connection::{connection_verdict, ConnectionEvent, ConnectionVerdict};
pub use decision::{
    mx_verdict, needs_tlsa, plan_destination, plan_destination_for, plan_host, DaneLevel, DanePlan,
    DeferReason, DestinationOutcome, DestinationPlan, FailReason, HostEvidence, MxPlan,
    NoDaneReason, PartialAddresses, SkipReason,
};
pub use plan::{resolve_destination, resolve_destination_for, tlsa_for_host, SMTP_TLSA_PORT};
pub use tlsa::{
    association_data, subject_public_key_info, usability, Matching, Selector, TlsaSet, Unusable,
    UsableTlsa, Usage,
};
pub use verify::{
    authenticate_chain, client_config, dane_failure, DaneFailure, DaneMatch, DaneVerifier,
};
