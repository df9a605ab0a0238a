//! The JSON shapes of the admin API: what the server writes and the CLI
//! reads back for its tables, and the queue filter both sides share
//! (query parameters of `GET /queue/messages`, the body of
//! `POST /queue/actions/{action}`). Documented in `docs/admin-api.md`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealpost_queue::{
    AttemptRecord, Authentication, ListFilter, MessageId, MessageInfo, Outcome, Reason,
    ReasonGroup, RecipientInfo, RecipientState, StateKind,
};
use serde::{Deserialize, Serialize};

use crate::metrics::{state_name, STATES};

pub use crate::date::unix_ms;

fn age_seconds(arrived: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(arrived)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A state by its lowercase name.
pub(crate) fn parse_state(name: &str) -> Option<StateKind> {
    STATES
        .into_iter()
        .find(|s| state_name(*s).eq_ignore_ascii_case(name))
}

/// `90`, `90s`, `15m`, `2h` or `3d`.
pub(crate) fn parse_age(given: &str) -> Result<Duration, String> {
    let given = given.trim();
    let (number, unit) = match given.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => given.split_at(i),
        None => (given, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad age `{given}`: write e.g. `90`, `90s`, `15m`, `2h` or `3d`"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "bad age unit in `{given}`: use s, m, h or d (e.g. `15m`)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

/// Which messages a list or an action covers; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The exact envelope sender (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// A recipient address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// A recipient domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Some recipient is in this state (`queued`, `deferred`, `held`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At least this old (`90`, `15m`, `2h`, `3d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<String>,
    /// A substring of some attempt's reply or reason (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl FilterSpec {
    /// No field set: the filter matches every message.
    pub fn is_empty(&self) -> bool {
        *self == FilterSpec::default()
    }

    /// Sets one field by its query-parameter name; `false` for an unknown name.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let field = match name {
            "tenant" => &mut self.tenant,
            "sender" => &mut self.sender,
            "recipient" => &mut self.recipient,
            "domain" => &mut self.domain,
            "state" => &mut self.state,
            "min_age" => &mut self.min_age,
            "reason" => &mut self.reason,
            _ => return false,
        };
        *field = Some(value);
        true
    }

    /// The set fields as (query-parameter name, value).
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("tenant", &self.tenant),
            ("sender", &self.sender),
            ("recipient", &self.recipient),
            ("domain", &self.domain),
            ("state", &self.state),
            ("min_age", &self.min_age),
            ("reason", &self.reason),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }

    /// The queue's filter, or why this one is not valid.
    pub(crate) fn to_list_filter(&self, now: SystemTime) -> Result<ListFilter, String> {
        let non_empty = |name: &str, value: &Option<String>| -> Result<Option<String>, String> {
            match value.as_deref().map(str::trim) {
                Some("") => Err(format!("`{name}` may not be empty")),
                Some(v) => Ok(Some(v.to_string())),
                None => Ok(None),
            }
        };
        let recipient = match (
            non_empty("recipient", &self.recipient)?,
            non_empty("domain", &self.domain)?,
        ) {
            (Some(_), Some(_)) => {
                return Err("give `recipient` or `domain`, not both".to_string());
            }
            (Some(address), None) => {
                if !address.contains('@') {
                    return Err(format!(
                        "`recipient` is an address (`{address}` has no @); use `domain` for a domain"
                    ));
                }
                Some(address)
            }
            (None, Some(domain)) => {
                if domain.contains('@') {
                    return Err(format!(
                        "`domain` is a domain (`{domain}` has an @); use `recipient` for an address"
                    ));
                }
                Some(domain)
            }
            (None, None) => None,
        };
        let state = match non_empty("state", &self.state)? {
            Some(name) => Some(parse_state(&name).ok_or_else(|| {
                let known: Vec<&str> = STATES.iter().map(|s| state_name(*s)).collect();
                format!("unknown state `{name}`: one of {}", known.join(", "))
            })?),
            None => None,
        };
        let arrived_before = match non_empty("min_age", &self.min_age)? {
            Some(age) => Some(now.checked_sub(parse_age(&age)?).unwrap_or(UNIX_EPOCH)),
            None => None,
        };
        Ok(ListFilter {
            tenant: non_empty("tenant", &self.tenant)?,
            sender: non_empty("sender", &self.sender)?,
            recipient,
            state,
            arrived_before,
            arrived_after: None,
            reason_contains: non_empty("reason", &self.reason)?,
        })
    }
}

/// The body of `POST /queue/actions/{action}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Required (true) when the filter is empty, i.e. matches every message.
    #[serde(default)]
    pub confirm_all: bool,
    /// For `bounce`: the reason given in the DSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_reason: Option<String>,
}

impl ActionRequest {
    pub fn new(filter: FilterSpec, confirm_all: bool, bounce_reason: Option<String>) -> Self {
        ActionRequest {
            tenant: filter.tenant,
            sender: filter.sender,
            recipient: filter.recipient,
            domain: filter.domain,
            state: filter.state,
            min_age: filter.min_age,
            reason: filter.reason,
            confirm_all,
            bounce_reason,
        }
    }

    pub fn filter(&self) -> FilterSpec {
        FilterSpec {
            tenant: self.tenant.clone(),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            domain: self.domain.clone(),
            state: self.state.clone(),
            min_age: self.min_age.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// The optional body of `POST /queue/messages/{id}/{action}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageActionRequest {
    /// For `bounce`: the reason given in the DSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_reason: Option<String>,
}

/// How many messages an action changed; for `retry` and `release`, the
/// destinations whose pause still holds some of them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Touched {
    pub touched: u64,
    /// Paused destinations of the recipients made due, by name: leases for
    /// them are deferred at once until the pause ends or is flushed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<HeldBack>,
}

/// Messages an action made due that a destination's pause still holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldBack {
    pub destination: String,
    /// Of the messages changed, how many have recipients for this destination.
    pub messages: u64,
    /// Unix milliseconds until which the destination is paused.
    pub paused_until: u64,
    /// Why it was paused (the last error).
    pub reason: Option<String>,
}

/// `GET /queue/summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub messages: u64,
    pub recipients_by_state: BTreeMap<String, u64>,
    pub messages_by_tenant: BTreeMap<String, u64>,
    /// Recipients not yet final, per destination.
    pub recipients_by_destination: BTreeMap<String, u64>,
    pub oldest: Option<Oldest>,
    /// Last-attempt reasons of deferred recipients, most frequent first.
    pub top_defer_reasons: Vec<ReasonCount>,
    /// Messages with deferred recipients read for `top_defer_reasons`.
    pub defer_scan_messages: u64,
    /// False when the scan stopped at its bound before the end of the queue.
    pub defer_scan_complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oldest {
    pub id: String,
    pub arrived_at_ms: u64,
    pub age_seconds: u64,
}

/// One cause of deferral and how many recipients wait for it. Reasons
/// group by kind and cause (a pause's time, a host or a reply's text do
/// not split a line); `reason` shows one of them as people read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// `remote`, `local`, `dane`, `mta-sts`, `paused/<kind>`, `queue`,
    /// `legacy` (see `sealpost_queue::ReasonGroup`).
    #[serde(default)]
    pub kind: String,
    /// The cause within the kind: a reply's code and status, a local
    /// cause, an RFC 8460 result type.
    #[serde(default)]
    pub cause: String,
    /// One reason of the group, rendered.
    pub reason: String,
    pub recipients: u64,
}

/// Deferral reasons counted by kind and cause (never by text): the
/// summary's and `sealpost top`'s "top defer reasons".
#[derive(Debug, Default)]
pub(crate) struct ReasonTally(BTreeMap<ReasonGroup, (String, u64)>);

impl ReasonTally {
    /// Counts one recipient deferred for `reason` (the first reason of a
    /// group is the one shown).
    pub fn add(&mut self, reason: &Reason) {
        self.0
            .entry(reason.group())
            .or_insert_with(|| (reason.to_string(), 0))
            .1 += 1;
    }

    /// The `limit` largest groups, most recipients first.
    pub fn top(self, limit: usize) -> Vec<ReasonCount> {
        let mut top: Vec<ReasonCount> = self
            .0
            .into_iter()
            .map(|(group, (reason, recipients))| ReasonCount {
                kind: group.kind,
                cause: group.cause,
                reason,
                recipients,
            })
            .collect();
        top.sort_by(|a, b| {
            b.recipients
                .cmp(&a.recipients)
                .then(a.reason.cmp(&b.reason))
        });
        top.truncate(limit);
        top
    }
}

/// One page of `GET /queue/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessagePage {
    pub messages: Vec<MessageSummary>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageSummary {
    pub id: String,
    pub tenant: String,
    pub mail_from: String,
    pub arrived_at_ms: u64,
    pub age_seconds: u64,
    pub size: u64,
    pub recipients: Vec<RecipientSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecipientSummary {
    pub address: String,
    pub destination: String,
    pub state: String,
    pub next_attempt_ms: Option<u64>,
    pub attempts: usize,
    pub last_reason: Option<String>,
}

/// `GET /queue/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MessageDetail {
    pub id: String,
    pub tenant: String,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub arrived_at_ms: u64,
    pub age_seconds: u64,
    pub size: u64,
    /// The policy the message was accepted under, with its explanation.
    pub accepted_policy: PolicyView,
    /// The sender's TLS request (RFC 8689): `none`, `require-tls`
    /// (REQUIRETLS) or `tls-optional` (`TLS-Required: No`).
    #[serde(default)]
    pub tls_request: sealpost_queue::TlsRequest,
    /// Outbound mail: what the configuration in force now says for this
    /// sender and destination (the answer of `sealpost policy explain`).
    pub effective_policy: Option<serde_json::Value>,
    pub recipients: Vec<RecipientDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyView {
    pub level: String,
    pub min_tls: String,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecipientDetail {
    pub index: u16,
    pub address: String,
    pub destination: String,
    pub params: Vec<String>,
    pub state: String,
    pub next_attempt_ms: Option<u64>,
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttemptView {
    pub at_ms: u64,
    pub mx_host: Option<String>,
    pub ip: Option<String>,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    /// `none`, `dane` or `webpki`.
    pub authentication: String,
    /// `delivered`, `deferred` or `failed`.
    pub result: String,
    /// The reply or reason of this outcome.
    pub reason: String,
}

fn next_attempt(state: &RecipientState) -> Option<u64> {
    match state {
        RecipientState::Deferred { next_attempt } => Some(unix_ms(*next_attempt)),
        _ => None,
    }
}

/// The text of an attempt's outcome (its reason, rendered).
pub(crate) fn outcome_text(record: &AttemptRecord) -> String {
    record.outcome.reason().to_string()
}

fn attempt_view(record: &AttemptRecord) -> AttemptView {
    let a = &record.attempt;
    AttemptView {
        at_ms: unix_ms(a.at),
        mx_host: a.mx_host.clone(),
        ip: a.ip.clone(),
        tls_version: a.tls_version.clone(),
        cipher: a.cipher.clone(),
        authentication: match a.authentication {
            Authentication::None => "none",
            Authentication::Dane => "dane",
            Authentication::WebPki => "webpki",
        }
        .to_string(),
        result: match record.outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Failed { .. } => "failed",
        }
        .to_string(),
        reason: outcome_text(record),
    }
}

fn recipient_summary(r: &RecipientInfo) -> RecipientSummary {
    RecipientSummary {
        address: r.address.clone(),
        destination: r.destination.clone(),
        state: state_name(r.state.kind()).to_string(),
        next_attempt_ms: next_attempt(&r.state),
        attempts: r.attempts.len(),
        last_reason: r.attempts.last().map(outcome_text),
    }
}

impl MessageSummary {
    pub fn of(info: &MessageInfo, now: SystemTime) -> MessageSummary {
        MessageSummary {
            id: info.id.to_string(),
            tenant: info.tenant.clone(),
            mail_from: info.mail_from.clone(),
            arrived_at_ms: unix_ms(info.arrived_at),
            age_seconds: age_seconds(info.arrived_at, now),
            size: info.size,
            recipients: info.recipients.iter().map(recipient_summary).collect(),
        }
    }
}

impl MessageDetail {
    pub fn of(
        info: &MessageInfo,
        effective_policy: Option<serde_json::Value>,
        now: SystemTime,
    ) -> MessageDetail {
        MessageDetail {
            id: info.id.to_string(),
            tenant: info.tenant.clone(),
            mail_from: info.mail_from.clone(),
            mail_params: info.mail_params.clone(),
            arrived_at_ms: unix_ms(info.arrived_at),
            age_seconds: age_seconds(info.arrived_at, now),
            size: info.size,
            accepted_policy: PolicyView {
                level: info.policy.level.clone(),
                min_tls: info.policy.min_tls.clone(),
                explanation: info.policy.explanation.clone(),
            },
            tls_request: info.tls_request,
            effective_policy,
            recipients: info
                .recipients
                .iter()
                .map(|r| RecipientDetail {
                    index: r.index,
                    address: r.address.clone(),
                    destination: r.destination.clone(),
                    params: r.params.clone(),
                    state: state_name(r.state.kind()).to_string(),
                    next_attempt_ms: next_attempt(&r.state),
                    attempts: r.attempts.iter().map(attempt_view).collect(),
                })
                .collect(),
        }
    }
}

impl Oldest {
    pub fn of(id: MessageId, arrived: SystemTime, now: SystemTime) -> Oldest {
        Oldest {
            id: id.to_string(),
            arrived_at_ms: unix_ms(arrived),
            age_seconds: age_seconds(arrived, now),
        }
    }
}

/// One row of `GET /destinations`: what the delivery engine knows of a
/// destination (see [`crate::admin::DeliveryView`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationStatus {
    pub name: String,
    pub mx_hosts: Vec<String>,
    /// The TLS state in force, e.g. `DANE: 2 usable TLSA at mx1` or an
    /// MTA-STS mode.
    pub tls: Option<String>,
    pub active_connections: usize,
    pub idle_connections: usize,
    /// Deliveries waiting for a connection.
    pub waiting: usize,
    /// Unix milliseconds until which the destination is backed off.
    pub backoff_until: Option<u64>,
    pub last_error: Option<String>,
    /// The typed reason `last_error` renders (the fleet view groups by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<Reason>,
}

/// `GET /destinations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destinations {
    pub destinations: Vec<DestinationStatus>,
    /// Recipients not yet final per destination, from the queue.
    pub queued_recipients: BTreeMap<String, u64>,
}

/// One row of `GET /tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantView {
    pub name: String,
    pub domains: Vec<TenantDomain>,
    pub queued_messages: u64,
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Deliveries of the tenant under way at most, as its tenant actor
    /// published it (`None` before the engine saw its mail).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantDomain {
    pub name: String,
    pub enabled: bool,
}

/// `POST /reload` as the client reads it (the server writes a
/// [`crate::live::ReloadReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ReloadAnswer {
    pub source: String,
    pub generation: u64,
    pub managed_domains: usize,
    pub needs_restart: Vec<String>,
    /// Tenant files refused (their previous version stays in force).
    #[serde(default)]
    pub tenant_errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_translated() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let spec = FilterSpec {
            domain: Some("Example.com".into()),
            state: Some("Deferred".into()),
            min_age: Some("2h".into()),
            ..FilterSpec::default()
        };
        let filter = spec.to_list_filter(now).expect("valid");
        assert_eq!(filter.recipient.as_deref(), Some("Example.com"));
        assert_eq!(filter.state, Some(StateKind::Deferred));
        assert_eq!(
            filter.arrived_before,
            Some(UNIX_EPOCH + Duration::from_secs(10_000 - 7200))
        );
        let bad = [
            FilterSpec {
                state: Some("lost".into()),
                ..FilterSpec::default()
            },
            FilterSpec {
                min_age: Some("3w".into()),
                ..FilterSpec::default()
            },
            FilterSpec {
                min_age: Some("soon".into()),
                ..FilterSpec::default()
            },
            FilterSpec {
                recipient: Some("a@b.example".into()),
                domain: Some("b.example".into()),
                ..FilterSpec::default()
            },
            FilterSpec {
                recipient: Some("b.example".into()),
                ..FilterSpec::default()
            },
            FilterSpec {
                tenant: Some(" ".into()),
                ..FilterSpec::default()
            },
        ];
        for spec in bad {
            assert!(spec.to_list_filter(now).is_err(), "{spec:?}");
        }
        assert!(FilterSpec::default().is_empty());
        assert_eq!(parse_age("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("1d").ok(), Some(Duration::from_secs(86400)));
    }
}
