//! Message bodies on their way in: in memory while small, spooled to a file
//! under `<queue>/incoming/` once large, so a session holding a 50 MiB
//! message holds a buffer, not the message.
//!
//! A spool file is written in the segment record format with its header
//! left blank: `[20 zero bytes] body`. The body's CRC is computed as it is
//! written. At commit the body stage fills in the header (the owner's id and
//! `crc32(id ‖ body)`, combined from the two parts), syncs the file and
//! renames it into `bodies/` as a segment of its own: a large body is never
//! copied again. A spool never committed is deleted when dropped, and
//! `incoming/` is emptied when the queue opens.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::faults::StorageFaults;
use crate::frame::{record_header, HEADER};
use crate::{MessageId, QueueError};

/// The body of a new transaction.
#[derive(Debug)]
pub enum Body {
    /// Held in memory (small messages).
    Memory(Vec<u8>),
    /// Written to a spool file as it arrived.
    Spooled(Spool),
}

impl Body {
    /// Content octets.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::Spooled(spool) => spool.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start of the body (all of it when in memory, the first
    /// [`Spool::HEAD_BYTES`] when spooled): enough for checks on the header
    /// section, such as counting `Received:` fields.
    pub fn head(&self) -> &[u8] {
        match self {
            Body::Memory(bytes) => bytes,
            Body::Spooled(spool) => &spool.head,
        }
    }

    /// The whole body in memory (reads a spool back; for tests and small
    /// consumers, not for the queue's own path).
    pub fn into_bytes(self) -> Result<Vec<u8>, QueueError> {
        match self {
            Body::Memory(bytes) => Ok(bytes),
            Body::Spooled(mut spool) => spool.read_back(),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Memory(bytes)
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Body::Memory(a), Body::Memory(b)) => a == b,
            (Body::Spooled(a), Body::Spooled(b)) => a.path == b.path,
            _ => false,
        }
    }
}

impl Eq for Body {}

/// A body being written to `<queue>/incoming/`. Writing never fails outward:
/// the first error is kept, and the transaction that carries the spool is
/// refused with it at commit (a full disk is a `452`, not a dropped
/// connection in the middle of DATA).
#[derive(Debug)]
pub struct Spool {
    file: Option<File>,
    path: PathBuf,
    len: u64,
    crc: crc32fast::Hasher,
    error: Option<QueueError>,
    faults: Arc<StorageFaults>,
    /// A copy of the first [`Spool::HEAD_BYTES`] written.
    head: Vec<u8>,
}

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// How much of the start of a spooled body is also kept in memory.
    pub const HEAD_BYTES: usize = 256 * 1024;

    /// A new spool file in `dir`. Creating it does not fail outward either:
    /// a spool that could not be created carries the error.
    pub(crate) fn create(dir: &Path, faults: Arc<StorageFaults>) -> Spool {
        let seq = SPOOL_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{seq}.spool", std::process::id()));
        let mut spool = Spool {
            file: None,
            path,
            len: 0,
            crc: crc32fast::Hasher::new(),
            error: None,
            faults,
            head: Vec::new(),
        };
        let created = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&spool.path)
            .and_then(|mut file| file.write_all(&[0u8; HEADER]).map(|()| file));
        match created {
            Ok(file) => spool.file = Some(file),
            Err(e) => {
                let _ = fs::remove_file(&spool.path);
                spool.error = Some(QueueError::io(&spool.path, &e));
            }
        }
        spool
    }

    /// Append body bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if self.faults.disk_full.load(Ordering::Relaxed) {
            self.error = Some(QueueError::DiskFull {
                path: self.path.clone(),
                detail: "injected: no space left on device".into(),
            });
            return;
        }
        match file.write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.crc.update(bytes);
                let room = Spool::HEAD_BYTES.saturating_sub(self.head.len());
                self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
            }
            Err(e) => self.error = Some(QueueError::io(&self.path, &e)),
        }
    }

    /// Body octets written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first write error, if any.
    pub fn error(&self) -> Option<&QueueError> {
        self.error.as_ref()
    }

    /// Takes the spool's file out, unless writing it failed or it was
    /// committed. Whoever takes it puts it back unless the file moved, so
    /// that a spool dropped uncommitted still deletes its file.
    fn take_file(&mut self) -> Result<File, QueueError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.file.take().ok_or_else(|| QueueError::Io {
            path: self.path.clone(),
            detail: "spool already committed".into(),
        })
    }

    fn read_back(&mut self) -> Result<Vec<u8>, QueueError> {
        let mut file = self.take_file()?;
        let mut bytes = Vec::with_capacity(self.len as usize);
        let read = file
            .seek(SeekFrom::Start(HEADER as u64))
            .and_then(|_| file.read_to_end(&mut bytes))
            .and_then(|_| file.seek(SeekFrom::End(0)))
            .map_err(|e| QueueError::io(&self.path, &e));
        self.file = Some(file);
        read.map(|_| bytes)
    }

    /// Make the spool the record of `owner` and move it to `target` (a new
    /// segment file). Returns the file, to be synced with the group, and the
    /// record's length. After this the spool no longer deletes the file.
    pub(crate) fn commit_as(
        &mut self,
        owner: MessageId,
        target: &Path,
    ) -> Result<(File, u32), QueueError> {
        let len = u32::try_from(self.len).map_err(|_| QueueError::TooLarge {
            size: usize::try_from(self.len).unwrap_or(usize::MAX),
            limit: u32::MAX as usize,
        })?;
        let mut file = self.take_file()?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&owner.key());
        crc.combine(&self.crc);
        let header = record_header(owner, len, crc.finalize());
        let moved = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header))
            .map_err(|e| QueueError::io(&self.path, &e))
            .and_then(|()| fs::rename(&self.path, target).map_err(|e| QueueError::io(target, &e)));
        match moved {
            Ok(()) => Ok((file, len)),
            Err(e) => {
                self.file = Some(file);
                Err(e)
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Empty `<queue>/incoming/` (spools of sessions that died with the
/// process) and make sure it exists.
pub(crate) fn reset_incoming(dir: &Path) -> Result<(), QueueError> {
    fs::create_dir_all(dir).map_err(|e| QueueError::io(dir, &e))?;
    for entry in fs::read_dir(dir).map_err(|e| QueueError::io(dir, &e))? {
        let entry = entry.map_err(|e| QueueError::io(dir, &e))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "spool") {
            fs::remove_file(&path).map_err(|e| QueueError::io(&path, &e))?;
        }
    }
    Ok(())
}
