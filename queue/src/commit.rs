//! Group commit: writers hand their message to the commit pipeline and get a
//! [`Durable`]. Stage 1 (thread `queue-bodies`) takes everything pending,
//! appends the bodies and `fdatasync`s once; stage 2 (thread `queue-meta`)
//! writes the metadata of every synced group in one sled batch, `flush`es
//! once, and only then resolves each `Durable`. While stage 2 flushes group
//! N, stage 1 syncs group N+1. Other durable state changes (attempts,
//! operator actions) join the next metadata flush as waiters.
//!
//! `Durable` can be waited on blocking ([`Durable::wait`]) or awaited (it is a
//! `std::future::Future`, woken from the commit thread; no runtime needed).
//! sled's `flush_async` is not used: awaited concurrently it hangs (sled #1308).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::{MessageId, NewTransaction, QueueError};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct SlotState {
    done: Option<Result<(), QueueError>>,
    waker: Option<Waker>,
}

/// One waiter's completion cell.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

impl Slot {
    pub fn complete(&self, result: Result<(), QueueError>) {
        let waker = {
            let mut st = lock(&self.state);
            st.done = Some(result);
            st.waker.take()
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        let mut st = lock(&self.state);
        match st.done.clone() {
            Some(result) => Poll::Ready(result),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    pub fn wait(&self) -> Result<(), QueueError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(done) = st.done.clone() {
                return done;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Resolves once the message is on disk (body synced, metadata flushed).
///
/// Contract: when this yields `Ok(id)`, the message survives any crash of
/// the process or the machine (as far as the disk honours `fdatasync`); the
/// SMTP server replies 250 only then. `Err` means it was not stored (an
/// error of kind [`QueueError::DiskFull`] maps to 452).
#[must_use = "the message is durable only when this resolves"]
pub struct Durable {
    pub(crate) id: MessageId,
    pub(crate) slot: Arc<Slot>,
}

impl Durable {
    /// The id the message will have (already assigned, not yet durable).
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// Block until the group holding this message is flushed.
    pub fn wait(self) -> Result<MessageId, QueueError> {
        self.slot.wait().map(|()| self.id)
    }
}

impl Future for Durable {
    type Output = Result<MessageId, QueueError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot.poll(cx).map(|done| done.map(|()| self.id))
    }
}

/// Resolves once every message of a transaction is on disk, or with the one
/// error that kept all of them out: the same contract as [`Durable`], for
/// all the transaction's messages at once (one `250` or one `4xx`).
#[must_use = "the messages are durable only when this resolves"]
pub struct DurableTransaction {
    pub(crate) ids: Vec<MessageId>,
    pub(crate) slot: Arc<Slot>,
}

impl DurableTransaction {
    /// The ids the messages will have, in the order of the copies.
    pub fn ids(&self) -> &[MessageId] {
        &self.ids
    }

    /// Block until the transaction is flushed.
    pub fn wait(self) -> Result<Vec<MessageId>, QueueError> {
        self.slot.wait().map(|()| self.ids)
    }
}

impl Future for DurableTransaction {
    type Output = Result<Vec<MessageId>, QueueError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot
            .poll(cx)
            .map(|done| done.map(|()| self.ids.clone()))
    }
}

/// One transaction on its way to disk: `ids[i]` is the id of `copies[i]`.
pub(crate) struct Job {
    pub ids: Vec<MessageId>,
    pub transaction: NewTransaction,
    pub slot: Arc<Slot>,
}

#[derive(Default)]
pub(crate) struct Pending {
    pub jobs: Vec<Job>,
    /// Waiters that only need the next sled flush.
    pub flushes: Vec<Arc<Slot>>,
    pub closed: bool,
}

/// The hand-off between writers and the commit thread.
#[derive(Default)]
pub(crate) struct CommitQueue {
    pub pending: Mutex<Pending>,
    pub cv: Condvar,
}

impl CommitQueue {
    pub fn push_job(&self, job: Job) -> Result<(), QueueError> {
        let mut p = lock(&self.pending);
        if p.closed {
            return Err(QueueError::Closed);
        }
        p.jobs.push(job);
        drop(p);
        self.cv.notify_one();
        Ok(())
    }

    /// Wait until everything written to sled so far is flushed.
    pub fn sync(&self) -> Result<(), QueueError> {
        let slot = Arc::new(Slot::default());
        {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(QueueError::Closed);
            }
            p.flushes.push(slot.clone());
        }
        self.cv.notify_one();
        slot.wait()
    }

    /// Take the next group; `None` once closed and drained.
    pub fn next_group(&self) -> Option<(Vec<Job>, Vec<Arc<Slot>>)> {
        let mut p = lock(&self.pending);
        loop {
            if !p.jobs.is_empty() || !p.flushes.is_empty() {
                return Some((std::mem::take(&mut p.jobs), std::mem::take(&mut p.flushes)));
            }
            if p.closed {
                return None;
            }
            p = self.cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn close(&self) {
        lock(&self.pending).closed = true;
        self.cv.notify_all();
    }
}
