//! In-memory due-time index and counters, rebuilt from the metadata at open.
//!
//! `due` is ordered by (due millisecond, message id, recipient index), and
//! `due_by_destination` / `due_by_tenant` / `due_by_tenant_destination` hold
//! the same keys per destination, per tenant and per (tenant, destination),
//! so "everything due now, at most N" is a range walk from the start (or a
//! merge of a tenant's per-destination walks): no scan of the store. Only
//! recipients not leased have keys.
//! Leases (`active`) live only here; after a crash they are simply absent and
//! the recipients' persisted states make them due again. So does
//! `not_before`: a lease given back without an outcome (a panicked attempt,
//! a record that could not be written) is due again no earlier than that, in
//! this process, so it is neither stuck until a restart nor retried in a
//! tight loop. Any state change of the recipient clears it. Counts are kept
//! incrementally on every transition.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::record::{StoredMessage, StoredRecipient};
use crate::{MessageId, StateKind};

pub(crate) type DueKey = (u64, MessageId, u16);

/// Counts of recipients by state and destination, and of messages by tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Recipients per state (final states count recipients of messages still
    /// stored, e.g. while their bounce is pending).
    pub by_state: BTreeMap<StateKind, u64>,
    /// Messages stored per tenant.
    pub by_tenant: BTreeMap<String, u64>,
    /// Octets stored per tenant (each message's size as delivered: a body
    /// shared by several messages counts once for each).
    pub bytes_by_tenant: BTreeMap<String, u64>,
    /// Non-final recipients per destination.
    pub by_destination: BTreeMap<String, u64>,
}

#[derive(Default)]
pub(crate) struct Index {
    pub due: BTreeSet<DueKey>,
    pub due_by_destination: HashMap<String, BTreeSet<DueKey>>,
    pub due_by_tenant: HashMap<String, BTreeSet<DueKey>>,
    /// Tenant -> destination -> keys: leasing a tenant's mail can pass over
    /// the destinations it may not send more to.
    pub due_by_tenant_destination: HashMap<String, HashMap<String, BTreeSet<DueKey>>>,
    pub active: HashSet<(MessageId, u16)>,
    /// In-memory earliest due time of recipients whose lease was returned.
    pub not_before: HashMap<(MessageId, u16), u64>,
    pub counts: Counts,
}

fn decrement<K: Ord>(map: &mut BTreeMap<K, u64>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Index {
    pub fn is_active(&self, id: MessageId, index: u16) -> bool {
        self.active.contains(&(id, index))
    }

    /// When the recipient is due: its stored state's time, or later if its
    /// lease was returned with a delay.
    pub fn due_ms(
        &self,
        id: MessageId,
        index: u16,
        arrived_ms: u64,
        r: &StoredRecipient,
    ) -> Option<u64> {
        let delay = self.not_before.get(&(id, index)).copied().unwrap_or(0);
        r.due_ms(arrived_ms).map(|due| due.max(delay))
    }

    fn kind(&self, id: MessageId, index: u16, r: &StoredRecipient) -> StateKind {
        if self.is_active(id, index) {
            StateKind::Active
        } else {
            r.state.public().kind()
        }
    }

    /// Add a recipient in its current state (active if `active`).
    pub fn add_recipient(
        &mut self,
        id: MessageId,
        index: u16,
        arrived_ms: u64,
        tenant: &str,
        r: &StoredRecipient,
    ) {
        let kind = self.kind(id, index, r);
        *self.counts.by_state.entry(kind).or_insert(0) += 1;
        if !kind.is_final() {
            *self
                .counts
                .by_destination
                .entry(r.destination.clone())
                .or_insert(0) += 1;
        }
        if kind == StateKind::Active {
            return;
        }
        if let Some(due) = self.due_ms(id, index, arrived_ms, r) {
            let key = (due, id, index);
            self.due.insert(key);
            self.due_by_destination
                .entry(r.destination.clone())
                .or_default()
                .insert(key);
            self.due_by_tenant
                .entry(tenant.to_string())
                .or_default()
                .insert(key);
            self.due_by_tenant_destination
                .entry(tenant.to_string())
                .or_default()
                .entry(r.destination.clone())
                .or_default()
                .insert(key);
        }
    }

    /// Remove a recipient (and its lease) from the index and the counts.
    pub fn remove_recipient(
        &mut self,
        id: MessageId,
        index: u16,
        arrived_ms: u64,
        tenant: &str,
        r: &StoredRecipient,
    ) {
        let kind = self.kind(id, index, r);
        decrement(&mut self.counts.by_state, &kind);
        if !kind.is_final() {
            decrement(&mut self.counts.by_destination, &r.destination);
        }
        self.active.remove(&(id, index));
        let due = self.due_ms(id, index, arrived_ms, r);
        self.not_before.remove(&(id, index));
        if let Some(due) = due {
            let key = (due, id, index);
            self.due.remove(&key);
            if let Some(set) = self.due_by_destination.get_mut(&r.destination) {
                set.remove(&key);
                if set.is_empty() {
                    self.due_by_destination.remove(&r.destination);
                }
            }
            if let Some(set) = self.due_by_tenant.get_mut(tenant) {
                set.remove(&key);
                if set.is_empty() {
                    self.due_by_tenant.remove(tenant);
                }
            }
            if let Some(by_destination) = self.due_by_tenant_destination.get_mut(tenant) {
                if let Some(set) = by_destination.get_mut(&r.destination) {
                    set.remove(&key);
                    if set.is_empty() {
                        by_destination.remove(&r.destination);
                    }
                }
                if by_destination.is_empty() {
                    self.due_by_tenant_destination.remove(tenant);
                }
            }
        }
    }

    pub fn add_message(&mut self, id: MessageId, msg: &StoredMessage) {
        *self.counts.by_tenant.entry(msg.tenant.clone()).or_insert(0) += 1;
        *self
            .counts
            .bytes_by_tenant
            .entry(msg.tenant.clone())
            .or_insert(0) += msg.size();
        for (i, r) in msg.recipients.iter().enumerate() {
            self.add_recipient(id, i as u16, msg.arrived_ms, &msg.tenant, r);
        }
    }

    pub fn remove_message(&mut self, id: MessageId, msg: &StoredMessage) {
        decrement(&mut self.counts.by_tenant, &msg.tenant);
        if let Some(n) = self.counts.bytes_by_tenant.get_mut(&msg.tenant) {
            *n = n.saturating_sub(msg.size());
            if *n == 0 {
                self.counts.bytes_by_tenant.remove(&msg.tenant);
            }
        }
        for (i, r) in msg.recipients.iter().enumerate() {
            self.remove_recipient(id, i as u16, msg.arrived_ms, &msg.tenant, r);
        }
    }

    /// Mark a due recipient as leased.
    pub fn lease(
        &mut self,
        id: MessageId,
        index: u16,
        arrived_ms: u64,
        tenant: &str,
        r: &StoredRecipient,
    ) {
        self.remove_recipient(id, index, arrived_ms, tenant, r);
        self.active.insert((id, index));
        self.add_recipient(id, index, arrived_ms, tenant, r);
    }

    /// Give a leased recipient back, due again no earlier than `not_before_ms`.
    pub fn unlease(
        &mut self,
        id: MessageId,
        index: u16,
        arrived_ms: u64,
        tenant: &str,
        r: &StoredRecipient,
        not_before_ms: u64,
    ) {
        self.remove_recipient(id, index, arrived_ms, tenant, r);
        self.not_before.insert((id, index), not_before_ms);
        self.add_recipient(id, index, arrived_ms, tenant, r);
    }
}
