//! The delivery engine: from due queue entries to SMTP sessions and back
//! to the queue.
//!
//! - [`plan`]: the effective level and next hop -> hosts to try, each
//!   with its TLS requirement (DANE, MTA-STS, mandatory, opportunistic).
//! - [`pool`]: idle connections reused only where the achieved security
//!   satisfies the next message.
//! - [`attempt`]: one lease (recipients of one message for one
//!   destination) delivered or deferred, recorded in the queue.
//! - [`bounce`]: DSNs for failed and expired recipients, delay warnings.
//! - [`reason`]: outcomes as readable reasons (and back, for DSNs), and
//!   whether a failure pauses the destination or only one policy.
//!
//! The actors that schedule this work live in [`crate::actors`]; see
//! `docs/architecture.md` for the topology.

pub mod attempt;
pub mod bounce;
pub mod plan;
pub mod pool;
pub mod reason;

pub use attempt::{
    attempt, effective_policy, next_hop, BodyMemory, Health, Report, Shared, INBOUND_PREFIX,
};
pub use bounce::send_bounces;
pub use plan::{Effective, Hop, HopTls, NextHop, Plan, Planner};
pub use pool::Pool;
