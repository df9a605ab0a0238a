//! The daily aggregate of outbound sessions for TLS reports (RFC 8460
//! section 4), kept in a sled database of its own under
//! `<data_dir>/tls-reports/sessions`, and the log of reports sent.
//!
//! Every count is a keyed counter that only ever adds (a sled merge
//! operator adds big-endian `u64`s), so memory stays bounded (nothing is
//! held in memory between sessions) and counts survive a restart. Keys,
//! fields separated by `0x1f`:
//!
//! - `P day tenant domain policy-id` -> the policy (JSON), written once;
//!   `policy-id` is a digest of the policy, equal on every node.
//! - `S day tenant domain policy-id` -> successful sessions.
//! - `F day tenant domain policy-id result-type mx-host ip sending-ip` ->
//!   failed sessions; at most [`MAX_FAILURE_DETAILS`] distinct keys per
//!   policy and day, further failures count under the same result type
//!   without host and addresses. (Keys written before `sending-ip` was
//!   kept end at `ip`; they read with no sending address.)
//!
//! Several nodes merge by adding: each exports its keys of a day
//! ([`Daily::export`]) and the node that sends adds them to its own
//! ([`Daily::merge`]); equal keys mean equal policy, failure and place, so
//! sums are exact and merging is order-free (see `docs/tls-reports.md`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::{FailureDetail, PolicyDescription, PolicyResult, Summary};
use super::session::{PolicySeen, SessionOutcome, SessionResult};

/// Distinct failure details kept per policy and day.
pub(crate) const MAX_FAILURE_DETAILS: usize = 100;

const SEP: u8 = 0x1f;

/// Why the aggregate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DailyError {
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("TLS report sessions: {0}")]
    Sled(#[from] sled::Error),
}

/// Counters of one day as exported for another node: (key, value).
#[cfg(test)]
pub(crate) type Exported = Vec<(Vec<u8>, Vec<u8>)>;

/// One report to send: a tenant's sessions to one domain on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReportKey {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub tenant: String,
    pub domain: String,
}

/// What happened to one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    pub key: ReportKey,
    /// Unix seconds.
    pub at: u64,
    /// Each `rua` destination and what sending to it did (`sent`,
    /// `queued as <id>`, or the error).
    pub deliveries: Vec<(String, String)>,
    /// The report as sent (the JSON text), if one was built.
    pub report: Option<String>,
    /// HTTPS destinations whose POST failed and will be tried again
    /// (durable with the record: a restart keeps them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Retry>,
}

/// An HTTPS `rua` to POST a report to again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub rua: String,
    /// The tries made so far (all failed).
    pub tries: u32,
    /// Unix seconds: when to try next.
    pub next_at: u64,
}

/// The aggregate (see the module docs).
#[derive(Clone)]
pub struct Daily {
    db: sled::Db,
    counts: sled::Tree,
    sent: sled::Tree,
}

fn add(_key: &[u8], old: Option<&[u8]>, more: &[u8]) -> Option<Vec<u8>> {
    let n = |bytes: Option<&[u8]>| {
        bytes
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes)
    };
    Some(n(old).saturating_add(n(Some(more))).to_be_bytes().to_vec())
}

fn key(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn fields(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == SEP)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

fn count(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

/// A stable digest naming a policy (equal on every node).
fn policy_id(policy: &PolicySeen) -> String {
    let json = serde_json::to_vec(policy).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &json);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Daily {
    /// Opens (or creates) the aggregate under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Daily, DailyError> {
        let path = data_dir.join("tls-reports").join("sessions");
        let config = sled::Config::new().path(&path);
        let db = sealpost_queue::open_sled(&config)
            .map_err(|source| DailyError::Open { path, source })?;
        let counts = db.open_tree("counts")?;
        counts.set_merge_operator(add);
        let sent = db.open_tree("sent")?;
        Ok(Daily { db, counts, sent })
    }

    /// Counts one session in its day.
    pub fn record(&self, result: &SessionResult) -> Result<(), DailyError> {
        let day = super::session::utc_day(result.at);
        let id = policy_id(&result.policy);
        let base = [
            day.as_str(),
            result.tenant.as_str(),
            result.policy.policy_domain.as_str(),
            id.as_str(),
        ];
        let policy_key = key(&[&["P"], &base[..]].concat());
        if !self.counts.contains_key(&policy_key)? {
            let json = serde_json::to_vec(&result.policy).unwrap_or_default();
            self.counts.insert(policy_key, json)?;
        }
        let one = 1u64.to_be_bytes();
        match &result.outcome {
            SessionOutcome::Success => {
                self.counts.merge(key(&[&["S"], &base[..]].concat()), one)?;
            }
            SessionOutcome::Failure(failure) => {
                let ip = result.receiving_ip.map(|ip| ip.to_string());
                let sending = result.sending_ip.map(|ip| ip.to_string());
                let detail = [
                    failure.as_str(),
                    result.mx_host.as_deref().unwrap_or(""),
                    ip.as_deref().unwrap_or(""),
                    sending.as_deref().unwrap_or(""),
                ];
                let mut failure_key = key(&[&["F"], &base[..], &detail[..]].concat());
                if !self.counts.contains_key(&failure_key)? {
                    let mut prefix = key(&[&["F"], &base[..]].concat());
                    prefix.push(SEP);
                    let kept = self
                        .counts
                        .scan_prefix(&prefix)
                        .take(MAX_FAILURE_DETAILS)
                        .count();
                    if kept >= MAX_FAILURE_DETAILS {
                        failure_key =
                            key(&[&["F"], &base[..], &[failure.as_str(), "", "", ""]].concat());
                    }
                }
                self.counts.merge(failure_key, one)?;
            }
        }
        Ok(())
    }

    /// Makes everything recorded so far durable.
    pub fn flush(&self) -> Result<(), DailyError> {
        self.db.flush()?;
        Ok(())
    }

    /// The reports with sessions on a day before `before` (`YYYY-MM-DD`)
    /// not sent yet, oldest first.
    pub fn pending(&self, before: &str) -> Result<Vec<ReportKey>, DailyError> {
        let mut out: Vec<ReportKey> = Vec::new();
        for entry in self.counts.scan_prefix(b"P") {
            let (k, _) = entry?;
            let f = fields(&k);
            if f.len() != 5 || f[1].as_str() >= before {
                continue;
            }
            let report = ReportKey {
                day: f[1].clone(),
                tenant: f[2].clone(),
                domain: f[3].clone(),
            };
            if out.last() != Some(&report) && !self.sent.contains_key(sent_key(&report))? {
                out.push(report);
            }
        }
        out.dedup();
        Ok(out)
    }

    /// The `policies` of one report: each policy with its summary and
    /// failure details (RFC 8460 section 4.4).
    pub fn policies(&self, report: &ReportKey) -> Result<Vec<PolicyResult>, DailyError> {
        let base = [
            report.day.as_str(),
            report.tenant.as_str(),
            report.domain.as_str(),
        ];
        let mut prefix = key(&[&["P"], &base[..]].concat());
        prefix.push(SEP);
        let mut out = Vec::new();
        for entry in self.counts.scan_prefix(&prefix) {
            let (k, policy) = entry?;
            let Some(id) = fields(&k).pop() else { continue };
            let Ok(policy) = serde_json::from_slice::<PolicySeen>(&policy) else {
                continue;
            };
            let ids = [&base[..], &[id.as_str()]].concat();
            let success = self
                .counts
                .get(key(&[&["S"], &ids[..]].concat()))?
                .map_or(0, |v| count(&v));
            let mut failure_prefix = key(&[&["F"], &ids[..]].concat());
            failure_prefix.push(SEP);
            let mut failure_details = Vec::new();
            for entry in self.counts.scan_prefix(&failure_prefix) {
                let (k, v) = entry?;
                let f = fields(&k);
                // `F` and the four fields of the policy, then the detail.
                let (result_type, mx, ip, sending) = match f.as_slice() {
                    [_, _, _, _, _, result_type, mx, ip, sending] => {
                        (result_type, mx, ip, sending.as_str())
                    }
                    [_, _, _, _, _, result_type, mx, ip] => (result_type, mx, ip, ""),
                    _ => continue,
                };
                failure_details.push(FailureDetail {
                    result_type: result_type.clone(),
                    sending_mta_ip: (!sending.is_empty()).then(|| sending.to_string()),
                    receiving_mx_hostname: (!mx.is_empty()).then(|| mx.clone()),
                    receiving_ip: (!ip.is_empty()).then(|| ip.clone()),
                    failed_session_count: count(&v),
                    failure_reason_code: None,
                });
            }
            let failed = failure_details.iter().map(|f| f.failed_session_count).sum();
            out.push(PolicyResult {
                policy: PolicyDescription {
                    policy_type: policy.policy_type.as_str().to_string(),
                    policy_string: policy.policy_strings,
                    policy_domain: policy.policy_domain,
                    mx_host: policy.mx_host,
                },
                summary: Summary {
                    total_successful_session_count: success,
                    total_failure_session_count: failed,
                },
                failure_details,
            });
        }
        Ok(out)
    }

    /// Every counter of `day` as (key, value) pairs, for another node to
    /// [`merge`](Daily::merge).
    #[cfg(test)]
    pub(crate) fn export(&self, day: &str) -> Result<Exported, DailyError> {
        let mut out = Vec::new();
        for kind in ["P", "S", "F"] {
            let mut prefix = key(&[kind, day]);
            prefix.push(SEP);
            for entry in self.counts.scan_prefix(&prefix) {
                let (k, v) = entry?;
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Adds another node's exported counters to this one's.
    pub fn merge(&self, exported: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DailyError> {
        for (k, v) in exported {
            if k.first() == Some(&b'P') {
                self.counts.insert(k.as_slice(), v.as_slice())?;
            } else {
                self.counts.merge(k.as_slice(), v.as_slice())?;
            }
        }
        Ok(())
    }

    /// Notes what was done with a report (durable on return): it is not
    /// sent again.
    pub(crate) fn mark_sent(&self, record: &SentRecord) -> Result<(), DailyError> {
        let json = serde_json::to_vec(record).unwrap_or_default();
        self.sent.insert(sent_key(&record.key), json)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every report sent (or tried), oldest day first.
    pub fn sent(&self) -> Result<Vec<SentRecord>, DailyError> {
        let mut out = Vec::new();
        for entry in self.sent.iter() {
            let (_, v) = entry?;
            if let Ok(record) = serde_json::from_slice(&v) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Forgets the counts and sent reports of days before `keep_from`
    /// (`YYYY-MM-DD`); returns how many entries went.
    pub fn prune(&self, keep_from: &str) -> Result<usize, DailyError> {
        let mut removed = 0;
        // The day is the second field of a count's key, the first of a
        // sent report's.
        for (tree, day_field) in [(&self.counts, 1), (&self.sent, 0)] {
            let mut old = Vec::new();
            for entry in tree.iter() {
                let (k, _) = entry?;
                let day = fields(&k).into_iter().nth(day_field);
                if day.is_some_and(|d| d.as_str() < keep_from) {
                    old.push(k);
                }
            }
            for k in old {
                tree.remove(k)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.db.flush()?;
        }
        Ok(removed)
    }
}

fn sent_key(report: &ReportKey) -> Vec<u8> {
    key(&[&report.day, &report.tenant, &report.domain])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::session::{PolicyType, TlsFailure};

    pub(crate) fn session(
        tenant: &str,
        outcome: SessionOutcome,
        mx: &str,
        at: u64,
    ) -> SessionResult {
        SessionResult {
            tenant: tenant.into(),
            policy: PolicySeen {
                policy_type: PolicyType::Sts,
                policy_strings: vec!["version: STSv1".into(), "mode: enforce".into()],
                policy_domain: "example.net".into(),
                mx_host: vec!["*.example.net".into()],
            },
            mx_host: Some(mx.into()),
            receiving_ip: Some("192.0.2.1".parse().expect("ip")),
            sending_ip: Some("198.51.100.7".parse().expect("ip")),
            outcome,
            at,
        }
    }

    const DAY1: u64 = 1_459_468_800; // 2016-04-01

    /// As after a restart within one process: sled's I/O threads may still
    /// hold the previous handle's file lock for a moment.
    #[test]
    fn opens_once_a_lock_held_in_this_process_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let previous =
            sled::open(dir.path().join("tls-reports").join("sessions")).expect("previous handle");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(previous);
        });
        let daily = Daily::open(dir.path()).expect("opened after the wait");
        assert!(daily.pending("2016-04-02").expect("pending").is_empty());
        releaser.join().expect("releaser");
    }

    #[test]
    fn counts_add_up_per_policy_and_failure_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let daily = Daily::open(dir.path()).expect("open");
            for _ in 0..3 {
                daily
                    .record(&session(
                        "t",
                        SessionOutcome::Success,
                        "mx1.example.net",
                        DAY1 + 5,
                    ))
                    .expect("record");
            }
            let expired = SessionOutcome::Failure(TlsFailure::CertificateExpired);
            daily
                .record(&session("t", expired, "mx2.example.net", DAY1 + 7))
                .expect("record");
            daily.flush().expect("flush");
        }
        let daily = Daily::open(dir.path()).expect("reopen");
        let pending = daily.pending("2016-04-02").expect("pending");
        assert_eq!(
            pending,
            vec![ReportKey {
                day: "2016-04-01".into(),
                tenant: "t".into(),
                domain: "example.net".into()
            }]
        );
        assert!(daily.pending("2016-04-01").expect("pending").is_empty());
        let policies = daily.policies(&pending[0]).expect("policies");
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].summary.total_successful_session_count, 3);
        assert_eq!(policies[0].summary.total_failure_session_count, 1);
        let detail = &policies[0].failure_details[0];
        assert_eq!(detail.result_type, "certificate-expired");
        assert_eq!(
            detail.receiving_mx_hostname.as_deref(),
            Some("mx2.example.net")
        );
        assert_eq!(detail.receiving_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(detail.sending_mta_ip.as_deref(), Some("198.51.100.7"));
        daily
            .mark_sent(&SentRecord {
                key: pending[0].clone(),
                at: DAY1 + 86_400,
                deliveries: Vec::new(),
                report: None,
                retries: Vec::new(),
            })
            .expect("sent");
        assert!(daily.pending("2016-04-02").expect("pending").is_empty());
        assert_eq!(daily.prune("2016-04-02").expect("prune"), 4);
        assert!(daily.sent().expect("sent").is_empty());
    }

    #[test]
    fn failure_details_are_capped_and_nodes_merge_by_adding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Daily::open(&dir.path().join("a")).expect("open");
        let b = Daily::open(&dir.path().join("b")).expect("open");
        let failed = SessionOutcome::Failure(TlsFailure::StarttlsNotSupported);
        for i in 0..(MAX_FAILURE_DETAILS + 20) {
            a.record(&session(
                "t",
                failed.clone(),
                &format!("mx{i}.example.net"),
                DAY1,
            ))
            .expect("record");
        }
        b.record(&session(
            "t",
            SessionOutcome::Success,
            "mx1.example.net",
            DAY1,
        ))
        .expect("record");
        b.record(&session("t", failed.clone(), "mx0.example.net", DAY1))
            .expect("record");
        let key = &a.pending("2016-04-02").expect("pending")[0];
        let details = a.policies(key).expect("policies")[0].failure_details.len();
        assert_eq!(
            details,
            MAX_FAILURE_DETAILS + 1,
            "capped, plus the overflow"
        );
        a.merge(&b.export("2016-04-01").expect("export"))
            .expect("merge");
        let merged = &a.policies(key).expect("policies")[0];
        assert_eq!(merged.summary.total_successful_session_count, 1);
        assert_eq!(
            merged.summary.total_failure_session_count,
            (MAX_FAILURE_DETAILS + 21) as u64
        );
        let mx0 = merged
            .failure_details
            .iter()
            .find(|d| d.receiving_mx_hostname.as_deref() == Some("mx0.example.net"))
            .expect("mx0");
        assert_eq!(mx0.failed_session_count, 2);
    }
}
