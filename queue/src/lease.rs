//! Leasing due recipients to delivery workers and recording attempts.
//!
//! A [`Lease`] covers the due recipients of one message that share a
//! destination, so one SMTP transaction can carry them. A lease lives only in
//! memory. [`Queue::record_attempt`] writes the outcomes and is durable
//! before it returns and releases the lease.
//!
//! At-least-once: a recipient can be delivered twice when the process dies
//! (or the disk flush fails) after the peer accepted the message and before
//! `record_attempt` returned; after restart the recipient is due again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound::{Excluded, Unbounded};
use std::time::SystemTime;

use crate::backoff::{next_retry, Retry, RetryPolicy};
use crate::commit::lock;
use crate::index::{DueKey, Index};
use crate::record::{StoredMessage, StoredState};
use crate::segment::{read_body, BodyLoc};
use crate::types::{from_ms, to_ms, AcceptedPolicy, Attempt, AttemptRecord, Outcome, TlsRequest};
use crate::{MessageId, Queue, QueueError, Reason};

/// A leased recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedRecipient {
    pub index: u16,
    pub address: String,
    pub params: Vec<String>,
    /// Attempts made for this recipient before this lease.
    pub attempts: u32,
}

/// Exclusive right to attempt delivery of some recipients of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: MessageId,
    pub destination: String,
    pub tenant: String,
    pub mail_from: String,
    pub mail_params: Vec<String>,
    pub policy: AcceptedPolicy,
    /// REQUIRETLS or `TLS-Required: No` (RFC 8689): what the delivery
    /// attempt must honour besides `policy`.
    pub tls_request: TlsRequest,
    pub arrived_at: SystemTime,
    pub recipients: Vec<LeasedRecipient>,
    pub(crate) body: BodyLoc,
    pub(crate) trace: String,
}

/// What [`Queue::take_pending`] took.
#[derive(Debug)]
pub struct PendingBatch {
    pub leases: Vec<Lease>,
    /// Recipients leased (any tenant) when the batch was taken, e.g. in
    /// a delivery attempt: they wait again if the attempt defers them.
    pub leased: u64,
}

/// What identifies a lease: enough to give it back with
/// [`Queue::return_lease`] after the lease itself was consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKey {
    pub id: MessageId,
    pub recipients: Vec<u16>,
}

impl Lease {
    /// Octets of the message as delivered (trace header and body).
    pub fn size(&self) -> u64 {
        self.trace.len() as u64 + u64::from(self.body.len)
    }

    pub fn key(&self) -> LeaseKey {
        LeaseKey {
            id: self.id,
            recipients: self.recipients.iter().map(|r| r.index).collect(),
        }
    }
}

/// A recipient that failed or expired, for the DSN.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BouncedRecipient {
    pub address: String,
    pub params: Vec<String>,
    /// `true` when the lifetime ran out, `false` for a permanent failure.
    pub expired: bool,
    #[serde(deserialize_with = "crate::reason::stored")]
    pub reason: Reason,
}

/// A bounce (DSN) the engine owes the sender.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BounceDue {
    pub id: MessageId,
    pub seq: u32,
    pub tenant: String,
    pub mail_from: String,
    pub recipients: Vec<BouncedRecipient>,
    /// The original message's TLS request (RFC 8689): a REQUIRETLS
    /// message's DSN returns none of its content (section 5). Records
    /// written before this field read as none.
    #[serde(default, skip_serializing_if = "TlsRequest::is_none")]
    pub tls_request: TlsRequest,
}

pub(crate) fn bounce_key(id: MessageId, seq: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&id.key());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

impl Queue {
    /// Lease up to `max` messages with recipients for `destination` due at `now`.
    pub fn take_due(
        &self,
        now: SystemTime,
        destination: &str,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let mut index = lock(&self.shared.index);
        let Some(set) = index.due_by_destination.get(destination) else {
            return Ok(Vec::new());
        };
        let picks = first_due(set, to_ms(now), max, &index);
        self.lease_picks(&mut index, now, picks, Some(destination), max)
    }

    /// Lease the due recipients of up to `max` messages of `tenant` (one
    /// lease per destination).
    pub fn take_due_tenant(
        &self,
        now: SystemTime,
        tenant: &str,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let mut index = lock(&self.shared.index);
        let Some(set) = index.due_by_tenant.get(tenant) else {
            return Ok(Vec::new());
        };
        let picks = first_due(set, to_ms(now), max, &index);
        self.lease_picks(&mut index, now, picks, None, max)
    }

    /// Like [`Queue::take_due_tenant`], but each destination of the tenant
    /// gets at most `room(destination)` leases from this call (`0`: none),
    /// so a scheduler can cap what one tenant has under way per next hop.
    /// Leases come oldest due first across the destinations with room (a
    /// merge of the tenant's per-destination due keys: destinations
    /// without room are passed over without walking their mail). At most
    /// `max` leases.
    pub fn take_due_tenant_within(
        &self,
        now: SystemTime,
        tenant: &str,
        max: usize,
        room: &dyn Fn(&str) -> usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let now_ms = to_ms(now);
        let mut index = lock(&self.shared.index);
        let mut left: HashMap<String, usize> = HashMap::new();
        let mut heads: BinaryHeap<Reverse<(DueKey, String)>> = BinaryHeap::new();
        if let Some(by_destination) = index.due_by_tenant_destination.get(tenant) {
            for (destination, set) in by_destination {
                let n = room(destination).min(max);
                let Some(first) = set.first().filter(|k| k.0 <= now_ms) else {
                    continue;
                };
                if n > 0 {
                    left.insert(destination.clone(), n);
                    heads.push(Reverse((*first, destination.clone())));
                }
            }
        }
        let mut leases: Vec<Lease> = Vec::new();
        while let Some(Reverse((key, destination))) = heads.pop() {
            if leases.len() >= max {
                break;
            }
            if left.get(&destination).is_some_and(|n| *n > 0) {
                let mut open_group = |d: &str| match left.get_mut(d) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    // A destination not seen due at the start (its first
                    // key is later) has no room counted: ask.
                    Some(_) => false,
                    None => {
                        let n = room(d).min(max);
                        left.insert(d.to_string(), n.saturating_sub(1));
                        n > 0
                    }
                };
                let got = self.lease_message(
                    &mut index,
                    now_ms,
                    key.1,
                    &mut open_group,
                    max - leases.len(),
                )?;
                leases.extend(got);
            }
            if left.get(&destination).is_some_and(|n| *n > 0) {
                let next = index
                    .due_by_tenant_destination
                    .get(tenant)
                    .and_then(|m| m.get(&destination))
                    .and_then(|set| set.range((Excluded(key), Unbounded)).next())
                    .filter(|k| k.0 <= now_ms)
                    .copied();
                if let Some(next) = next {
                    heads.push(Reverse((next, destination)));
                }
            }
        }
        Ok(leases)
    }

    /// The tenants with a recipient due at `now` (leased ones included:
    /// [`Queue::take_due_tenant`] skips those), for a scheduler that shares
    /// delivery slots between tenants. One look at each tenant's earliest
    /// due key; no scan.
    pub fn due_tenants(&self, now: SystemTime) -> Vec<String> {
        let index = lock(&self.shared.index);
        let now_ms = to_ms(now);
        let mut tenants: Vec<String> = index
            .due_by_tenant
            .iter()
            .filter(|(_, set)| set.first().is_some_and(|key| key.0 <= now_ms))
            .map(|(tenant, _)| tenant.clone())
            .collect();
        tenants.sort();
        tenants
    }

    /// Lease up to `max` (message, destination) groups due at `now`, any
    /// destination. A message's due recipients for every destination are
    /// leased together (one lease per destination), oldest due first.
    pub fn take_due_any(&self, now: SystemTime, max: usize) -> Result<Vec<Lease>, QueueError> {
        let mut index = lock(&self.shared.index);
        let picks = first_due(&index.due, to_ms(now), max, &index);
        self.lease_picks(&mut index, now, picks, None, max)
    }

    /// Lease up to `max` (message, destination) groups whose recipients
    /// wait for delivery, whenever they are due (queued or deferred, not
    /// held, not leased), of `tenant` only when given: for handing the
    /// queue to another node (`sealpost queue drain`). Oldest due first.
    /// The caller records each lease as delivered once the other node
    /// accepted it, or gives it back with [`Queue::return_lease`].
    /// The batch also says how many recipients were leased (by anyone)
    /// just before, read under the same lock: with no lease and none
    /// leased, nothing was waiting at that moment.
    pub fn take_pending(
        &self,
        tenant: Option<&str>,
        max: usize,
    ) -> Result<PendingBatch, QueueError> {
        // Every due time is before this one (about the year 2500).
        let whenever = from_ms(16_725_225_600_000);
        let mut index = lock(&self.shared.index);
        let leased = index
            .counts
            .by_state
            .get(&crate::StateKind::Active)
            .copied()
            .unwrap_or(0);
        let set = match tenant {
            Some(t) => index.due_by_tenant.get(t),
            None => Some(&index.due),
        };
        let picks = set.map_or_else(Vec::new, |set| first_due(set, to_ms(whenever), max, &index));
        let leases = self.lease_picks(&mut index, whenever, picks, None, max)?;
        Ok(PendingBatch { leases, leased })
    }

    pub(crate) fn load(&self, id: MessageId) -> Result<Option<StoredMessage>, QueueError> {
        let value = self
            .shared
            .messages
            .get(id.key())
            .map_err(|e| QueueError::sled(self.shared.path.join("meta"), e))?;
        value.map(|v| StoredMessage::decode(id, &v)).transpose()
    }

    pub(crate) fn store(&self, id: MessageId, msg: &StoredMessage) -> Result<(), QueueError> {
        self.shared
            .messages
            .insert(id.key(), msg.encode())
            .map(|_| ())
            .map_err(|e| QueueError::sled(self.shared.path.join("meta"), e))
    }

    fn lease_picks(
        &self,
        index: &mut Index,
        now: SystemTime,
        picks: Vec<MessageId>,
        only: Option<&str>,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let now_ms = to_ms(now);
        let mut leases: Vec<Lease> = Vec::with_capacity(picks.len());
        let mut wanted = |destination: &str| only.is_none_or(|d| d == destination);
        for id in picks {
            let room = max.saturating_sub(leases.len());
            leases.extend(self.lease_message(index, now_ms, id, &mut wanted, room)?);
            if leases.len() >= max {
                break;
            }
        }
        Ok(leases)
    }

    /// Leases the due recipients of message `id`, one lease per
    /// destination, at most `max` leases. `open_group(destination)` is
    /// asked once per destination before its lease is started: `false`
    /// leaves that destination's recipients due.
    fn lease_message(
        &self,
        index: &mut Index,
        now_ms: u64,
        id: MessageId,
        open_group: &mut dyn FnMut(&str) -> bool,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let Some(msg) = self.load(id)? else {
            return Ok(Vec::new());
        };
        let mut groups: BTreeMap<&str, Vec<LeasedRecipient>> = BTreeMap::new();
        let mut refused: BTreeSet<&str> = BTreeSet::new();
        for (i, r) in msg.recipients.iter().enumerate() {
            let idx = i as u16;
            let due = index
                .due_ms(id, idx, msg.arrived_ms, r)
                .is_some_and(|d| d <= now_ms);
            if !due || index.is_active(id, idx) || refused.contains(r.destination.as_str()) {
                continue;
            }
            let new_group = !groups.contains_key(r.destination.as_str());
            if new_group && (groups.len() >= max || !open_group(&r.destination)) {
                refused.insert(&r.destination);
                continue;
            }
            index.lease(id, idx, msg.arrived_ms, &msg.tenant, r);
            groups
                .entry(&r.destination)
                .or_default()
                .push(LeasedRecipient {
                    index: idx,
                    address: r.address.clone(),
                    params: r.params.clone(),
                    attempts: r.attempts.len() as u32,
                });
        }
        Ok(groups
            .into_iter()
            .map(|(destination, recipients)| Lease {
                id,
                destination: destination.to_string(),
                tenant: msg.tenant.clone(),
                mail_from: msg.mail_from.clone(),
                mail_params: msg.mail_params.clone(),
                policy: msg.policy.clone(),
                tls_request: msg.tls_request,
                arrived_at: from_ms(msg.arrived_ms),
                recipients,
                body: msg.body,
                trace: msg.trace.clone(),
            })
            .collect())
    }

    /// Give `lease` back without an outcome, because its attempt panicked or
    /// its record could not be written: nothing is written, the recipients
    /// keep their stored state and are due again at `not_before` (in this
    /// process; after a restart they are due at once, as every lease). The
    /// message's lifetime still applies at the next attempt. Recipients no
    /// longer leased are skipped. Returns how many were given back.
    pub fn return_lease(&self, lease: &LeaseKey, not_before: SystemTime) -> usize {
        let mut index = lock(&self.shared.index);
        let Ok(Some(msg)) = self.load(lease.id) else {
            return 0;
        };
        let mut returned = 0;
        for &i in &lease.recipients {
            let Some(r) = msg.recipients.get(usize::from(i)) else {
                continue;
            };
            if index.is_active(lease.id, i) {
                index.unlease(
                    lease.id,
                    i,
                    msg.arrived_ms,
                    &msg.tenant,
                    r,
                    to_ms(not_before),
                );
                returned += 1;
            }
        }
        returned
    }

    /// The leased message's body, checked against its checksum.
    pub fn read_body(&self, lease: &Lease) -> Result<Vec<u8>, QueueError> {
        read_body(
            &self.shared.body_dir,
            lease.id,
            &lease.body,
            self.shared.options.max_body_bytes,
            lease.trace.as_bytes(),
        )
    }

    /// Record one attempt's outcomes (by recipient index) and release the
    /// lease; durable before it returns.
    ///
    /// Durability contract: `Ok` means the outcomes, the attempt and any
    /// bounce record are flushed to disk. Until then the recipients stay
    /// leased in memory only: if this returns an error the caller gives
    /// the lease back (`return_lease`), and if the process dies first the
    /// recipients are due again after the restart, so a crash between a
    /// remote `250` and this call may deliver a message twice
    /// (at-least-once), never drop it. A deferral is never recorded as
    /// delivered, and a bounce record is written in the same commit as
    /// the failure it reports. Leased recipients without an outcome
    /// are deferred with the attempt's `reply_or_reason`. Temporary failures
    /// are scheduled by [`next_retry`] with the tenant's `policy`; past the
    /// lifetime they expire and a bounce record is written.
    pub fn record_attempt(
        &self,
        lease: Lease,
        outcomes: &[(u16, Outcome)],
        attempt: Attempt,
        policy: &RetryPolicy,
    ) -> Result<(), QueueError> {
        let lost = || QueueError::LeaseLost {
            id: lease.id.to_string(),
            destination: lease.destination.clone(),
        };
        for (idx, _) in outcomes {
            if !lease.recipients.iter().any(|r| r.index == *idx) {
                return Err(QueueError::NotLeased {
                    id: lease.id.to_string(),
                    index: *idx,
                });
            }
        }
        let faults = &self.shared.options.faults;
        if faults
            .fail_records
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            faults
                .records_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(QueueError::Io {
                path: self.shared.path.join("meta"),
                detail: "injected: the attempt record could not be written".into(),
            });
        }
        let id = lease.id;
        let release;
        {
            let mut index = lock(&self.shared.index);
            let Some(mut msg) = self.load(id)? else {
                return Err(lost());
            };
            if lease
                .recipients
                .iter()
                .any(|r| !index.is_active(id, r.index))
            {
                return Err(lost());
            }
            let mut bounced = Vec::new();
            for leased in &lease.recipients {
                let outcome = outcomes
                    .iter()
                    .find(|(i, _)| *i == leased.index)
                    .map(|(_, o)| o.clone())
                    .unwrap_or_else(|| Outcome::Deferred {
                        reason: attempt.reply_or_reason.clone(),
                    });
                let Some(r) = msg.recipients.get_mut(usize::from(leased.index)) else {
                    return Err(lost());
                };
                index.remove_recipient(id, leased.index, msg.arrived_ms, &msg.tenant, r);
                r.attempts.push(AttemptRecord {
                    attempt: attempt.clone(),
                    outcome: outcome.clone(),
                });
                r.state = match &outcome {
                    Outcome::Delivered { .. } => StoredState::Delivered,
                    Outcome::Failed { reason } => {
                        bounced.push((leased.index, false, reason.clone()));
                        StoredState::Failed
                    }
                    Outcome::Deferred { reason } => {
                        // One seed per message and attempt: recipients deferred together
                        // are retried together, in one transaction.
                        let seed = id.0 ^ r.attempts.len() as u64;
                        match next_retry(
                            policy,
                            r.attempts.len() as u32,
                            from_ms(msg.arrived_ms),
                            attempt.at,
                            seed,
                        ) {
                            Retry::At(t) => StoredState::Deferred { next_ms: to_ms(t) },
                            Retry::Expired => {
                                bounced.push((leased.index, true, reason.clone()));
                                StoredState::Expired
                            }
                        }
                    }
                };
                index.add_recipient(id, leased.index, msg.arrived_ms, &msg.tenant, r);
            }
            release = self.finish_update(&mut index, id, &mut msg, bounced)?;
        }
        self.shared.commit.sync()?;
        if let Some(loc) = release {
            lock(&self.shared.segments).release(&loc);
        }
        Ok(())
    }

    /// Write a bounce record for `bounced` (if any) and store the message, or
    /// remove it when done. Returns the body to release after the flush.
    pub(crate) fn finish_update(
        &self,
        index: &mut Index,
        id: MessageId,
        msg: &mut StoredMessage,
        bounced: Vec<(u16, bool, Reason)>,
    ) -> Result<Option<BodyLoc>, QueueError> {
        let meta = || self.shared.path.join("meta");
        if !bounced.is_empty() {
            let record = BounceDue {
                id,
                seq: msg.bounce_seq,
                tenant: msg.tenant.clone(),
                mail_from: msg.mail_from.clone(),
                tls_request: msg.tls_request,
                recipients: bounced
                    .into_iter()
                    .filter_map(|(i, expired, reason)| {
                        let r = msg.recipients.get(usize::from(i))?;
                        Some(BouncedRecipient {
                            address: r.address.clone(),
                            params: r.params.clone(),
                            expired,
                            reason,
                        })
                    })
                    .collect(),
            };
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            self.shared
                .bounces
                .insert(bounce_key(id, msg.bounce_seq), bytes)
                .map_err(|e| QueueError::sled(meta(), e))?;
            msg.bounce_seq += 1;
            msg.bounces_pending += 1;
        }
        if msg.is_done() {
            self.shared
                .messages
                .remove(id.key())
                .map_err(|e| QueueError::sled(meta(), e))?;
            self.retain(id, msg)?;
            index.remove_message(id, msg);
            Ok(Some(msg.body))
        } else {
            self.store(id, msg)?;
            Ok(None)
        }
    }
}

impl Queue {
    /// Keep a finished message's record for `retain_done`, and drop records
    /// kept longer than that (a range walk from the oldest).
    fn retain(&self, id: MessageId, msg: &StoredMessage) -> Result<(), QueueError> {
        let Some(keep) = self.shared.options.retain_done else {
            return Ok(());
        };
        let meta = || self.shared.path.join("meta");
        let now = to_ms(SystemTime::now());
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&now.to_be_bytes());
        key[8..].copy_from_slice(&id.key());
        let tree = &self.shared.retained;
        tree.insert(key, msg.encode())
            .map_err(|e| QueueError::sled(meta(), e))?;
        let cutoff = now.saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        for item in tree.range(..cutoff.to_be_bytes().to_vec()) {
            let (old, _) = item.map_err(|e| QueueError::sled(meta(), e))?;
            tree.remove(old).map_err(|e| QueueError::sled(meta(), e))?;
        }
        Ok(())
    }

    /// A finished message kept by `retain_done`.
    pub(crate) fn retained(&self, id: MessageId) -> Result<Option<StoredMessage>, QueueError> {
        for item in self.shared.retained.iter() {
            let (key, value) =
                item.map_err(|e| QueueError::sled(self.shared.path.join("meta"), e))?;
            if key.get(8..16) == Some(&id.key()[..]) {
                return StoredMessage::decode(id, &value).map(Some);
            }
        }
        Ok(None)
    }
}

/// The first `max` distinct messages with a recipient in `set` due by
/// `now_ms` and not leased.
fn first_due(set: &BTreeSet<DueKey>, now_ms: u64, max: usize, index: &Index) -> Vec<MessageId> {
    let mut picks: Vec<MessageId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for key in set.range(..(now_ms.saturating_add(1), MessageId(0), 0)) {
        if picks.len() >= max {
            break;
        }
        if !index.is_active(key.1, key.2) && seen.insert(key.1) {
            picks.push(key.1);
        }
    }
    picks
}
