//! The audit log of changes made through the admin API: one JSON line per
//! change in `<data_dir>/audit.log`, appended (never rewritten) and synced
//! to disk before the change is answered. `GET /audit` and
//! `sealpost audit` read it.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The log's file name in the data directory.
pub(crate) const FILE_NAME: &str = "audit.log";

/// The audit log of the data directory `data_dir`.
pub(crate) fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UTC, RFC 3339 (`2026-12-06T04:05:06Z`).
    pub time: String,
    pub unix_ms: u64,
    /// The caller's Unix user id, from the socket's peer credentials
    /// (`None` if the system did not give them).
    pub uid: Option<u32>,
    /// The web console's signed-in user who made the change (`None`:
    /// the admin socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub tenant: String,
    /// What was done: `peers add`, `domains disable`, ...
    pub change: String,
    pub domain: String,
    /// The tenant file written.
    pub file: String,
    /// The tenant's version before (`None`: the file was created) and after.
    pub version_before: Option<String>,
    pub version_after: String,
    /// The domain's table before and after, as TOML (`None`: absent).
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Appends `record` and syncs it to disk.
pub fn append(path: &Path, record: &AuditRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write of the whole line: O_APPEND keeps concurrent lines whole.
    file.write_all(&line)?;
    file.sync_data()
}

/// The last `limit` records (of `tenant`, when given), oldest first. A
/// missing log is empty; a line that does not parse (a torn last line
/// after a crash) is skipped.
pub fn read(path: &Path, tenant: Option<&str>, limit: usize) -> io::Result<Vec<AuditRecord>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = std::collections::VecDeque::with_capacity(limit.min(1024));
    for line in io::BufReader::new(file).lines() {
        let Ok(record) = serde_json::from_str::<AuditRecord>(&line?) else {
            continue;
        };
        if tenant.is_some_and(|t| t != record.tenant) {
            continue;
        }
        if records.len() == limit {
            records.pop_front();
        }
        if limit > 0 {
            records.push_back(record);
        }
    }
    Ok(records.into())
}

/// `t` as RFC 3339 UTC with seconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    crate::date::rfc3339(crate::date::unix_seconds(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_527_506, "2026-12-06T03:25:06Z"),
        ] {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), text);
        }
    }

    #[test]
    fn records_append_and_read_back_by_tenant_skipping_torn_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path_in(dir.path());
        assert!(read(&path, None, 10).expect("missing is empty").is_empty());
        let record = |tenant: &str, n: u64| AuditRecord {
            time: rfc3339(SystemTime::now()),
            unix_ms: n,
            uid: Some(1000),
            user: None,
            tenant: tenant.into(),
            change: "peers add".into(),
            domain: "a.example".into(),
            file: "tenants.d/a.toml".into(),
            version_before: None,
            version_after: "v".into(),
            before: None,
            after: Some("[[domains]]\n".into()),
        };
        for n in 0..5 {
            append(&path, &record(if n % 2 == 0 { "a" } else { "b" }, n)).expect("append");
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"time\": \"torn"))
            .expect("torn line");
        let all = read(&path, None, 10).expect("read");
        assert_eq!(
            all.iter().map(|r| r.unix_ms).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let a = read(&path, Some("a"), 2).expect("read");
        assert_eq!(a.iter().map(|r| r.unix_ms).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(a[0], record("a", 2).clone_with_time(&a[0].time));
    }

    impl AuditRecord {
        fn clone_with_time(mut self, time: &str) -> Self {
            time.clone_into(&mut self.time);
            self
        }
    }
}
