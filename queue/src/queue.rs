//! The queue handle: opening (with recovery), enqueue and the commit thread.
//!
//! Layout under the queue directory: `meta/` is a sled database (trees
//! `messages` and `bounces`), `bodies/` holds the segment files.
//!
//! Recovery at open: every metadata record is decoded (a record that does not
//! decode makes open fail with [`QueueError::CorruptStore`] naming the path);
//! the due index and counts are rebuilt; recipients that were leased when the
//! process died were never persisted as anything but queued/deferred, so they
//! are due again; messages whose recipients are all final are removed;
//! segment files no message points into (including torn tails of groups that
//! never completed) are deleted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crate::commit::{lock, CommitQueue, Durable, DurableTransaction, Job, Slot};
use crate::faults::StorageFaults;
use crate::index::Index;
use crate::record::{StoredMessage, StoredRecipient, StoredState};
use crate::segment::{BodyLoc, Segments};
use crate::sled_open::{lock_taken, open_sled};
use crate::spool::{reset_incoming, Spool};
use crate::types::to_ms;
use crate::{Body, MessageId, NewCopy, NewMessage, NewTransaction, QueueError};

/// Options for [`Queue::open`].
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Largest accepted body (bytes).
    pub max_body_bytes: usize,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// sled page cache; small so memory does not grow with the queue.
    pub cache_bytes: u64,
    /// Segment files roll over at this size.
    pub segment_bytes: u64,
    /// Keep the record (attempt log) of a finished message this long after
    /// it finished, for `Queue::show`; `None` drops it at once.
    pub retain_done: Option<std::time::Duration>,
    /// Storage fault seam (tests set `disk_full`).
    pub faults: Arc<StorageFaults>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_body_bytes: 64 * 1024 * 1024,
            max_recipients: 1000,
            cache_bytes: 16 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            retain_done: None,
            faults: Arc::new(StorageFaults::default()),
        }
    }
}

pub(crate) struct QueueStore {
    pub path: PathBuf,
    pub db: sled::Db,
    pub messages: sled::Tree,
    pub bounces: sled::Tree,
    /// Finished messages kept for `retain_done`: key finished ms ‖ id.
    pub retained: sled::Tree,
    pub index: Mutex<Index>,
    pub segments: Mutex<Segments>,
    pub body_dir: PathBuf,
    pub commit: CommitQueue,
    pub options: QueueOptions,
    /// Bounce records handed out by `take_bounces` in this process.
    pub bounces_taken: Mutex<HashSet<(MessageId, u32)>>,
    last_id: AtomicU64,
}

/// The durable message queue. Share it with `Arc<Queue>`; every method takes
/// `&self`. Dropping it finishes pending commits and stops the commit thread.
pub struct Queue {
    pub(crate) shared: Arc<QueueStore>,
    /// The body stage and the metadata stage of the commit pipeline.
    committers: Vec<JoinHandle<()>>,
}

impl Queue {
    /// Open (or create) the queue at `path`, recovering after a crash.
    pub fn open(path: impl AsRef<Path>, options: QueueOptions) -> Result<Queue, QueueError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| QueueError::io(&path, &e))?;
        let meta_path = path.join("meta");
        let corrupt = |detail: String| QueueError::CorruptStore {
            path: meta_path.clone(),
            detail,
        };
        let config = sled::Config::new()
            .path(&meta_path)
            .cache_capacity(options.cache_bytes)
            .flush_every_ms(None);
        let db = match open_sled(&config) {
            Ok(db) => db,
            Err(e) if lock_taken(&e) => return Err(QueueError::InUse { path }),
            Err(sled::Error::Io(io)) if io.kind() != std::io::ErrorKind::InvalidData => {
                return Err(QueueError::io(&meta_path, &io));
            }
            Err(other) => return Err(corrupt(other.to_string())),
        };
        check_format(&path, &db, &meta_path)?;
        let messages = db
            .open_tree("messages")
            .map_err(|e| QueueError::sled(&meta_path, e))?;
        let bounces = db
            .open_tree("bounces")
            .map_err(|e| QueueError::sled(&meta_path, e))?;

        let retained = db
            .open_tree("retained")
            .map_err(|e| QueueError::sled(&meta_path, e))?;
        let mut index = Index::default();
        let mut live: HashMap<u32, u64> = HashMap::new();
        let mut done = Vec::new();
        let mut last = 0u64;
        for item in messages.iter() {
            let (key, value) = item.map_err(|e| QueueError::sled(&meta_path, e))?;
            let id = MessageId::from_key(&key)
                .ok_or_else(|| corrupt(format!("key of {} bytes in messages", key.len())))?;
            let msg = StoredMessage::decode(id, &value)
                .map_err(|e| corrupt(format!("message {id}: {e}")))?;
            last = last.max(id.0);
            if msg.is_done() {
                done.push(id);
                continue;
            }
            *live.entry(msg.body.segment).or_insert(0) += 1;
            index.add_message(id, &msg);
        }
        if !done.is_empty() {
            for id in &done {
                messages
                    .remove(id.key())
                    .map_err(|e| QueueError::sled(&meta_path, e))?;
            }
            db.flush().map_err(|e| QueueError::sled(&meta_path, e))?;
        }
        reset_incoming(&path.join("incoming"))?;
        let body_dir = path.join("bodies");
        let segments = Segments::open(
            body_dir.clone(),
            options.segment_bytes,
            live,
            options.faults.clone(),
        )?;
        let shared = Arc::new(QueueStore {
            path: path.clone(),
            db,
            messages,
            bounces,
            retained,
            index: Mutex::new(index),
            segments: Mutex::new(segments),
            body_dir,
            commit: CommitQueue::default(),
            options,
            bounces_taken: Mutex::new(HashSet::new()),
            last_id: AtomicU64::new(last),
        });
        let (to_meta, from_bodies) = mpsc::channel();
        let worker = shared.clone();
        let bodies = std::thread::Builder::new()
            .name("queue-bodies".into())
            .spawn(move || body_stage(&worker, &to_meta))
            .map_err(|e| QueueError::io(&path, &e))?;
        let worker = shared.clone();
        let meta = std::thread::Builder::new()
            .name("queue-meta".into())
            .spawn(move || meta_stage(&worker, &from_bodies))
            .map_err(|e| QueueError::io(&path, &e))?;
        Ok(Queue {
            shared,
            committers: vec![bodies, meta],
        })
    }

    /// The queue directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// A new spool file for a body too large to hold in memory; hand it to
    /// [`Queue::enqueue_transaction`] as [`Body::Spooled`]. Dropped unused,
    /// it deletes itself. A spool that could not be created or written
    /// carries its error to the commit, which refuses the transaction.
    pub fn spool(&self) -> Spool {
        Spool::create(
            &self.shared.path.join("incoming"),
            self.shared.options.faults.clone(),
        )
    }

    /// Store a message. Validation errors return at once; otherwise the
    /// returned [`Durable`] resolves when the message is on disk.
    ///
    /// Durability contract (what the SMTP server's `250` rests on):
    /// - `Ok(Durable)` means only "accepted for the next group commit";
    ///   the message is durable once [`Durable::wait`] returns `Ok` (its
    ///   body and record are flushed to disk, together with those of the
    ///   other writers of the same commit). Answer `250` only then.
    /// - If `wait` returns an error, or the process dies before it
    ///   returns, the message may or may not be on disk: the sender was not
    ///   told `250` and sends again, so a crash may store it twice, never
    ///   lose one that was acknowledged.
    /// - After a crash every stored recipient that is not final is due
    ///   again (leases live in memory only).
    pub fn enqueue(&self, message: NewMessage) -> Result<Durable, QueueError> {
        let (mut ids, slot) = self.submit(message.into())?;
        Ok(Durable {
            id: ids.remove(0),
            slot,
        })
    }

    /// Store one SMTP transaction: its body once, and one message per copy
    /// (destination group) pointing at it. Validation errors return at once;
    /// otherwise the returned [`DurableTransaction`] resolves when every copy
    /// is on disk, or fails with none of them stored. The body stays on disk
    /// until the last copy leaves the queue.
    pub fn enqueue_transaction(
        &self,
        transaction: NewTransaction,
    ) -> Result<DurableTransaction, QueueError> {
        let (ids, slot) = self.submit(transaction)?;
        Ok(DurableTransaction { ids, slot })
    }

    fn submit(
        &self,
        transaction: NewTransaction,
    ) -> Result<(Vec<MessageId>, Arc<Slot>), QueueError> {
        let opts = &self.shared.options;
        let limit = opts.max_recipients.min(usize::from(u16::MAX));
        if transaction.copies.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        if let Body::Spooled(spool) = &transaction.body {
            if let Some(e) = spool.error() {
                return Err(e.clone());
            }
        }
        for copy in &transaction.copies {
            let size = transaction.size_of(copy);
            if size > opts.max_body_bytes as u64 {
                return Err(QueueError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    limit: opts.max_body_bytes,
                });
            }
            if copy.recipients.is_empty() {
                return Err(QueueError::NoRecipients);
            }
            if copy.recipients.len() > limit {
                return Err(QueueError::TooManyRecipients {
                    count: copy.recipients.len(),
                    limit,
                });
            }
        }
        let now = to_ms(SystemTime::now());
        let ids: Vec<MessageId> = transaction
            .copies
            .iter()
            .map(|_| self.next_id(now))
            .collect();
        let slot = Arc::new(Slot::default());
        self.shared.commit.push_job(Job {
            ids: ids.clone(),
            transaction,
            slot: slot.clone(),
        })?;
        Ok((ids, slot))
    }

    /// Time-ordered id: `max(now << 20, last + 1)`.
    fn next_id(&self, now_ms: u64) -> MessageId {
        let floor = now_ms << 20;
        let mut cur = self.shared.last_id.load(Ordering::Relaxed);
        loop {
            let next = floor.max(cur + 1);
            match self.shared.last_id.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return MessageId(next),
                Err(seen) => cur = seen,
            }
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.shared.commit.close();
        for handle in self.committers.drain(..) {
            let _ = handle.join();
        }
    }
}

const FORMAT_KEY: &[u8] = b"sealpost-queue-format";
const FORMAT: &[u8] = b"1";

/// A queue directory carries a `FORMAT` file and the same marker inside sled.
/// If the file exists but sled lost the marker, sled's log was damaged and
/// recovered to an empty or older state: refuse to run on it.
fn check_format(path: &Path, db: &sled::Db, meta_path: &Path) -> Result<(), QueueError> {
    let marker = path.join("FORMAT");
    let stored = db
        .get(FORMAT_KEY)
        .map_err(|e| QueueError::sled(meta_path, e))?;
    let corrupt = |detail: &str| QueueError::CorruptStore {
        path: meta_path.to_path_buf(),
        detail: detail.to_string(),
    };
    match (marker.exists(), stored) {
        (true, Some(v)) if v.as_ref() == FORMAT => Ok(()),
        (_, Some(v)) => Err(corrupt(&format!(
            "unknown format marker {:?}",
            String::from_utf8_lossy(&v)
        ))),
        (true, None) => Err(corrupt(
            "the metadata log lost its contents (format marker missing)",
        )),
        (false, None) => {
            db.insert(FORMAT_KEY, FORMAT)
                .map_err(|e| QueueError::sled(meta_path, e))?;
            db.flush().map_err(|e| QueueError::sled(meta_path, e))?;
            std::fs::write(&marker, FORMAT).map_err(|e| QueueError::io(&marker, &e))?;
            std::fs::File::open(path)
                .and_then(|d| d.sync_all())
                .map_err(|e| QueueError::io(path, &e))
        }
    }
}

/// Stage 1 to stage 2 of the commit pipeline: bodies of one group are
/// synced (or failed); flush waiters ride along in order.
struct Synced {
    failed: Vec<(Arc<Slot>, QueueError)>,
    written: Vec<(Job, BodyLoc)>,
    flushes: Vec<Arc<Slot>>,
}

/// The location each copy of `job` records: the first copy owns the record,
/// the others name it as the owner.
fn copy_locs(job: &Job, loc: BodyLoc) -> impl Iterator<Item = BodyLoc> + '_ {
    let owner = job.ids.first().copied();
    (0..job.ids.len()).map(move |i| BodyLoc {
        owner: owner.filter(|_| i > 0),
        ..loc
    })
}

/// Stage 1: append the group's bodies and `fdatasync` once. Runs while
/// stage 2 flushes the previous group's metadata, so the two syncs overlap.
/// Each record counts its copies as holders from the append on, so nothing
/// later in the group (a rotation) or elsewhere (a release) unlinks it.
fn body_stage(shared: &QueueStore, to_meta: &mpsc::Sender<Synced>) {
    while let Some((jobs, flushes)) = shared.commit.next_group() {
        let mut failed = Vec::new();
        let mut written = Vec::with_capacity(jobs.len());
        if !jobs.is_empty() {
            let mut segments = lock(&shared.segments);
            for mut job in jobs {
                let Some(&owner) = job.ids.first() else {
                    job.slot.complete(Err(QueueError::NoRecipients));
                    continue;
                };
                let holders = job.ids.len() as u64;
                let appended = match &mut job.transaction.body {
                    Body::Memory(bytes) => segments.append(owner, bytes, holders),
                    Body::Spooled(spool) => segments.adopt(owner, spool, holders),
                };
                match appended {
                    Ok(loc) => written.push((job, loc)),
                    Err(e) => failed.push((job.slot, e)),
                }
            }
            if !written.is_empty() {
                if let Err(e) = segments.sync() {
                    for (job, loc) in written.drain(..) {
                        for _ in &job.ids {
                            segments.release(&loc);
                        }
                        failed.push((job.slot, e.clone()));
                    }
                }
            }
        }
        let synced = Synced {
            failed,
            written,
            flushes,
        };
        if let Err(mpsc::SendError(lost)) = to_meta.send(synced) {
            for (job, _) in lost.written {
                job.slot.complete(Err(QueueError::Closed));
            }
            for slot in lost.flushes {
                slot.complete(Err(QueueError::Closed));
            }
        }
    }
}

/// Stage 2: write the metadata of every synced group waiting (one sled
/// batch: every copy of a transaction lands together), flush once, then make
/// the messages visible and resolve waiters.
fn meta_stage(shared: &QueueStore, from_bodies: &mpsc::Receiver<Synced>) {
    let meta = shared.path.join("meta");
    while let Ok(first) = from_bodies.recv() {
        let mut groups = vec![first];
        groups.extend(from_bodies.try_iter());
        let mut batch = sled::Batch::default();
        let mut stored = Vec::new();
        for group in &groups {
            for (job, loc) in &group.written {
                let copies = job.ids.iter().zip(&job.transaction.copies);
                for ((id, copy), loc) in copies.zip(copy_locs(job, *loc)) {
                    let msg = stored_message(copy, loc);
                    batch.insert(&id.key(), msg.encode());
                    stored.push((*id, msg));
                }
            }
        }
        let result = shared
            .messages
            .apply_batch(batch)
            .and_then(|()| shared.db.flush().map(|_| ()))
            .map_err(|e| QueueError::sled(&meta, e));
        if result.is_ok() {
            let mut index = lock(&shared.index);
            for (id, msg) in &stored {
                index.add_message(*id, msg);
            }
        } else {
            // Not acknowledged: take the records back (best effort) so a
            // later flush does not persist messages their senders saw fail.
            for (id, _) in &stored {
                let _ = shared.messages.remove(id.key());
            }
            let mut segments = lock(&shared.segments);
            for (_, msg) in &stored {
                segments.release(&msg.body);
            }
        }
        for group in groups {
            for (slot, e) in group.failed {
                slot.complete(Err(e));
            }
            for (job, _) in group.written {
                job.slot.complete(result.clone());
            }
            for slot in group.flushes {
                slot.complete(result.clone());
            }
        }
    }
}

fn stored_message(m: &NewCopy, body: BodyLoc) -> StoredMessage {
    StoredMessage {
        tenant: m.tenant.clone(),
        mail_from: m.mail_from.clone(),
        mail_params: m.mail_params.clone(),
        policy: m.policy.clone(),
        tls_request: m.tls_request,
        arrived_ms: to_ms(m.arrived_at),
        body,
        trace: m.trace.clone(),
        recipients: m
            .recipients
            .iter()
            .map(|r| StoredRecipient {
                address: r.address.clone(),
                destination: r.destination.clone(),
                params: r.params.clone(),
                state: StoredState::Queued,
                attempts: Vec::new(),
            })
            .collect(),
        bounces_pending: 0,
        bounce_seq: 0,
    }
}
