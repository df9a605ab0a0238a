//! The fleet's message rates at one destination (`[cluster]`
//! `tenant_messages_per_second` and `..._destination_...`): before an
//! attempt starts, the tenant's rates are asked of the fleet
//! ([`crate::cluster::Cluster::admit`]). One question per tenant is out at
//! a time; while it is, or while the answer says to wait, the tenant's
//! other leases here are held aside, so a rate-limited tenant neither
//! floods Redis with questions nor takes the connection slots another
//! tenant's mail could use. A wait is not a failure: nothing is recorded
//! in the queue, the lease simply starts later.

use std::collections::{HashMap, HashSet, VecDeque};

/// Tenants whose admission is pending, and the leases they hold aside.
#[derive(Debug)]
pub(super) struct RateGate<T> {
    blocked: HashSet<String>,
    held: HashMap<String, VecDeque<T>>,
    len: usize,
}

impl<T> Default for RateGate<T> {
    fn default() -> Self {
        RateGate {
            blocked: HashSet::new(),
            held: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> RateGate<T> {
    /// Whether `tenant` waits for an answer or for its rate.
    pub(super) fn is_blocked(&self, tenant: &str) -> bool {
        self.blocked.contains(tenant)
    }

    /// `tenant` waits: its next leases are held aside.
    pub(super) fn block(&mut self, tenant: &str) {
        self.blocked.insert(tenant.to_owned());
    }

    /// Holds `item` of a blocked `tenant`; `first` puts it before the
    /// others (the lease whose admission was refused keeps its place).
    pub(super) fn hold(&mut self, tenant: &str, item: T, first: bool) {
        let line = self.held.entry(tenant.to_owned()).or_default();
        if first {
            line.push_front(item);
        } else {
            line.push_back(item);
        }
        self.len += 1;
    }

    /// `tenant` may go on: its held leases, in order, to be served again.
    pub(super) fn unblock(&mut self, tenant: &str) -> VecDeque<T> {
        self.blocked.remove(tenant);
        let line = self.held.remove(tenant).unwrap_or_default();
        self.len -= line.len();
        line
    }

    /// Every held lease (the engine stops).
    pub(super) fn drain(&mut self) -> Vec<T> {
        self.blocked.clear();
        self.len = 0;
        self.held.drain().flat_map(|(_, line)| line).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0 && self.blocked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::RateGate;

    #[test]
    fn a_blocked_tenant_holds_its_leases_and_others_pass() {
        let mut gate = RateGate::default();
        assert!(gate.is_empty());
        gate.block("slow");
        assert!(gate.is_blocked("slow") && !gate.is_blocked("fast"));
        gate.hold("slow", 2, false);
        gate.hold("slow", 3, false);
        // The refused one keeps its place in front.
        gate.hold("slow", 1, true);
        assert_eq!(gate.len(), 3);
        assert!(!gate.is_empty());
        assert_eq!(Vec::from(gate.unblock("slow")), vec![1, 2, 3]);
        assert!(!gate.is_blocked("slow"));
        assert!(gate.is_empty());
    }

    #[test]
    fn draining_gives_back_everything() {
        let mut gate = RateGate::default();
        gate.block("a");
        gate.block("b");
        gate.hold("a", 1, false);
        gate.hold("b", 2, false);
        let mut all = gate.drain();
        all.sort();
        assert_eq!(all, vec![1, 2]);
        assert!(gate.is_empty());
    }
}
