//! Public data types of the queue: message ids, what the SMTP server hands in,
//! per-recipient states, delivery attempts and what the admin socket reads.
//!
//! Times are `SystemTime` at the API and milliseconds since the Unix epoch on
//! disk.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Body, QueueError, Reason};

/// A message id: milliseconds since the epoch in the high 44 bits and a
/// sequence number in the low 20, printed as 16 lowercase hex digits so ids
/// sort by arrival as strings and as big-endian keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub(crate) u64);

impl MessageId {
    pub(crate) fn key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
    pub(crate) fn from_key(key: &[u8]) -> Option<Self> {
        let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
        Some(MessageId(u64::from_be_bytes(bytes)))
    }
    /// Arrival millisecond encoded in the id.
    pub fn millis(self) -> u64 {
        self.0 >> 20
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for MessageId {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QueueError::BadMessageId { input: s.into() };
        if s.len() != 16
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        u64::from_str_radix(s, 16).map(MessageId).map_err(|_| bad())
    }
}

/// Milliseconds since the Unix epoch (times before it clamp to 0).
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The TLS policy a message was accepted under, as plain strings so this
/// crate does not depend on `sealpost` (e.g. level `"mandatory-dane"`,
/// min_tls `"1.2"`, explanation: why that policy applied). The delivery
/// engine reads them back through one typed conversion, and defers a
/// message whose stored policy does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AcceptedPolicy {
    pub level: String,
    pub min_tls: String,
    pub explanation: String,
}

/// What the sender asked of TLS for one message (RFC 8689), kept with it
/// so the delivery code can honour it on every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsRequest {
    /// Neither REQUIRETLS nor `TLS-Required: No`: the configured levels
    /// and the recipient's policies decide.
    #[default]
    None,
    /// `MAIL FROM:<..> REQUIRETLS` (RFC 8689 section 4.1), received over
    /// TLS: deliver only over TLS authenticated by DANE or MTA-STS (or a
    /// level that requires it) to a server that advertises REQUIRETLS,
    /// else return the message (5.7.10 / 5.7.30); never cleartext. A
    /// `TLS-Required` header field is then ignored (section 3).
    RequireTls,
    /// A `TLS-Required: No` header field without REQUIRETLS (section 3):
    /// the sender asks that the recipient's MTA-STS or DANE failures not
    /// stop delivery. sealpost never relaxes a mandatory level an operator
    /// configured.
    TlsOptional,
}

impl TlsRequest {
    pub fn is_none(&self) -> bool {
        *self == TlsRequest::None
    }

    /// `MAIL FROM ... REQUIRETLS` was given.
    pub fn requires_tls(self) -> bool {
        self == TlsRequest::RequireTls
    }
}

/// One recipient as accepted by the SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecipient {
    /// RCPT TO address.
    pub address: String,
    /// Opaque routing key chosen by the caller (e.g. the recipient domain or
    /// a smart host); recipients of one message with the same destination are
    /// leased together so one SMTP transaction can carry them.
    pub destination: String,
    /// RCPT TO parameters (RFC 5321 §4.1.1.3), e.g. `NOTIFY=FAILURE`.
    pub params: Vec<String>,
}

/// A message the SMTP server hands to [`crate::Queue::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub tenant: String,
    /// MAIL FROM reverse path (empty for the null sender).
    pub mail_from: String,
    /// MAIL FROM parameters (RFC 5321 §4.1.1.2), e.g. `BODY=8BITMIME`.
    pub mail_params: Vec<String>,
    pub recipients: Vec<NewRecipient>,
    pub policy: AcceptedPolicy,
    pub body: Vec<u8>,
    pub arrived_at: SystemTime,
}

/// One SMTP transaction as the server accepted it: the body, stored once,
/// and one message per destination group sharing it. The messages commit
/// together: all of them are stored, or none ([`crate::Queue::enqueue_transaction`]).
#[derive(Debug, PartialEq, Eq)]
pub struct NewTransaction {
    pub copies: Vec<NewCopy>,
    pub body: Body,
}

/// One message of a [`NewTransaction`]: its envelope and its own trace
/// header; the body is the transaction's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCopy {
    pub tenant: String,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub recipients: Vec<NewRecipient>,
    pub policy: AcceptedPolicy,
    /// REQUIRETLS or `TLS-Required: No` (RFC 8689).
    pub tls_request: TlsRequest,
    pub arrived_at: SystemTime,
    /// Header lines of this message only (its `Received:` line, RFC 5321
    /// section 4.4), delivered before the shared body.
    pub trace: String,
}

impl NewMessage {
    /// A message to one recipient, arriving now, with no MAIL parameters
    /// and the default policy (for tests, benches and tools).
    pub fn to_one(
        tenant: &str,
        mail_from: &str,
        address: &str,
        destination: &str,
        body: Vec<u8>,
    ) -> NewMessage {
        NewMessage {
            tenant: tenant.into(),
            mail_from: mail_from.into(),
            mail_params: Vec::new(),
            recipients: vec![NewRecipient {
                address: address.into(),
                destination: destination.into(),
                params: Vec::new(),
            }],
            policy: AcceptedPolicy::default(),
            body,
            arrived_at: SystemTime::now(),
        }
    }

    /// This message as one copy of a transaction, with `trace` as its own
    /// header lines, and its body.
    pub fn into_copy(self, trace: String) -> (NewCopy, Vec<u8>) {
        let copy = NewCopy {
            tenant: self.tenant,
            mail_from: self.mail_from,
            mail_params: self.mail_params,
            recipients: self.recipients,
            policy: self.policy,
            tls_request: TlsRequest::None,
            arrived_at: self.arrived_at,
            trace,
        };
        (copy, self.body)
    }
}

impl From<NewMessage> for NewTransaction {
    fn from(m: NewMessage) -> Self {
        let (copy, body) = m.into_copy(String::new());
        NewTransaction {
            copies: vec![copy],
            body: Body::Memory(body),
        }
    }
}

impl NewTransaction {
    /// Bytes one copy occupies as delivered (trace and body).
    pub fn size_of(&self, copy: &NewCopy) -> u64 {
        copy.trace.len() as u64 + self.body.len()
    }
}

/// The state of one recipient. `Delivered`, `Failed` and `Expired` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecipientState {
    /// Waiting for its first attempt (due at arrival).
    Queued,
    /// Leased by a delivery worker (in memory only: after a crash it is due).
    Active,
    /// Waiting for a retry at this time.
    Deferred {
        next_attempt: SystemTime,
    },
    /// Held by an operator; not due until released.
    Held,
    Delivered,
    /// Permanently failed (5xx or operator bounce).
    Failed,
    /// Lifetime ran out before delivery.
    Expired,
}

/// [`RecipientState`] without its data, for counting and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StateKind {
    Queued,
    Active,
    Deferred,
    Held,
    Delivered,
    Failed,
    Expired,
}

impl RecipientState {
    pub fn kind(&self) -> StateKind {
        match self {
            RecipientState::Queued => StateKind::Queued,
            RecipientState::Active => StateKind::Active,
            RecipientState::Deferred { .. } => StateKind::Deferred,
            RecipientState::Held => StateKind::Held,
            RecipientState::Delivered => StateKind::Delivered,
            RecipientState::Failed => StateKind::Failed,
            RecipientState::Expired => StateKind::Expired,
        }
    }
    pub fn is_final(&self) -> bool {
        self.kind().is_final()
    }
}

impl StateKind {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StateKind::Delivered | StateKind::Failed | StateKind::Expired
        )
    }
}

/// How the peer's identity was authenticated on a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Authentication {
    None,
    Dane,
    /// WebPKI (certificate chain and name), under an MTA-STS policy or a
    /// level that checks it. Stored as `Webpki`, its first spelling.
    #[serde(rename = "Webpki")]
    WebPki,
}

/// One delivery attempt, as the delivery engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    #[serde(with = "ms_time")]
    pub at: SystemTime,
    pub mx_host: Option<String>,
    pub ip: Option<String>,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    pub authentication: Authentication,
    /// The peer's reply or the local reason (e.g. a policy verdict).
    #[serde(deserialize_with = "crate::reason::stored")]
    pub reply_or_reason: Reason,
}

/// The result of an attempt for one recipient of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// 2xx after DATA: the server's reply.
    Delivered {
        #[serde(deserialize_with = "crate::reason::stored")]
        reply: Reason,
    },
    /// Permanent failure (5xx or a local permanent reason).
    Failed {
        #[serde(deserialize_with = "crate::reason::stored")]
        reason: Reason,
    },
    /// Temporary failure: retried after the backoff unless the lifetime ran out.
    Deferred {
        #[serde(deserialize_with = "crate::reason::stored")]
        reason: Reason,
    },
}

impl Outcome {
    /// The reply or reason of this outcome.
    pub fn reason(&self) -> &Reason {
        match self {
            Outcome::Delivered { reply } => reply,
            Outcome::Failed { reason } | Outcome::Deferred { reason } => reason,
        }
    }
}

/// What the queue records per recipient per attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    pub outcome: Outcome,
}

/// A recipient of a stored message, with its attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientInfo {
    pub index: u16,
    pub address: String,
    pub destination: String,
    pub params: Vec<String>,
    pub state: RecipientState,
    pub attempts: Vec<AttemptRecord>,
}

/// One stored message as the admin socket shows it (body not included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub id: MessageId,
    pub tenant: String,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub policy: AcceptedPolicy,
    /// REQUIRETLS or `TLS-Required: No` (RFC 8689).
    pub tls_request: TlsRequest,
    pub arrived_at: SystemTime,
    pub size: u64,
    pub recipients: Vec<RecipientInfo>,
}

/// Serde helper: `SystemTime` as milliseconds since the epoch.
pub(crate) mod ms_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_ms(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(d).map(super::from_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::Authentication;

    #[test]
    fn authentication_keeps_its_stored_spelling() {
        let stored = serde_json::to_string(&Authentication::WebPki).expect("serialize");
        assert_eq!(
            stored, "\"Webpki\"",
            "records already on disk use this form"
        );
        let read: Authentication = serde_json::from_str("\"Webpki\"").expect("deserialize");
        assert_eq!(read, Authentication::WebPki);
    }
}
