//! The metadata record of one message as stored in sled (`messages` tree,
//! key = big-endian message id, value = JSON), and its conversion to the
//! public [`MessageInfo`].

use serde::{Deserialize, Serialize};

use crate::segment::BodyLoc;
use crate::types::{
    from_ms, AcceptedPolicy, AttemptRecord, MessageInfo, RecipientInfo, TlsRequest,
};
use crate::{MessageId, QueueError, RecipientState};

/// Persisted recipient state (`Active` is never persisted: a lease lives in
/// memory, so after a crash the recipient is due again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredState {
    Queued,
    Deferred { next_ms: u64 },
    Held,
    Delivered,
    Failed,
    Expired,
}

impl StoredState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StoredState::Delivered | StoredState::Failed | StoredState::Expired
        )
    }

    pub fn public(self) -> RecipientState {
        match self {
            StoredState::Queued => RecipientState::Queued,
            StoredState::Deferred { next_ms } => RecipientState::Deferred {
                next_attempt: from_ms(next_ms),
            },
            StoredState::Held => RecipientState::Held,
            StoredState::Delivered => RecipientState::Delivered,
            StoredState::Failed => RecipientState::Failed,
            StoredState::Expired => RecipientState::Expired,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredRecipient {
    pub address: String,
    pub destination: String,
    pub params: Vec<String>,
    pub state: StoredState,
    pub attempts: Vec<AttemptRecord>,
}

impl StoredRecipient {
    /// When this recipient is due, if it is waiting for an attempt.
    pub fn due_ms(&self, arrived_ms: u64) -> Option<u64> {
        match self.state {
            StoredState::Queued => Some(arrived_ms),
            StoredState::Deferred { next_ms } => Some(next_ms),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMessage {
    pub tenant: String,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub policy: AcceptedPolicy,
    /// Absent in records written before RFC 8689 support: `None`.
    #[serde(default, skip_serializing_if = "TlsRequest::is_none")]
    pub tls_request: TlsRequest,
    pub arrived_ms: u64,
    pub body: BodyLoc,
    /// This message's own header lines, delivered before the (possibly
    /// shared) body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace: String,
    pub recipients: Vec<StoredRecipient>,
    /// Bounce records written and not yet completed by the DSN code.
    pub bounces_pending: u32,
    /// Sequence for the next bounce record's key.
    pub bounce_seq: u32,
}

impl StoredMessage {
    pub fn decode(id: MessageId, bytes: &[u8]) -> Result<Self, QueueError> {
        serde_json::from_slice(bytes).map_err(|e| QueueError::CorruptRecord {
            id: id.to_string(),
            detail: e.to_string(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Bytes as delivered: the trace header and the body.
    pub fn size(&self) -> u64 {
        self.trace.len() as u64 + u64::from(self.body.len)
    }

    /// Every recipient final and every bounce handed off: the message leaves.
    pub fn is_done(&self) -> bool {
        self.bounces_pending == 0 && self.recipients.iter().all(|r| r.state.is_final())
    }

    pub fn info(&self, id: MessageId, active: impl Fn(u16) -> bool) -> MessageInfo {
        MessageInfo {
            id,
            tenant: self.tenant.clone(),
            mail_from: self.mail_from.clone(),
            mail_params: self.mail_params.clone(),
            policy: self.policy.clone(),
            tls_request: self.tls_request,
            arrived_at: from_ms(self.arrived_ms),
            size: self.size(),
            recipients: self
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let index = i as u16;
                    RecipientInfo {
                        index,
                        address: r.address.clone(),
                        destination: r.destination.clone(),
                        params: r.params.clone(),
                        state: if active(index) {
                            RecipientState::Active
                        } else {
                            r.state.public()
                        },
                        attempts: r.attempts.clone(),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_tls_request_reads_as_none() {
        let mut record = StoredMessage {
            tenant: "t".into(),
            mail_from: "a@b.test".into(),
            mail_params: Vec::new(),
            policy: AcceptedPolicy::default(),
            tls_request: TlsRequest::None,
            arrived_ms: 1,
            body: BodyLoc {
                segment: 0,
                offset: 0,
                len: 0,
                owner: None,
            },
            trace: String::new(),
            recipients: Vec::new(),
            bounces_pending: 0,
            bounce_seq: 0,
        };
        let old = record.encode();
        assert!(!String::from_utf8_lossy(&old).contains("tls_request"));
        let id = MessageId(1);
        assert_eq!(StoredMessage::decode(id, &old).expect("decode"), record);
        record.tls_request = TlsRequest::RequireTls;
        let new = record.encode();
        assert!(String::from_utf8_lossy(&new).contains("\"tls_request\":\"require-tls\""));
        assert_eq!(StoredMessage::decode(id, &new).expect("decode"), record);
    }
}
