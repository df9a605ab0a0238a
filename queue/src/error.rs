//! Typed errors of the queue. Every variant names what failed and where, so an
//! operator (or the SMTP server choosing a reply code) can act on it.

use std::path::PathBuf;

/// Everything the queue can fail with. `Clone` so one failed group commit can
/// be reported to every writer of the group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The disk (or the injected storage fault) has no space left. The SMTP
    /// server answers `452 4.3.1` (RFC 5321 §4.5.3.1.10, RFC 3463 X.3.1).
    #[error("queue storage at {path} is full: {detail}")]
    DiskFull { path: PathBuf, detail: String },
    /// Any other I/O failure of the storage.
    #[error("queue storage I/O failed at {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    /// The metadata store at `path` cannot be opened or read.
    #[error(
        "queue store at {path} is corrupt ({detail}); to recover, stop sealpost, move the \
         directory aside (keep it for inspection) and start with an empty queue"
    )]
    CorruptStore { path: PathBuf, detail: String },
    /// Another process (or another queue in this one) has the store open.
    #[error(
        "queue store at {path} is in use by another process; is another sealpost serving \
         this data_dir?"
    )]
    InUse { path: PathBuf },
    /// A body record failed its length or checksum check.
    #[error("body record of message {id} in {path} at offset {offset} is corrupt: {detail}")]
    CorruptBody {
        id: String,
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// A metadata record does not decode.
    #[error("metadata record of message {id} is corrupt: {detail}")]
    CorruptRecord { id: String, detail: String },
    /// The message body is larger than `QueueOptions::max_body_bytes`.
    #[error("message body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The message has more recipients than a record can hold.
    #[error("message has {count} recipients, more than the limit of {limit}")]
    TooManyRecipients { count: usize, limit: usize },
    /// A message must have at least one recipient.
    #[error("message has no recipients")]
    NoRecipients,
    /// No message with this id is in the queue.
    #[error("no message {id} in the queue")]
    NotFound { id: String },
    /// The lease is no longer valid (message deleted or bounced by an operator).
    #[error("lease on message {id} for {destination} is no longer held")]
    LeaseLost { id: String, destination: String },
    /// An outcome names a recipient that is not part of the lease.
    #[error("recipient {index} of message {id} is not part of this lease")]
    NotLeased { id: String, index: u16 },
    /// A string could not be parsed as a message id.
    #[error("{input:?} is not a message id (16 lowercase hex digits)")]
    BadMessageId { input: String },
    /// The queue's commit thread has stopped (the queue is shutting down).
    #[error("the queue is closed")]
    Closed,
}

impl QueueError {
    /// Classify an I/O error at `path`: `ENOSPC`/`EDQUOT` become `DiskFull`.
    pub(crate) fn io(path: impl Into<PathBuf>, err: &std::io::Error) -> Self {
        let path = path.into();
        let detail = err.to_string();
        match err.raw_os_error() {
            // ENOSPC (28) and EDQUOT (122) on Linux.
            Some(28) | Some(122) => QueueError::DiskFull { path, detail },
            _ if err.kind() == std::io::ErrorKind::StorageFull => {
                QueueError::DiskFull { path, detail }
            }
            _ => QueueError::Io { path, detail },
        }
    }

    /// Classify a sled error for the store at `path`.
    pub(crate) fn sled(path: impl Into<PathBuf>, err: sled::Error) -> Self {
        match err {
            sled::Error::Io(io) => QueueError::io(path, &io),
            sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
                QueueError::CorruptStore {
                    path: path.into(),
                    detail: err.to_string(),
                }
            }
            other => QueueError::Io {
                path: path.into(),
                detail: other.to_string(),
            },
        }
    }

    /// True when the SMTP server should answer 452 (temporary, insufficient storage).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, QueueError::DiskFull { .. })
    }
}
