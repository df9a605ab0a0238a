//! `sealpost probe <domain>`: what each security level would do with mail
//! for a recipient domain, and why, before an operator switches a peer to
//! a stricter level. Like Postfix's `posttls-finger`, answering in
//! sealpost's levels.
//!
//! - [`gather`] (I/O): MX, addresses and TLSA records with their DNSSEC
//!   status (RFC 7672 section 2.2), the MTA-STS TXT record and policy
//!   (RFC 8461 section 3, fetched fresh, no cache written), and one SMTP
//!   session per MX address: EHLO, STARTTLS, EHLO, QUIT. No MAIL is ever
//!   sent. The presented chain is recorded by [`ProbeVerifier`], which
//!   asks the real DANE and WebPKI verifiers and lets the handshake finish.
//! - [`verdict`] (pure): per level and address, deliver over TLS (and how
//!   authenticated), deliver in cleartext, or not used; per level, deliver
//!   or defer. Each verdict carries its reason as data.
//! - [`report`]: the JSON document and the text report.
//!
//! See `docs/operations.md`.

pub mod capture;
pub(crate) mod facts;
pub mod gather;
pub mod report;
pub mod verdict;

pub use crate::tls::certinfo::CertInfo;

pub use crate::tls::certinfo::CertTime;
pub use facts::SessionOutcome;
pub use gather::gather;
pub(crate) use gather::{trust_roots, ProbeError, ProbeSettings};
pub(crate) use report::{Configured, ProbeReport};
pub use verdict::{Action, Reason, TlsProblem};
