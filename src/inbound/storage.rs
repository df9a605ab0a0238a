//! Room in the queue for new mail: the file system's reserve (`[limits]
//! min_free_disk`) and each tenant's quota (`max_queue_messages`,
//! `max_queue_bytes`). Both are asked before mail is accepted (at MAIL for
//! the disk, at RCPT for the tenant) and again at the end of DATA with the
//! message's size, so a full queue answers `452 4.3.1` (RFC 3463 X.3.1)
//! and mail is never accepted and then dropped.
//!
//! One [`Storage`] is shared by the SMTP side and the readiness check
//! (`crate::service::health`): both judge the reserve from the same
//! free-space reading, taken at most once a second.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sealpost_queue::Queue;

use super::Refusal;
use crate::config::Config;

/// How long one look at the file system's free space is trusted.
const FREE_SPACE_TTL: Duration = Duration::from_secs(1);

/// Why the queue cannot take more mail now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoom {
    /// The file system holding the queue is below its reserve.
    Disk { free: u64, reserve: u64 },
    /// The tenant would exceed its quota.
    Tenant {
        tenant: String,
        messages: u64,
        bytes: u64,
        max_messages: u64,
        max_bytes: u64,
    },
}

impl NoRoom {
    pub fn refusal(&self) -> Refusal {
        match self {
            NoRoom::Disk { .. } => Refusal::DiskReserve,
            NoRoom::Tenant { .. } => Refusal::TenantQueue,
        }
    }
}

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoRoom::Disk { free, reserve } => write!(
                f,
                "the queue's file system has {free} octets free, below the reserve of {reserve} ([limits] min_free_disk)"
            ),
            NoRoom::Tenant {
                tenant,
                messages,
                bytes,
                max_messages,
                max_bytes,
            } => write!(
                f,
                "tenant {tenant:?} has {messages} messages ({bytes} octets) queued; its quota is {max_messages} messages, {max_bytes} octets"
            ),
        }
    }
}

/// Octets available to an unprivileged writer on the file system of a
/// path.
pub trait FreeSpace: Send + Sync {
    fn free_bytes(&self, path: &Path) -> std::io::Result<u64>;
}

/// The real file system (`statvfs(3)`: blocks available to unprivileged
/// users).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskSpace;

impl FreeSpace for DiskSpace {
    fn free_bytes(&self, path: &Path) -> std::io::Result<u64> {
        fs2::available_space(path)
    }
}

/// Answers "is there room?" for the SMTP server and the readiness check.
pub struct Storage {
    dir: PathBuf,
    space: Box<dyn FreeSpace>,
    /// The last free-space reading and when it was taken.
    free: Mutex<Option<(Instant, u64)>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// The queue's storage, on the real file system.
    pub fn new(queue: &Queue) -> Storage {
        Storage::with_space(queue.path().to_path_buf(), Box::new(DiskSpace))
    }

    /// The storage of the queue directory `dir`, its free space read
    /// through `space`.
    pub fn with_space(dir: PathBuf, space: Box<dyn FreeSpace>) -> Storage {
        Storage {
            dir,
            space,
            free: Mutex::new(None),
        }
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Octets free for the queue (read at most once a second), or why
    /// the file system could not be asked.
    pub fn free_bytes(&self) -> Result<u64, String> {
        let mut last = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *last {
            if at.elapsed() < FREE_SPACE_TTL {
                return Ok(free);
            }
        }
        let free = self
            .space
            .free_bytes(&self.dir)
            .map_err(|e| e.to_string())?;
        *last = Some((Instant::now(), free));
        Ok(free)
    }

    /// Whether the file system is above its reserve, with `incoming` more
    /// octets written.
    pub fn disk(&self, config: &Config, incoming: u64) -> Result<(), NoRoom> {
        let reserve = config.limits.min_free_disk;
        if reserve == 0 {
            return Ok(());
        }
        // A file system that cannot be asked counts as having room: the
        // writes themselves still fail with a full disk.
        match self.free_bytes() {
            Ok(free) if free < reserve.saturating_add(incoming) => {
                Err(NoRoom::Disk { free, reserve })
            }
            _ => Ok(()),
        }
    }

    /// Whether `tenant` may queue `messages` more messages of `bytes`
    /// octets in all (0 and 0 at RCPT: is it already at its quota?).
    pub fn tenant(
        &self,
        config: &Config,
        queue: &Queue,
        tenant: &str,
        messages: u64,
        bytes: u64,
    ) -> Result<(), NoRoom> {
        let quota = config.queue_quota(tenant);
        let (queued, queued_bytes) = queue.tenant_usage(tenant);
        let over = if messages == 0 {
            queued >= quota.messages || queued_bytes >= quota.bytes
        } else {
            queued.saturating_add(messages) > quota.messages
                || queued_bytes.saturating_add(bytes) > quota.bytes
        };
        if over {
            return Err(NoRoom::Tenant {
                tenant: tenant.to_string(),
                messages: queued,
                bytes: queued_bytes,
                max_messages: quota.messages,
                max_bytes: quota.bytes,
            });
        }
        Ok(())
    }
}
