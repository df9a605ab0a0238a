//! The delivery engine's fairness rules between tenants, as pure state
//! and functions (the actors apply them):
//!
//! 1. **Global slots by share** ([`shares`], the scheduler): while more
//!    than one tenant has due mail, no tenant gets new slots beyond its
//!    share of the engine's in-flight slots (the slots divided by the
//!    tenants with due mail), nor beyond its own in-flight limit. The free
//!    slots of a round are split equally between those tenants, starting
//!    with a different one each round. A tenant alone with due mail may
//!    use up to its own limit.
//! 2. **Per destination per tenant** (the tenant actor, with
//!    `Queue::take_due_tenant_within`): a tenant has at most `[delivery]
//!    in_flight_per_tenant_destination` leases at one next hop, waiting or
//!    under way; its other destinations' mail is leased past a capped one.
//! 3. **Turns at a destination** ([`Turns`], the destination actor): the
//!    leases waiting for a connection are kept in one line per tenant,
//!    and a freed connection slot goes to the tenants in turn (round
//!    robin by message), so a tenant's backlog at a slow next hop never
//!    stands in front of another tenant's mail there.

use std::collections::{HashMap, VecDeque};

/// Waiting items in one line per tenant, served in turn.
#[derive(Debug)]
pub(crate) struct Turns<T> {
    lines: HashMap<String, VecDeque<T>>,
    /// Tenants with a non-empty line, the next to be served first.
    order: VecDeque<String>,
    len: usize,
}

impl<T> Default for Turns<T> {
    fn default() -> Self {
        Turns {
            lines: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Turns<T> {
    /// Puts `item` at the end of `tenant`'s line; a tenant not waiting yet
    /// takes its turn after those that are.
    pub fn push(&mut self, tenant: &str, item: T) {
        match self.lines.get_mut(tenant) {
            Some(line) => line.push_back(item),
            None => {
                self.lines
                    .insert(tenant.to_string(), VecDeque::from([item]));
                self.order.push_back(tenant.to_string());
            }
        }
        self.len += 1;
    }

    /// The first item of the tenant whose turn it is; that tenant then
    /// goes to the back.
    pub fn pop(&mut self) -> Option<T> {
        let tenant = self.order.pop_front()?;
        let line = self.lines.get_mut(&tenant)?;
        let item = line.pop_front();
        if line.is_empty() {
            self.lines.remove(&tenant);
        } else {
            self.order.push_back(tenant);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tenants with items waiting.
    #[cfg(test)]
    fn tenants(&self) -> usize {
        self.order.len()
    }
}

/// How many leases each tenant with due mail may take in this round:
/// tenants in turn starting at `start`, each within its in-flight `limit`
/// and, while other tenants have due mail too, within its share of the
/// `total` slots. The `free` slots are split equally between the tenants
/// with room (at least one each, in turn, when there are fewer slots than
/// tenants); what one cannot take goes to the others.
pub fn shares(
    due: &[String],
    in_flight: &HashMap<String, usize>,
    limit: &dyn Fn(&str) -> usize,
    free: usize,
    total: usize,
    start: usize,
) -> Vec<(String, usize)> {
    if due.is_empty() {
        return Vec::new();
    }
    let share = match due.len() {
        1 => usize::MAX,
        n => (total / n).max(1),
    };
    let rooms: Vec<(&String, usize)> = (0..due.len())
        .map(|i| &due[(start + i) % due.len()])
        .map(|tenant| {
            let held = in_flight.get(tenant).copied().unwrap_or(0);
            (tenant, limit(tenant).min(share).saturating_sub(held))
        })
        .filter(|(_, room)| *room > 0)
        .collect();
    let mut quotas = vec![0usize; rooms.len()];
    let mut left = free;
    // Water filling: each pass gives every tenant with room left an equal
    // part of what is left; a pass gives at least one slot, and a tenant
    // whose room is filled drops out, so this ends.
    loop {
        let open: Vec<usize> = (0..rooms.len())
            .filter(|&i| quotas[i] < rooms[i].1)
            .collect();
        if open.is_empty() || left == 0 {
            break;
        }
        let part = (left / open.len()).max(1);
        for i in open {
            if left == 0 {
                break;
            }
            let quota = (rooms[i].1 - quotas[i]).min(part).min(left);
            quotas[i] += quota;
            left -= quota;
        }
    }
    rooms
        .into_iter()
        .zip(quotas)
        .filter(|(_, quota)| *quota > 0)
        .map(|((tenant, _), quota)| (tenant.clone(), quota))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_serve_each_waiting_tenant_in_turn() {
        let mut turns = Turns::default();
        for i in 0..5 {
            turns.push("flood", format!("f{i}"));
        }
        turns.push("quiet", "q0".to_string());
        turns.push("quiet", "q1".to_string());
        assert_eq!((turns.len(), turns.tenants()), (7, 2));
        let mut served = vec![turns.pop(), turns.pop(), turns.pop()];
        // A tenant arriving later waits one turn of each waiting tenant at
        // most.
        turns.push("late", "l0".to_string());
        served.extend(std::iter::from_fn(|| turns.pop().map(Some)));
        let served: Vec<String> = served.into_iter().flatten().collect();
        assert_eq!(
            served,
            ["f0", "q0", "f1", "q1", "f2", "l0", "f3", "f4"],
            "round robin by message"
        );
        assert!(turns.is_empty());
        assert_eq!(turns.tenants(), 0);
        assert_eq!(turns.pop(), None);
    }

    fn tenants(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn tenants_share_the_free_slots_and_keep_to_their_limit_and_share() {
        let none = HashMap::new();
        let busy: HashMap<String, usize> = [("flood".to_string(), 100)].into();
        let hog: HashMap<String, usize> = [("flood".to_string(), 3000)].into();
        type Row<'a> = (
            &'a [&'a str],
            &'a HashMap<String, usize>,
            usize,
            usize,
            usize,
            Vec<(&'a str, usize)>,
        );
        // (due, in flight, per-tenant limit, free, start, quotas); 4096 slots.
        let table: Vec<Row> = vec![
            (&[], &none, 100, 512, 0, vec![]),
            (&["a"], &none, 100, 512, 0, vec![("a", 100)]),
            (
                &["a", "b"],
                &none,
                1000,
                512,
                0,
                vec![("a", 256), ("b", 256)],
            ),
            (
                &["a", "b"],
                &none,
                1000,
                512,
                1,
                vec![("b", 256), ("a", 256)],
            ),
            // The flooding tenant is at its limit; the quiet one still gets slots.
            (
                &["flood", "quiet"],
                &busy,
                100,
                512,
                0,
                vec![("quiet", 100)],
            ),
            // Fewer free slots than tenants: one each, in turn, until none left.
            (&["a", "b", "c"], &none, 10, 2, 2, vec![("c", 1), ("a", 1)]),
            // Alone, a tenant may hold more than half of the slots...
            (&["flood"], &hog, 4096, 512, 0, vec![("flood", 512)]),
            // ...but not while another has due mail: past its share
            // (4096 / 2) it gets nothing new, the others get the free slots.
            (
                &["flood", "quiet"],
                &hog,
                4096,
                512,
                0,
                vec![("quiet", 512)],
            ),
            (
                &["flood", "quiet", "third"],
                &hog,
                4096,
                90,
                0,
                vec![("quiet", 45), ("third", 45)],
            ),
            // What a tenant near its limit cannot take goes to the others.
            (
                &["flood", "quiet"],
                &busy,
                110,
                100,
                0,
                vec![("flood", 10), ("quiet", 90)],
            ),
        ];
        for (due, in_flight, per_tenant, free, start, want) in table {
            let want: Vec<(String, usize)> =
                want.into_iter().map(|(t, n)| (t.to_string(), n)).collect();
            assert_eq!(
                shares(
                    &tenants(due),
                    in_flight,
                    &|_: &str| per_tenant,
                    free,
                    4096,
                    start
                ),
                want,
                "{due:?} start {start}"
            );
        }
    }
}
