//! The per-tenant counters and the cap on tenants with series of their
//! own (see the parent module's "The per-tenant cap").

use std::collections::{BTreeMap, HashMap};

use super::OTHER_TENANT;

/// Per-tenant message counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TenantCounters {
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

impl TenantCounters {
    pub(super) fn add(&mut self, other: &TenantCounters) {
        self.received += other.received;
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.bounced += other.bounced;
    }
}

/// One tenant's exact counters, and whether it has series of its own.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) counters: TenantCounters,
    pub(super) own_series: bool,
}

#[derive(Debug, Default)]
pub(super) struct Tenants {
    pub(super) by_name: HashMap<String, Slot>,
    /// How many slots have `own_series`.
    pub(super) with_series: usize,
}

impl Tenants {
    pub(super) fn slot(&mut self, tenant: &str, cap: usize) -> &mut Slot {
        if !self.by_name.contains_key(tenant) {
            let own_series = self.with_series < cap && tenant != OTHER_TENANT;
            self.with_series += usize::from(own_series);
            self.by_name.insert(
                tenant.to_string(),
                Slot {
                    counters: TenantCounters::default(),
                    own_series,
                },
            );
        }
        // Inserted just above when missing.
        self.by_name.get_mut(tenant).expect("slot present")
    }
}

/// The `cap` largest entries by value, and the rest summed as `other`.
pub(super) fn top_with_other(values: &BTreeMap<String, u64>, cap: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(&String, u64)> = values.iter().map(|(k, &v)| (k, v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut out: Vec<(String, u64)> = Vec::with_capacity(cap.min(all.len()) + 1);
    let mut other = 0;
    for (i, (name, n)) in all.into_iter().enumerate() {
        if i < cap && name != OTHER_TENANT {
            out.push((name.clone(), n));
        } else {
            other += n;
        }
    }
    out.push((OTHER_TENANT.to_string(), other));
    out
}
