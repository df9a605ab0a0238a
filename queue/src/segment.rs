//! Body storage: append-only segment files under `<queue>/bodies/`.
//!
//! A record is a header and the body, framed as [`crate::frame`] describes
//! (magic, owner id, length, crc32). Records are written by the commit thread only
//! and made durable with one `fdatasync` per commit group, *before* the
//! metadata pointing at them is written; so metadata never names a record
//! that is not on disk, and a torn tail after a crash belongs to a message
//! that was never acknowledged. A reader checks length, id and checksum and
//! returns [`QueueError::CorruptBody`] on any mismatch.
//!
//! One record can hold the body shared by several messages (the destination
//! groups of one SMTP transaction); the record header names the first of them
//! (the owner), and each message's [`BodyLoc`] says whose record it reads.
//!
//! **Invariant: no record can be unlinked before it is released.** Every
//! segment carries a count of holders: [`Segments::append`] adds the record's
//! holders (one per message that will point at it) *at the moment of the
//! append*, before the record is synced or its metadata written, and
//! [`Segments::release`] takes one away when a message leaves the store (or
//! when a commit fails and the message is never stored). A segment file is
//! deleted only when its count is zero and it is not the one being appended
//! to, whether the check happens at a release or at a rotation. So a rotation
//! later in the same commit group, or a release on another thread while a
//! group is in flight, can never remove a record a message is about to point
//! at.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::faults::StorageFaults;
use crate::frame::{self, record_header, HEADER};
use crate::spool::Spool;
use crate::{MessageId, QueueError};

/// Where a body lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BodyLoc {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
    /// The message named in the record header, when the record is shared and
    /// this is not that message (absent: the record is the message's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<MessageId>,
}

pub(crate) struct Segments {
    dir: PathBuf,
    max_bytes: u64,
    next_number: u32,
    current: Option<(u32, File, u64)>,
    /// Files written since the last sync (a group may cross a rotation).
    unsynced: Vec<File>,
    dir_dirty: bool,
    /// Holders per segment: messages stored or being stored that point into
    /// it (see the module's invariant).
    live: HashMap<u32, u64>,
    faults: Arc<StorageFaults>,
}

pub(crate) fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}.seg"))
}

impl Segments {
    /// Open the body directory; `live` counts messages per segment as found
    /// in the metadata. Segments with no live message are deleted.
    pub fn open(
        dir: PathBuf,
        max_bytes: u64,
        live: HashMap<u32, u64>,
        faults: Arc<StorageFaults>,
    ) -> Result<Self, QueueError> {
        fs::create_dir_all(&dir).map_err(|e| QueueError::io(&dir, &e))?;
        let mut highest = 0u32;
        for entry in fs::read_dir(&dir).map_err(|e| QueueError::io(&dir, &e))? {
            let entry = entry.map_err(|e| QueueError::io(&dir, &e))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            highest = highest.max(number);
            if !live.contains_key(&number) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| QueueError::io(&path, &e))?;
            }
        }
        Ok(Segments {
            dir,
            max_bytes: max_bytes.max(HEADER as u64 + 1),
            next_number: highest.saturating_add(1),
            current: None,
            unsynced: Vec::new(),
            dir_dirty: false,
            live,
            faults,
        })
    }

    /// Append one body record owned by `id`, to be pointed at by `holders`
    /// messages (not yet durable: call [`Segments::sync`]). The holders count
    /// from now on: release each one that ends up not stored.
    pub fn append(
        &mut self,
        id: MessageId,
        body: &[u8],
        holders: u64,
    ) -> Result<BodyLoc, QueueError> {
        let len = u32::try_from(body.len()).map_err(|_| QueueError::TooLarge {
            size: body.len(),
            limit: u32::MAX as usize,
        })?;
        let record_len = HEADER as u64 + u64::from(len);
        let rotate = match &self.current {
            Some((_, _, size)) => *size > 0 && size + record_len > self.max_bytes,
            None => true,
        };
        if rotate {
            self.rotate()?;
        }
        let Some((number, file, size)) = self.current.as_mut() else {
            return Err(QueueError::Io {
                path: self.dir.clone(),
                detail: "no open segment".into(),
            });
        };
        let path = segment_path(&self.dir, *number);
        if self.faults.disk_full.load(Ordering::Relaxed) {
            return Err(QueueError::DiskFull {
                path,
                detail: "injected: no space left on device".into(),
            });
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&id.key());
        crc.update(body);
        let header = record_header(id, len, crc.finalize());
        let offset = *size;
        let written = file.write_all(&header).and_then(|()| file.write_all(body));
        if let Err(e) = written {
            // Leave no partial record where the next one would go.
            let _ = file.set_len(offset);
            let _ = file.seek(SeekFrom::Start(offset));
            return Err(QueueError::io(path, &e));
        }
        *size += record_len;
        let segment = *number;
        *self.live.entry(segment).or_insert(0) += holders;
        Ok(BodyLoc {
            segment,
            offset,
            len,
            owner: None,
        })
    }

    /// Adopt a spooled body as a segment of its own, holding one record
    /// owned by `id` for `holders` messages (counted at once, as in
    /// [`Segments::append`]; not yet durable: call [`Segments::sync`]).
    pub fn adopt(
        &mut self,
        id: MessageId,
        spool: &mut Spool,
        holders: u64,
    ) -> Result<BodyLoc, QueueError> {
        let number = self.next_number;
        self.next_number = number.saturating_add(1);
        let (file, len) = spool.commit_as(id, &segment_path(&self.dir, number))?;
        self.unsynced.push(file);
        self.dir_dirty = true;
        *self.live.entry(number).or_insert(0) += holders;
        Ok(BodyLoc {
            segment: number,
            offset: 0,
            len,
            owner: None,
        })
    }

    fn rotate(&mut self) -> Result<(), QueueError> {
        let number = self.next_number;
        self.next_number = number.saturating_add(1);
        let path = segment_path(&self.dir, number);
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| QueueError::io(&path, &e))?;
        if let Some((old, file, _)) = self.current.take() {
            self.unsynced.push(file);
            if self.live.get(&old).copied().unwrap_or(0) == 0 {
                let _ = fs::remove_file(segment_path(&self.dir, old));
            }
        }
        self.current = Some((number, file, 0));
        self.dir_dirty = true;
        Ok(())
    }

    /// Make every appended record durable (`fdatasync`, plus the directory
    /// when a segment was created).
    pub fn sync(&mut self) -> Result<(), QueueError> {
        for file in self.unsynced.drain(..) {
            file.sync_data()
                .map_err(|e| QueueError::io(&self.dir, &e))?;
        }
        if let Some((number, file, _)) = &self.current {
            file.sync_data()
                .map_err(|e| QueueError::io(segment_path(&self.dir, *number), &e))?;
        }
        if self.dir_dirty {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| QueueError::io(&self.dir, &e))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// A message pointing at `loc` left the store (or was never stored).
    pub fn release(&mut self, loc: &BodyLoc) {
        let Some(count) = self.live.get_mut(&loc.segment) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.live.remove(&loc.segment);
            let is_current = matches!(&self.current, Some((n, _, _)) if *n == loc.segment);
            if !is_current {
                let _ = fs::remove_file(segment_path(&self.dir, loc.segment));
            }
        }
    }
}

/// Read and verify one body record, returned after `trace` (the message's
/// own header lines, e.g. its `Received:`, written before the shared body).
/// `limit` bounds the allocation when metadata and header agree on a wild length.
pub(crate) fn read_body(
    dir: &Path,
    id: MessageId,
    loc: &BodyLoc,
    limit: usize,
    trace: &[u8],
) -> Result<Vec<u8>, QueueError> {
    let path = segment_path(dir, loc.segment);
    let corrupt = |detail: String| QueueError::CorruptBody {
        id: id.to_string(),
        path: path.clone(),
        offset: loc.offset,
        detail,
    };
    let owner = loc.owner.unwrap_or(id);
    let mut file = File::open(&path).map_err(|e| QueueError::io(&path, &e))?;
    file.seek(SeekFrom::Start(loc.offset))
        .map_err(|e| QueueError::io(&path, &e))?;
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header)
        .map_err(|e| corrupt(format!("header unreadable: {e}")))?;
    let (header_owner, len, want) =
        frame::parse_header(&header).ok_or_else(|| corrupt("bad magic".into()))?;
    if header_owner != owner.key() {
        return Err(corrupt("record belongs to another message".into()));
    }
    if len != loc.len {
        return Err(corrupt(format!("length {len}, metadata says {}", loc.len)));
    }
    if len as usize > limit {
        return Err(corrupt(format!(
            "length {len} exceeds the body limit {limit}"
        )));
    }
    let mut out = Vec::with_capacity(trace.len() + len as usize);
    out.extend_from_slice(trace);
    out.resize(trace.len() + len as usize, 0);
    let body = &mut out[trace.len()..];
    file.read_exact(body)
        .map_err(|e| corrupt(format!("body truncated: {e}")))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&owner.key());
    crc.update(body);
    if crc.finalize() != want {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(out)
}
