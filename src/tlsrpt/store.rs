//! Received TLS reports, kept per tenant under
//! `<data_dir>/tls-reports/received/<tenant>/<key>.json`, one file per
//! report (the key is derived from the sending organization and its
//! `report-id`, so a report sent twice is stored once), each written whole
//! (temporary file, fsync, rename, fsync of the directory) before the
//! sender is told it was accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::Report;

/// Reports kept per tenant at most; more are refused until some are
/// removed (a flood of reports cannot fill the disk).
pub(crate) const MAX_REPORTS_PER_TENANT: usize = 10_000;

/// One stored report and how it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredReport {
    /// Unix seconds.
    pub received_at: u64,
    /// `https` or `mail`.
    pub via: String,
    /// The managed domain it was sent for.
    pub domain: String,
    pub report: Report,
}

/// What storing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same organization's report with this id was already stored.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tenant {tenant} already keeps {MAX_REPORTS_PER_TENANT} reports")]
    Full { tenant: String },
}

/// One row of `sealpost tls-reports received`: a tenant's reports from
/// one sending organization.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SummaryRow {
    pub tenant: String,
    pub organization: String,
    pub reports: u64,
    pub successful_sessions: u64,
    pub failed_sessions: u64,
    /// Failed sessions per RFC 8460 result type.
    pub failures: BTreeMap<String, u64>,
    /// The latest `end-datetime` among the reports.
    pub latest: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ReportStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A file-name-safe form of a tenant name.
fn tenant_dir_name(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

impl ReportStore {
    pub fn new(data_dir: &Path) -> ReportStore {
        ReportStore {
            dir: data_dir.join("tls-reports").join("received"),
        }
    }

    /// Stores `stored` for `tenant`, durably.
    pub fn put(&self, tenant: &str, stored: &StoredReport) -> Result<Stored, StoreError> {
        let dir = self.dir.join(tenant_dir_name(tenant));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(stored.report.organization_name.as_bytes());
            ctx.update(b"\0");
            ctx.update(stored.report.report_id.as_bytes());
            let digest = ctx.finish();
            digest.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let path = dir.join(format!("{key}.json"));
        if path.exists() {
            return Ok(Stored::Duplicate);
        }
        let count = std::fs::read_dir(&dir).map_err(io(&dir))?.count();
        if count >= MAX_REPORTS_PER_TENANT {
            return Err(StoreError::Full {
                tenant: tenant.to_owned(),
            });
        }
        let bytes = serde_json::to_vec(stored).unwrap_or_default();
        crate::atomic_file::write(&path, &bytes, 0o666).map_err(io(&path))?;
        Ok(Stored::New)
    }

    /// Every stored report of every tenant, by tenant directory name.
    pub fn all(&self) -> Result<Vec<(String, StoredReport)>, StoreError> {
        let mut out = Vec::new();
        let tenants = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        for tenant in tenants {
            let tenant = tenant.map_err(io(&self.dir))?;
            let name = tenant.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(tenant.path()).map_err(io(&tenant.path()))? {
                let path = file.map_err(io(&tenant.path()))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                match serde_json::from_slice::<StoredReport>(&bytes) {
                    Ok(report) => out.push((name.clone(), report)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable stored TLS report skipped")
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes the reports received before `before` (unix seconds);
    /// returns how many went (`[tls_reports] retention_days`).
    pub fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let tenants = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut removed = 0;
        for tenant in tenants {
            let tenant = tenant.map_err(io(&self.dir))?;
            for file in std::fs::read_dir(tenant.path()).map_err(io(&tenant.path()))? {
                let path = file.map_err(io(&tenant.path()))?.path();
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let old = serde_json::from_slice::<StoredReport>(&bytes)
                    .is_ok_and(|r| r.received_at < before);
                if old {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Per tenant and sending organization: reports, sessions, failures
    /// per result type.
    pub fn summary(&self) -> Result<Vec<SummaryRow>, StoreError> {
        let mut rows: BTreeMap<(String, String), SummaryRow> = BTreeMap::new();
        for (tenant, stored) in self.all()? {
            let report = &stored.report;
            let row = rows
                .entry((tenant.clone(), report.organization_name.clone()))
                .or_insert_with(|| SummaryRow {
                    tenant,
                    organization: report.organization_name.clone(),
                    ..SummaryRow::default()
                });
            row.reports += 1;
            if report.date_range.end_datetime > row.latest {
                row.latest = report.date_range.end_datetime.clone();
            }
            for policy in &report.policies {
                row.successful_sessions += policy.summary.total_successful_session_count;
                row.failed_sessions += policy.summary.total_failure_session_count;
                for failure in &policy.failure_details {
                    *row.failures.entry(failure.result_type.clone()).or_default() +=
                        failure.failed_session_count;
                }
            }
        }
        Ok(rows.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::report::{decode, tests::EXAMPLE, Encoding, Limits};

    #[test]
    fn stored_once_and_summed_per_tenant_and_organization() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ReportStore::new(dir.path());
        assert!(store.summary().expect("empty").is_empty());
        let report = decode(EXAMPLE.as_bytes(), Encoding::Json, Limits::default()).expect("ok");
        let stored = StoredReport {
            received_at: 1,
            via: "https".into(),
            domain: "company-y.example".into(),
            report: report.clone(),
        };
        assert_eq!(store.put("acme/x", &stored).expect("put"), Stored::New);
        assert_eq!(
            store.put("acme/x", &stored).expect("put"),
            Stored::Duplicate
        );
        let mut second = stored.clone();
        second.report.report_id = "another".into();
        assert_eq!(store.put("acme/x", &second).expect("put"), Stored::New);
        let summary = store.summary().expect("summary");
        assert_eq!(summary.len(), 1, "{summary:?}");
        let row = &summary[0];
        assert_eq!(row.tenant, "acme%2Fx");
        assert_eq!(row.organization, "Company-X");
        assert_eq!(row.reports, 2);
        assert_eq!(row.successful_sessions, 2 * 5326);
        assert_eq!(row.failed_sessions, 2 * 303);
        assert_eq!(row.failures["starttls-not-supported"], 400);
        assert_eq!(row.failures["validation-failure"], 6);
        assert_eq!(row.latest, "2016-04-01T23:59:59Z");
        // Retention: received at 1, kept from 2 on.
        assert_eq!(store.prune(1).expect("prune"), 0);
        assert_eq!(store.prune(2).expect("prune"), 2);
        assert!(store.summary().expect("summary").is_empty());
    }
}
