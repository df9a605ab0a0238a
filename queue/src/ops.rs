//! Operations for the admin socket: list with filters and cursor pages, show,
//! hold/release, retry now, delete, bounce now, counts, and the bounce
//! records the DSN code consumes. Every change is durable before it returns.
//!
//! Listing walks the `messages` tree from the cursor (ids are time-ordered,
//! so pages come oldest first); counts come from the in-memory counters.

use std::time::SystemTime;

use crate::commit::lock;
use crate::index::{Counts, Index};
use crate::lease::{bounce_key, BounceDue};
use crate::record::{StoredMessage, StoredState};
use crate::segment::read_body;
use crate::types::to_ms;
use crate::{MessageId, MessageInfo, Queue, QueueError, StateKind};

/// Filter for [`Queue::list`]; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub tenant: Option<String>,
    /// Exact MAIL FROM (case-insensitive).
    pub sender: Option<String>,
    /// A recipient address, or a domain (matches `...@domain`), case-insensitive.
    pub recipient: Option<String>,
    /// Some recipient is in this state.
    pub state: Option<StateKind>,
    /// Arrived at or before this time (age at least ...).
    pub arrived_before: Option<SystemTime>,
    /// Arrived at or after this time.
    pub arrived_after: Option<SystemTime>,
    /// Substring of some attempt's reply or reason (case-insensitive).
    pub reason_contains: Option<String>,
}

/// One page of [`Queue::list`]; pass `next` as `after` for the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<MessageInfo>,
    pub next: Option<MessageId>,
}

fn matches(filter: &ListFilter, info: &MessageInfo) -> bool {
    let lower = |s: &str| s.to_ascii_lowercase();
    if filter.tenant.as_ref().is_some_and(|t| *t != info.tenant) {
        return false;
    }
    if filter
        .sender
        .as_ref()
        .is_some_and(|s| lower(s) != lower(&info.mail_from))
    {
        return false;
    }
    if let Some(want) = &filter.recipient {
        let want = lower(want);
        let hit = info.recipients.iter().any(|r| {
            let addr = lower(&r.address);
            addr == want || addr.rsplit_once('@').is_some_and(|(_, d)| d == want)
        });
        if !hit {
            return false;
        }
    }
    if let Some(state) = filter.state {
        if !info.recipients.iter().any(|r| r.state.kind() == state) {
            return false;
        }
    }
    if filter.arrived_before.is_some_and(|t| info.arrived_at > t)
        || filter.arrived_after.is_some_and(|t| info.arrived_at < t)
    {
        return false;
    }
    if let Some(needle) = &filter.reason_contains {
        let needle = lower(needle);
        let hit = info.recipients.iter().flat_map(|r| &r.attempts).any(|a| {
            // A search of the rendered text, as people read it (nothing is
            // parsed back from it).
            lower(&a.outcome.reason().to_string()).contains(&needle)
                || lower(&a.attempt.reply_or_reason.to_string()).contains(&needle)
        });
        if !hit {
            return false;
        }
    }
    true
}

impl Queue {
    /// Messages matching `filter` with ids after `after`, at most `limit`.
    pub fn list(
        &self,
        filter: &ListFilter,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, QueueError> {
        let start = after
            .map(|id| (id.0.saturating_add(1)).to_be_bytes())
            .unwrap_or([0; 8]);
        let mut items = Vec::new();
        let mut next = None;
        for item in self.shared.messages.range(start..) {
            let (key, value) =
                item.map_err(|e| QueueError::sled(self.shared.path.join("meta"), e))?;
            let Some(id) = MessageId::from_key(&key) else {
                continue;
            };
            let msg = StoredMessage::decode(id, &value)?;
            let info = {
                let index = lock(&self.shared.index);
                msg.info(id, |i| index.is_active(id, i))
            };
            if !matches(filter, &info) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|m: &MessageInfo| m.id);
                break;
            }
            items.push(info);
        }
        Ok(Page { items, next })
    }

    /// One message with every recipient's attempts (also a finished one
    /// while `QueueOptions::retain_done` keeps it).
    pub fn show(&self, id: MessageId) -> Result<MessageInfo, QueueError> {
        let index = lock(&self.shared.index);
        let msg = match self.load(id)? {
            Some(msg) => msg,
            None => self
                .retained(id)?
                .ok_or(QueueError::NotFound { id: id.to_string() })?,
        };
        Ok(msg.info(id, |i| index.is_active(id, i)))
    }

    /// The body of a stored message (e.g. for a DSN).
    pub fn message_body(&self, id: MessageId) -> Result<Vec<u8>, QueueError> {
        let msg = self
            .load(id)?
            .ok_or(QueueError::NotFound { id: id.to_string() })?;
        read_body(
            &self.shared.body_dir,
            id,
            &msg.body,
            self.shared.options.max_body_bytes,
            msg.trace.as_bytes(),
        )
    }

    /// Counts by state, tenant and destination (no scan).
    pub fn counts(&self) -> Counts {
        lock(&self.shared.index).counts.clone()
    }

    /// What `tenant` has stored: (messages, octets), for its quotas. No scan.
    pub fn tenant_usage(&self, tenant: &str) -> (u64, u64) {
        let index = lock(&self.shared.index);
        let counts = &index.counts;
        (
            counts.by_tenant.get(tenant).copied().unwrap_or(0),
            counts.bytes_by_tenant.get(tenant).copied().unwrap_or(0),
        )
    }

    /// Apply `change` to every recipient not leased; returns how many changed.
    fn modify(
        &self,
        id: MessageId,
        mut change: impl FnMut(StoredState) -> Option<StoredState>,
        bounce_reason: Option<&str>,
    ) -> Result<usize, QueueError> {
        let release;
        let mut changed = 0;
        {
            let mut index = lock(&self.shared.index);
            let mut msg = self
                .load(id)?
                .ok_or(QueueError::NotFound { id: id.to_string() })?;
            let mut bounced = Vec::new();
            for i in 0..msg.recipients.len() {
                let idx = i as u16;
                let active = index.is_active(id, idx);
                let r = &mut msg.recipients[i];
                // Leased recipients change only when bouncing (the lease is lost).
                if active && bounce_reason.is_none() {
                    continue;
                }
                let Some(new) = change(r.state) else { continue };
                index.remove_recipient(id, idx, msg.arrived_ms, &msg.tenant, r);
                r.state = new;
                index.add_recipient(id, idx, msg.arrived_ms, &msg.tenant, r);
                if let Some(reason) = bounce_reason {
                    bounced.push((idx, false, crate::Reason::operator(reason)));
                }
                changed += 1;
            }
            if changed == 0 {
                return Ok(0);
            }
            release = self.finish_update(&mut index, id, &mut msg, bounced)?;
        }
        self.shared.commit.sync()?;
        if let Some(loc) = release {
            lock(&self.shared.segments).release(&loc);
        }
        Ok(changed)
    }

    /// Hold every waiting recipient (leased ones finish their attempt first).
    pub fn hold(&self, id: MessageId) -> Result<usize, QueueError> {
        self.modify(
            id,
            |s| {
                matches!(s, StoredState::Queued | StoredState::Deferred { .. })
                    .then_some(StoredState::Held)
            },
            None,
        )
    }

    /// Release held recipients: due at `now`.
    pub fn release(&self, id: MessageId, now: SystemTime) -> Result<usize, QueueError> {
        let now = to_ms(now);
        self.modify(
            id,
            |s| (s == StoredState::Held).then_some(StoredState::Deferred { next_ms: now }),
            None,
        )
    }

    /// Make deferred recipients due at `now`.
    pub fn retry_now(&self, id: MessageId, now: SystemTime) -> Result<usize, QueueError> {
        let now = to_ms(now);
        self.modify(
            id,
            |s| {
                matches!(s, StoredState::Deferred { next_ms } if next_ms > now)
                    .then_some(StoredState::Deferred { next_ms: now })
            },
            None,
        )
    }

    /// Fail every non-final recipient now and owe a bounce for them.
    pub fn bounce_now(&self, id: MessageId, reason: &str) -> Result<usize, QueueError> {
        self.modify(
            id,
            |s| (!s.is_final()).then_some(StoredState::Failed),
            Some(reason),
        )
    }

    /// Remove a message, its bounce records and its body. Leases on it are lost.
    pub fn delete(&self, id: MessageId) -> Result<(), QueueError> {
        let meta = || self.shared.path.join("meta");
        let body;
        {
            let mut index = lock(&self.shared.index);
            let msg = self
                .load(id)?
                .ok_or(QueueError::NotFound { id: id.to_string() })?;
            for seq in 0..msg.bounce_seq {
                self.shared
                    .bounces
                    .remove(bounce_key(id, seq))
                    .map_err(|e| QueueError::sled(meta(), e))?;
            }
            self.shared
                .messages
                .remove(id.key())
                .map_err(|e| QueueError::sled(meta(), e))?;
            index.remove_message(id, &msg);
            body = msg.body;
        }
        self.shared.commit.sync()?;
        lock(&self.shared.segments).release(&body);
        Ok(())
    }

    /// Up to `max` bounces owed and not yet handed out by this process.
    /// After a crash, bounces handed out but not completed are handed out again.
    pub fn take_bounces(&self, max: usize) -> Result<Vec<BounceDue>, QueueError> {
        let mut taken = lock(&self.shared.bounces_taken);
        let mut out = Vec::new();
        for item in self.shared.bounces.iter() {
            if out.len() >= max {
                break;
            }
            let (key, value) =
                item.map_err(|e| QueueError::sled(self.shared.path.join("meta"), e))?;
            let record: BounceDue =
                serde_json::from_slice(&value).map_err(|e| QueueError::CorruptRecord {
                    id: MessageId::from_key(&key)
                        .map(|i| i.to_string())
                        .unwrap_or_default(),
                    detail: format!("bounce record: {e}"),
                })?;
            if taken.insert((record.id, record.seq)) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Hands `bounce` back: its DSN could not be queued, so a later
    /// [`Queue::take_bounces`] returns it again.
    pub fn untake_bounce(&self, bounce: &BounceDue) {
        lock(&self.shared.bounces_taken).remove(&(bounce.id, bounce.seq));
    }

    /// The DSN for `bounce` is queued: forget the record (durable).
    pub fn bounce_done(&self, bounce: &BounceDue) -> Result<(), QueueError> {
        let meta = || self.shared.path.join("meta");
        let release;
        {
            let mut index: std::sync::MutexGuard<'_, Index> = lock(&self.shared.index);
            let removed = self
                .shared
                .bounces
                .remove(bounce_key(bounce.id, bounce.seq))
                .map_err(|e| QueueError::sled(meta(), e))?;
            lock(&self.shared.bounces_taken).remove(&(bounce.id, bounce.seq));
            release = match (removed, self.load(bounce.id)?) {
                (Some(_), Some(mut msg)) => {
                    msg.bounces_pending = msg.bounces_pending.saturating_sub(1);
                    self.finish_update(&mut index, bounce.id, &mut msg, Vec::new())?
                }
                _ => None,
            };
        }
        self.shared.commit.sync()?;
        if let Some(loc) = release {
            lock(&self.shared.segments).release(&loc);
        }
        Ok(())
    }
}
