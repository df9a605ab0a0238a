//! The SMTP client for delivery: one connection to one address of one MX
//! host, STARTTLS as the caller's [`TlsParams`] require, then any number of
//! mail transactions with per-recipient outcomes.
//!
//! - [`tls`]: what TLS a delivery requires ([`TlsRequirement`],
//!   [`TlsParams`]), the STARTTLS and minimum-version decisions, and what a
//!   connection achieved ([`Achieved`], reused only where it satisfies a
//!   message's requirement).
//! - [`transaction`]: MAIL/RCPT/DATA as a state machine over replies, with
//!   PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152) and
//!   SMTPUTF8 (RFC 6531) checks; no I/O.
//! - [`achieved`]: what a connection achieved and the reuse check.
//! - [`connection`]: the tokio layer with the RFC 5321 section 4.5.3.2
//!   timeouts.
//!
//! The rule the design rests on: under a required mode the client returns
//! no [`Connection`] unless TLS at or above the minimum is up, so no MAIL,
//! RCPT or message byte is ever written in cleartext. See `docs/delivery.md`.

pub mod achieved;
pub mod connection;
pub mod error;
pub mod tls;
pub mod transaction;

pub(crate) use achieved::Achieved;
pub use connection::{ClientConfig, Connection, Delivery, Timeouts};
pub use error::{ClientError, Peer, Stage};
pub(crate) use tls::{check_negotiated, plan_starttls, NegotiatedPlan, StartTlsPlan};
pub use tls::{CleartextReason, TlsAuthentication, TlsParams, TlsRequirement};
pub use transaction::Transaction;
pub use transaction::{MessageRefusal, OutboundMessage, RecipientOutcome};
