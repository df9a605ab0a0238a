//! The node-to-node transfer extension of sealpost: how a node being
//! drained hands a queued message to another node over SMTP with what
//! its queue knows besides the envelope (`docs/cluster.md`, "Draining a
//! node"). Pure encoding, no I/O.
//!
//! - The receiving node advertises the EHLO keyword `XSEALPOST-TRANSFER`
//!   only to the addresses of its `[cluster] peers`; to anyone else the
//!   keyword is not offered and its parameters get `555`.
//! - `MAIL FROM:<..> XSEALPOST-TRANSFER=<record>`: the message's tenant,
//!   accepted TLS policy, REQUIRETLS / `TLS-Required: No` request (RFC
//!   8689), arrival time, queue id on the sending node, and its stored MAIL
//!   parameters (e.g. the DSN parameters RET and ENVID of RFC 3461).
//! - `RCPT TO:<..> XSEALPOST-TRANSFER=<record>`: the recipient's
//!   destination (next hop key) and stored RCPT parameters (NOTIFY,
//!   ORCPT).
//!
//! A record is JSON in base64url without padding, so it is a valid
//! `esmtp-value` (RFC 5321 section 4.1.2: no `=`, no space). The whole
//! command still has to fit the 512-octet line limit (section 4.5.3.1.4).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sealpost_queue::TlsRequest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The EHLO keyword, and the MAIL and RCPT parameter's name.
pub(crate) const KEYWORD: &str = "XSEALPOST-TRANSFER";

/// What the sending node's queue knows of a message beyond its envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageRecord {
    #[serde(rename = "t")]
    pub tenant: String,
    /// The accepted policy's level, e.g. `mandatory-dane`.
    #[serde(rename = "l")]
    pub level: String,
    /// The accepted policy's minimum TLS version, e.g. `1.2`.
    #[serde(rename = "m")]
    pub min_tls: String,
    #[serde(rename = "r", default)]
    pub tls_request: TlsRequest,
    /// Arrival on the first node, milliseconds since the Unix epoch.
    #[serde(rename = "a")]
    pub arrived_ms: u64,
    /// The message's queue id on the sending node.
    #[serde(rename = "i")]
    pub origin_id: String,
    /// The stored MAIL parameters (e.g. `RET=HDRS`, `ENVID=..`).
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub mail_params: Vec<String>,
}

/// What the sending node's queue knows of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecipientRecord {
    /// The next hop key (a recipient domain, or `inbound:<domain>`).
    #[serde(rename = "d")]
    pub destination: String,
    /// The stored RCPT parameters (e.g. `NOTIFY=FAILURE`, `ORCPT=..`).
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// A transfer parameter that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad {KEYWORD} parameter: {reason}")]
pub struct BadRecord {
    pub reason: String,
}

/// The parameter `KEYWORD=<record>` for `record`.
pub fn parameter<T: Serialize>(record: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let json = serde_json::to_vec(record).unwrap_or_default();
    format!("{KEYWORD}={}", URL_SAFE_NO_PAD.encode(json))
}

/// The record in the transfer parameter among `params`: `None` when there
/// is none, an error when it does not decode.
pub fn find<T: DeserializeOwned>(
    params: &[(String, Option<String>)],
) -> Option<Result<T, BadRecord>> {
    let (_, value) = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(KEYWORD))?;
    let bad = |reason: String| BadRecord { reason };
    Some(
        value
            .as_deref()
            .ok_or_else(|| bad("no value".into()))
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).map_err(|e| bad(e.to_string())))
            .and_then(|json| serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))),
    )
}

/// Whether `params` hold the transfer parameter.
pub fn present(params: &[(String, Option<String>)]) -> bool {
    params.iter().any(|(k, _)| k.eq_ignore_ascii_case(KEYWORD))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(parameter: &str) -> Vec<(String, Option<String>)> {
        let (k, v) = parameter.split_once('=').expect("k=v");
        vec![(k.to_string(), Some(v.to_string()))]
    }

    #[test]
    fn records_round_trip_as_esmtp_values() {
        let message = MessageRecord {
            tenant: "acme".into(),
            level: "mandatory".into(),
            min_tls: "1.2".into(),
            tls_request: TlsRequest::RequireTls,
            arrived_ms: 1_700_000_000_123,
            origin_id: "0123456789abcdef".into(),
            mail_params: vec!["RET=HDRS".into(), "ENVID=a+2Bb".into()],
        };
        let p = parameter(&message);
        let value = p.split_once('=').expect("k=v").1;
        assert!(value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(find::<MessageRecord>(&split(&p)), Some(Ok(message)));
        let rcpt = RecipientRecord {
            destination: "inbound:acme.example".into(),
            params: vec!["NOTIFY=FAILURE,DELAY".into()],
        };
        assert_eq!(
            find::<RecipientRecord>(&split(&parameter(&rcpt))),
            Some(Ok(rcpt))
        );
        assert_eq!(find::<RecipientRecord>(&[]), None);
        let garbage = vec![(KEYWORD.to_string(), Some("!!".to_string()))];
        assert!(matches!(find::<RecipientRecord>(&garbage), Some(Err(_))));
    }
}
