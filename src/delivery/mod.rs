//! The delivery engine: from due queue entries to SMTP sessions and back
//! to the queue.
//!
//! - [`plan`]: the effective level and next hop -> hosts to try, each
//!   with its TLS requirement (DANE, MTA-STS, mandatory, opportunistic).
//! - [`decision`]: what is done with one MX host, before connecting (its
//!   TLS requirement, or why it is skipped) and after (send over TLS, in
//!   cleartext, retry in cleartext, or not at all); `sealpost probe`
//!   predicts delivery by calling the same functions.
//! - [`pool`]: idle connections reused only where the achieved security
//!   satisfies the next message.
//! - [`attempt`]: one lease (recipients of one message for one
//!   destination) delivered or deferred: a pure machine of the rules, a
//!   thin driver doing the I/O, and the record written to the queue.
//! - [`bounce`]: DSNs for failed and expired recipients, delay warnings.
//! - [`tls_request`]: the sender's RFC 8689 request (REQUIRETLS,
//!   `TLS-Required: No`) applied to the level planned under and to the
//!   hosts a message may go to.
//! - [`reason`]: the one typed [`Reason`] of every outcome (rendered by
//!   the DSN, logs, admin socket and metrics, never parsed back), and
//!   whether a failure pauses the destination or only one policy.
//!
//! The actors that schedule this work live in [`crate::actors`]; see
//! `docs/architecture.md` for the topology.

pub mod attempt;
pub mod bounce;
pub mod decision;
pub mod plan;
pub mod pool;
pub mod reason;
mod shared;
pub mod tls_request;

pub use attempt::{attempt, Report};
pub(crate) use bounce::send_bounces;
pub use decision::{connection_verdict, ConnectionEvent, ConnectionVerdict, Hop, HopTls};
pub use plan::{effective_policy, BadPolicy, Destination, Effective, Plan};
pub use pool::Pool;
pub use reason::Health;
pub use reason::Reason;
pub(crate) use shared::BodyMemory;
pub use shared::DeliveryContext;
