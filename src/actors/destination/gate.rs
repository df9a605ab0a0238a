//! The fleet's message rates at one destination (`[cluster]`
//! `tenant_messages_per_second` and `..._destination_...`): before an
//! attempt starts, the tenant's rates are asked of the fleet
//! ([`crate::cluster::Cluster::admit`]). At most [`MAX_QUESTIONS`] per
//! tenant are out at a time (admission costs a Redis round trip, so one at
//! a time would cap a tenant at one message per round trip); once an
//! answer says to wait, or while that many are out, the tenant's other
//! leases here are held aside, so a rate-limited tenant neither floods
//! Redis with questions nor takes the connection slots another tenant's
//! mail could use. A wait is not a failure: nothing is recorded in the
//! queue, the lease simply starts later.

use std::collections::{HashMap, HashSet, VecDeque};

/// Admission questions one tenant may have out at once at a destination.
pub(super) const MAX_QUESTIONS: usize = 8;

/// Tenants' admissions under way or refused, and the leases they hold
/// aside meanwhile.
#[derive(Debug)]
pub(super) struct RateGate<T> {
    /// Questions out, per tenant.
    asking: HashMap<String, usize>,
    /// Tenants told to wait (until their timer calls [`RateGate::resume`]).
    waiting: HashSet<String>,
    held: HashMap<String, VecDeque<T>>,
    len: usize,
}

impl<T> Default for RateGate<T> {
    fn default() -> Self {
        RateGate {
            asking: HashMap::new(),
            waiting: HashSet::new(),
            held: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> RateGate<T> {
    /// Whether one more question may be asked for `tenant` now.
    pub(super) fn may_ask(&self, tenant: &str) -> bool {
        !self.waiting.contains(tenant)
            && self.asking.get(tenant).copied().unwrap_or(0) < MAX_QUESTIONS
    }

    /// A question for `tenant` is out.
    pub(super) fn ask(&mut self, tenant: &str) {
        *self.asking.entry(tenant.to_owned()).or_insert(0) += 1;
    }

    /// A question for `tenant` was answered.
    pub(super) fn answered(&mut self, tenant: &str) {
        if let Some(n) = self.asking.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.asking.remove(tenant);
            }
        }
    }

    /// `tenant` was told to wait: its leases are held until
    /// [`RateGate::resume`].
    pub(super) fn wait(&mut self, tenant: &str) {
        self.waiting.insert(tenant.to_owned());
    }

    /// The wait of `tenant` is over.
    pub(super) fn resume(&mut self, tenant: &str) {
        self.waiting.remove(tenant);
    }

    /// Holds `item` of `tenant`; `first` puts it before the others (the
    /// lease told to wait keeps its place).
    pub(super) fn hold(&mut self, tenant: &str, item: T, first: bool) {
        let line = self.held.entry(tenant.to_owned()).or_default();
        if first {
            line.push_front(item);
        } else {
            line.push_back(item);
        }
        self.len += 1;
    }

    /// `tenant`'s held leases, in order, to be served again, if it may
    /// ask again (else none).
    pub(super) fn release(&mut self, tenant: &str) -> VecDeque<T> {
        if !self.may_ask(tenant) {
            return VecDeque::new();
        }
        let line = self.held.remove(tenant).unwrap_or_default();
        self.len -= line.len();
        line
    }

    /// Every held lease (the engine stops).
    pub(super) fn drain(&mut self) -> Vec<T> {
        self.waiting.clear();
        self.len = 0;
        self.held.drain().flat_map(|(_, line)| line).collect()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0 && self.asking.is_empty() && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{RateGate, MAX_QUESTIONS};

    #[test]
    fn a_waiting_tenant_holds_its_leases_and_others_pass() {
        let mut gate = RateGate::default();
        assert!(gate.is_empty());
        gate.ask("slow");
        gate.answered("slow");
        gate.wait("slow");
        assert!(!gate.may_ask("slow") && gate.may_ask("fast"));
        gate.hold("slow", 2, false);
        gate.hold("slow", 3, false);
        // The refused one keeps its place in front.
        gate.hold("slow", 1, true);
        assert_eq!(gate.len(), 3);
        // Not before the wait is over.
        assert!(gate.release("slow").is_empty());
        gate.resume("slow");
        assert_eq!(Vec::from(gate.release("slow")), vec![1, 2, 3]);
        assert!(gate.is_empty());
    }

    #[test]
    fn questions_out_are_bounded_per_tenant() {
        let mut gate: RateGate<u32> = RateGate::default();
        for _ in 0..MAX_QUESTIONS {
            assert!(gate.may_ask("t"));
            gate.ask("t");
        }
        assert!(!gate.may_ask("t") && gate.may_ask("u"));
        gate.hold("t", 7, false);
        assert!(gate.release("t").is_empty());
        gate.answered("t");
        assert_eq!(Vec::from(gate.release("t")), vec![7]);
        for _ in 1..MAX_QUESTIONS {
            gate.answered("t");
        }
        assert!(gate.is_empty());
    }

    #[test]
    fn draining_gives_back_everything() {
        let mut gate = RateGate::default();
        gate.wait("a");
        gate.wait("b");
        gate.hold("a", 1, false);
        gate.hold("b", 2, false);
        let mut all = gate.drain();
        all.sort();
        assert_eq!(all, vec![1, 2]);
        assert!(gate.is_empty());
    }
}
