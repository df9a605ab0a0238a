//! The persisted policy cache (RFC 8461 section 5.1: policies are cached
//! until `max_age` and must survive a restart so that an enforced policy is
//! not forgotten) and the injected clock.
//!
//! One sled tree holds one JSON value per policy domain (lower case, no
//! trailing dot). Every write is flushed before it returns: policy writes
//! are rare (one per fetch), and a crash must not lose an enforced policy.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::policy::Policy;

/// Name of the tree when the store lives in a shared sled database.
pub(crate) const TREE_NAME: &str = "mta_sts_policies";

/// Seconds since the Unix epoch, as the cache measures time.
pub(crate) type UnixSeconds = u64;

/// The time source (injected so tests never sleep).
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixSeconds;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixSeconds {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock moved by hand (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: UnixSeconds) -> ManualClock {
        ManualClock(AtomicU64::new(start))
    }
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
    pub fn set(&self, now: UnixSeconds) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixSeconds {
        self.0.load(Ordering::SeqCst)
    }
}

/// A policy as cached: what was fetched, under which TXT id, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPolicy {
    /// The policy domain (lower case, no trailing dot).
    pub domain: String,
    /// The TXT `id` the policy was fetched under.
    pub id: String,
    pub policy: Policy,
    /// The body as served (TLS reports quote it as `policy-string`).
    pub text: String,
    pub fetched_at: UnixSeconds,
    /// `fetched_at + max_age`: the policy applies while `now < expires_at`.
    pub expires_at: UnixSeconds,
}

impl CachedPolicy {
    pub(crate) fn is_fresh(&self, now: UnixSeconds) -> bool {
        now < self.expires_at
    }
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("MTA-STS policy store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("MTA-STS policy store: {source}")]
    Io {
        #[source]
        source: sled::Error,
    },
    #[error("MTA-STS policy store: entry for {domain} is unreadable: {reason}")]
    Corrupt { domain: String, reason: String },
}

fn io(source: sled::Error) -> StoreError {
    StoreError::Io { source }
}

/// The sled-backed policy store.
#[derive(Clone)]
pub struct PolicyStore {
    tree: sled::Tree,
}

impl PolicyStore {
    /// Opens (or creates) a sled database of its own at `path`.
    pub fn open(path: &Path) -> Result<PolicyStore, StoreError> {
        let config = sled::Config::new().path(path);
        let db = sealpost_queue::open_sled(&config).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let tree = db.open_tree(TREE_NAME).map_err(io)?;
        Ok(PolicyStore { tree })
    }

    pub fn get(&self, domain: &str) -> Result<Option<CachedPolicy>, StoreError> {
        match self.tree.get(domain.as_bytes()).map_err(io)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        domain: domain.to_string(),
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// Stores (replaces) the entry for `entry.domain` and flushes.
    pub fn put(&self, entry: &CachedPolicy) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            domain: entry.domain.clone(),
            reason: e.to_string(),
        })?;
        self.tree
            .insert(entry.domain.as_bytes(), bytes)
            .map_err(io)?;
        self.tree.flush().map_err(io)?;
        Ok(())
    }

    pub fn remove(&self, domain: &str) -> Result<(), StoreError> {
        self.tree.remove(domain.as_bytes()).map_err(io)?;
        self.tree.flush().map_err(io)?;
        Ok(())
    }

    /// Every entry (unreadable ones reported, not skipped silently).
    pub fn entries(&self) -> Vec<Result<CachedPolicy, StoreError>> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(io)?;
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    domain: String::from_utf8_lossy(&key).into_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// As after a restart within one process: sled's I/O threads may still
    /// hold the previous handle's file lock for a moment.
    #[test]
    fn opens_once_a_lock_held_in_this_process_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mta-sts");
        let previous = sled::open(&path).expect("previous handle");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(previous);
        });
        let store = PolicyStore::open(&path).expect("opened after the wait");
        assert!(store.entries().is_empty());
        releaser.join().expect("releaser");
    }
}
