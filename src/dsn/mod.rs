//! Delivery status notifications (bounces and delay warnings).
//!
//! [`build`] writes an RFC 3464 DSN: a `multipart/report;
//! report-type=delivery-status` message (RFC 6522) with three parts: a
//! human-readable `text/plain` explanation, the `message/delivery-status`
//! fields (per-message: Reporting-MTA, Arrival-Date; per-recipient:
//! Final-Recipient, Original-Recipient, Action, Status, Remote-MTA,
//! Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until; RFC 3464 sections
//! 2.2 and 2.3) and the original message's headers as `text/rfc822-headers`.
//!
//! The DSN is sent with the null reverse path `<>` (RFC 5321 section 4.5.5)
//! from `MAILER-DAEMON@<reporting MTA>`, marked `Auto-Submitted:
//! auto-replied` (RFC 3834 section 5). A message whose own sender is null
//! never gets a DSN ([`DsnOutcome::NoBounceForNullSender`]), which breaks
//! bounce loops. Remote text is cleaned of controls before it enters a
//! field ([`text`]). See `docs/delivery.md`.

mod report;
pub mod text;

pub use crate::date::rfc5322_date;
pub use report::{build, status_of, Action, Dsn, DsnError, DsnInput, DsnOutcome, RecipientReport};
