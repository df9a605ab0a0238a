//! DANE for SMTP (RFC 7672): which TLSA records are usable, how a server's
//! certificate chain is matched against them, the rustls verifier, and the
//! decision table that turns DNS evidence into per-MX plans.
//!
//! The delivery engine calls [`resolve_destination`] (or gathers the
//! evidence itself and calls the pure [`plan_destination`]), connects to
//! each MX whose [`DanePlan`] is not `Skip`, uses a [`DaneVerifier`] for
//! `Authenticate` plans, and feeds what happened to
//! [`connection_verdict`]. See `docs/dane.md`.

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
