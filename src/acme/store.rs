//! What ACME keeps under `<data_dir>/acme/`, each file written whole
//! (temporary file, fsync, rename, fsync of the directory), so a crash
//! leaves the old version or the new one:
//!
//! - `account.json` (mode 0600): the account key and URL, with the
//!   directory it belongs to; another directory gets a new account.
//! - `certs/<host>.pem` and `certs/<host>.key` (0600): the chain and key
//!   in use for `mta-sts.<domain>`. The key is written before the chain,
//!   so a chain on disk always has its key.
//! - `status.json`: every name's [`DomainRecord`] (state, expiry, failures,
//!   next attempt), read back at start so backoff survives a restart, and
//!   read by `sealpost dns-records`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::schedule::DomainRecord;

/// A file of the ACME store that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON for this file: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A certificate chain and its private key, both PEM.
pub(crate) type PemPair = (Vec<u8>, Vec<u8>);

/// `<data_dir>/acme`.
#[derive(Debug, Clone)]
pub struct AcmeStore {
    dir: PathBuf,
}

/// The account as stored: credentials and the directory they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: instant_acme::AccountCredentials,
}

impl AcmeStore {
    /// The store of `data_dir` (nothing is created until written).
    pub fn new(data_dir: &Path) -> AcmeStore {
        AcmeStore {
            dir: data_dir.join("acme"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The account for `directory`, if one was stored for it.
    pub(crate) fn account(
        &self,
        directory: &str,
    ) -> Result<Option<instant_acme::AccountCredentials>, StoreError> {
        let path = self.dir.join("account.json");
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let stored: StoredAccount =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                path: path.clone(),
                source,
            })?;
        Ok((stored.directory == directory).then_some(stored.credentials))
    }

    pub(crate) fn save_account(
        &self,
        directory: &str,
        credentials: instant_acme::AccountCredentials,
    ) -> Result<(), StoreError> {
        let path = self.dir.join("account.json");
        let stored = StoredAccount {
            directory: directory.to_owned(),
            credentials,
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes, 0o600)
    }

    fn cert_paths(&self, host: &str) -> (PathBuf, PathBuf) {
        let certs = self.dir.join("certs");
        (
            certs.join(format!("{host}.pem")),
            certs.join(format!("{host}.key")),
        )
    }

    /// The stored chain and key PEM of `host`, if both are there.
    pub fn certificate(&self, host: &str) -> Result<Option<PemPair>, StoreError> {
        let (chain, key) = self.cert_paths(host);
        match (read_optional(&chain)?, read_optional(&key)?) {
            (Some(chain), Some(key)) => Ok(Some((chain, key))),
            _ => Ok(None),
        }
    }

    /// Where `host`'s chain is kept (for errors and logs).
    pub(crate) fn certificate_path(&self, host: &str) -> PathBuf {
        self.cert_paths(host).0
    }

    pub fn save_certificate(&self, host: &str, chain: &[u8], key: &[u8]) -> Result<(), StoreError> {
        let (chain_path, key_path) = self.cert_paths(host);
        write_atomic(&key_path, key, 0o600)?;
        write_atomic(&chain_path, chain, 0o644)
    }

    /// Every name's record; an absent file is an empty map.
    pub fn status(&self) -> Result<BTreeMap<String, DomainRecord>, StoreError> {
        let path = self.dir.join("status.json");
        match read_optional(&path)? {
            None => Ok(BTreeMap::new()),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
            }
        }
    }

    pub(crate) fn save_status(
        &self,
        status: &BTreeMap<String, DomainRecord>,
    ) -> Result<(), StoreError> {
        let path = self.dir.join("status.json");
        let bytes = serde_json::to_vec_pretty(status).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes, 0o644)
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` whole ([`crate::atomic_file::write`]),
/// creating its directory.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(AcmeStore::io(dir))?;
    crate::atomic_file::write(path, bytes, mode).map_err(AcmeStore::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_and_status_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AcmeStore::new(dir.path());
        assert!(store.certificate("mta-sts.a.test").expect("read").is_none());
        assert!(store.status().expect("read").is_empty());
        store
            .save_certificate("mta-sts.a.test", b"chain", b"key")
            .expect("save");
        assert_eq!(
            store.certificate("mta-sts.a.test").expect("read"),
            Some((b"chain".to_vec(), b"key".to_vec()))
        );
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("acme/certs/mta-sts.a.test.key");
        let mode = std::fs::metadata(key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut status = BTreeMap::new();
        status.insert("mta-sts.a.test".to_string(), DomainRecord::new(7));
        store.save_status(&status).expect("save");
        assert_eq!(store.status().expect("read"), status);
        std::fs::write(dir.path().join("acme/status.json"), "{").expect("write");
        let err = store.status().expect_err("broken");
        assert!(err.to_string().contains("status.json"), "{err}");
    }
}
