//! Property test: random operations (enqueue, take due (also with a cap
//! per destination), record attempts,
//! hold/release/retry/bounce/delete, bounces, time passing, reopen) against
//! an in-memory model of the per-recipient state machine. Segments are far
//! smaller than a record, so every append rotates; transactions share one
//! body between copies, and bursts of writers commit in one group while
//! another thread releases messages, so rotation and release happen inside
//! commit groups. Every stored message's body is read back after each step.

mod support;

use proptest::prelude::*;
use sealpost_queue::{
    next_retry, Lease, MessageId, NewTransaction, Outcome, Queue, QueueError, QueueOptions,
    RecipientState, Retry, RetryPolicy, StateKind,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{attempt, message, said};

const DESTS: [&str; 3] = ["a.test", "b.test", "c.test"];
const TENANTS: [&str; 2] = ["t0", "t1"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue(Vec<usize>, usize),
    /// One transaction: a copy per destination list, one shared body.
    Transaction(Vec<Vec<usize>>, usize),
    /// Writers enqueue this many messages at once while the message picked
    /// by the second field is deleted.
    Burst(usize, usize),
    TakeTenant(usize),
    /// Take a tenant's due mail with a cap of leases per destination.
    TakeTenantWithin(usize, [usize; 3]),
    TakeAny,
    TakeDest(usize),
    Record(usize, Vec<u8>),
    /// Give a lease back without an outcome, due again after this delay.
    Return(usize, u64),
    Hold(usize),
    Release(usize),
    RetryNow(usize),
    BounceNow(usize),
    Delete(usize),
    Bounces,
    Advance(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (prop::collection::vec(0..3usize, 1..4), 0..2usize).prop_map(|(d, t)| Op::Enqueue(d, t)),
        2 => (prop::collection::vec(prop::collection::vec(0..3usize, 1..3), 1..4), 0..2usize)
            .prop_map(|(c, t)| Op::Transaction(c, t)),
        1 => (2..8usize, any::<usize>()).prop_map(|(n, d)| Op::Burst(n, d)),
        1 => (0..2usize).prop_map(Op::TakeTenant),
        2 => (0..2usize, [0..3usize, 0..3usize, 0..3usize]).prop_map(|(t, c)| Op::TakeTenantWithin(t, c)),
        2 => Just(Op::TakeAny),
        1 => (0..3usize).prop_map(Op::TakeDest),
        3 => (any::<usize>(), prop::collection::vec(0..3u8, 1..4)).prop_map(|(l, c)| Op::Record(l, c)),
        1 => (any::<usize>(), 0..300u64).prop_map(|(l, d)| Op::Return(l, d)),
        1 => any::<usize>().prop_map(Op::Hold),
        1 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::RetryNow),
        1 => any::<usize>().prop_map(Op::BounceNow),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => Just(Op::Bounces),
        2 => (1..400u64).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum M {
    Queued,
    Deferred(u64),
    Held,
    Delivered,
    Failed,
    Expired,
}

#[derive(Debug, Clone)]
struct MRcpt {
    dest: usize,
    state: M,
    active: bool,
    attempts: u32,
    /// Due no earlier than this (a returned lease), until its state changes.
    not_before: u64,
}

#[derive(Debug, Clone)]
struct MMsg {
    tenant: usize,
    arrived: u64,
    rcpts: Vec<MRcpt>,
    bounces: u32,
    /// What `message_body` must return (trace, then the shared body).
    content: Vec<u8>,
}

impl MMsg {
    fn done(&self) -> bool {
        self.bounces == 0
            && self
                .rcpts
                .iter()
                .all(|r| matches!(r.state, M::Delivered | M::Failed | M::Expired))
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        first_retry: Duration::from_secs(60),
        max_interval: Duration::from_secs(240),
        lifetime: Duration::from_secs(1000),
        jitter: 0.0,
    }
}

const BASE: u64 = 1_700_000_000;
fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(BASE + secs)
}

fn open(path: &Path) -> Queue {
    let options = QueueOptions {
        segment_bytes: 64,
        ..QueueOptions::default()
    };
    Queue::open(path, options).expect("open")
}

/// The recipients of one message to `dests`, as (address, destination).
fn recipients(dests: &[usize]) -> Vec<(String, &'static str)> {
    dests
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("r{i}@{}", DESTS[*d]), DESTS[*d]))
        .collect()
}

struct World {
    queue: Option<Queue>,
    ids: Vec<MessageId>,
    model: BTreeMap<MessageId, MMsg>,
    leases: Vec<Lease>,
    clock: u64,
}

impl World {
    fn q(&self) -> &Queue {
        self.queue.as_ref().expect("queue open")
    }

    fn pick(&self, n: usize) -> Option<MessageId> {
        (!self.ids.is_empty()).then(|| self.ids[n % self.ids.len()])
    }

    /// Groups (id, dest) -> recipient indices due now.
    fn expected_due(
        &self,
        dest: Option<usize>,
        tenant: Option<usize>,
    ) -> BTreeMap<(MessageId, String), Vec<u16>> {
        let mut out: BTreeMap<(MessageId, String), Vec<u16>> = BTreeMap::new();
        for (id, m) in &self.model {
            for (i, r) in m.rcpts.iter().enumerate() {
                let due = match r.state {
                    M::Queued => Some(m.arrived),
                    M::Deferred(t) => Some(t),
                    _ => None,
                }
                .map(|d| d.max(r.not_before));
                if !r.active
                    && due.is_some_and(|d| d <= self.clock)
                    && dest.is_none_or(|d| d == r.dest)
                    && tenant.is_none_or(|t| t == m.tenant)
                {
                    out.entry((*id, DESTS[r.dest].to_string()))
                        .or_default()
                        .push(i as u16);
                }
            }
        }
        out
    }

    /// The queue handed out `leases`: their recipients are active.
    fn leased(&mut self, leases: Vec<Lease>) {
        for l in &leases {
            let m = self.model.get_mut(&l.id).expect("leased message in model");
            for r in &l.recipients {
                let r = &mut m.rcpts[usize::from(r.index)];
                r.active = true;
                r.not_before = 0;
            }
        }
        self.leases.extend(leases);
    }

    /// A message the queue acknowledged, in the model.
    fn stored(&mut self, id: MessageId, tenant: usize, dests: &[usize], content: Vec<u8>) {
        self.ids.push(id);
        let rcpts = dests
            .iter()
            .map(|d| MRcpt {
                dest: *d,
                state: M::Queued,
                active: false,
                attempts: 0,
                not_before: 0,
            })
            .collect();
        self.model.insert(
            id,
            MMsg {
                tenant,
                arrived: self.clock,
                rcpts,
                bounces: 0,
                content,
            },
        );
    }

    fn take(&mut self, leases: Vec<Lease>, dest: Option<usize>, tenant: Option<usize>) {
        let expected = self.expected_due(dest, tenant);
        let got: BTreeMap<(MessageId, String), Vec<u16>> = leases
            .iter()
            .map(|l| {
                (
                    (l.id, l.destination.clone()),
                    l.recipients.iter().map(|r| r.index).collect(),
                )
            })
            .collect();
        assert_eq!(got, expected, "due set at {}", self.clock);
        self.leased(leases);
    }

    /// Leases taken with a cap per destination: each is a whole due group
    /// of the tenant, no destination gets more than its cap, and a
    /// destination left below its cap has none of its due groups left out.
    fn take_within(&mut self, leases: Vec<Lease>, tenant: usize, caps: [usize; 3]) {
        let expected = self.expected_due(None, Some(tenant));
        let mut per_dest = [0usize; 3];
        let mut got = BTreeSet::new();
        for l in &leases {
            let key = (l.id, l.destination.clone());
            let indices: Vec<u16> = l.recipients.iter().map(|r| r.index).collect();
            assert_eq!(
                expected.get(&key),
                Some(&indices),
                "lease {key:?} at {}",
                self.clock
            );
            assert!(got.insert(key), "one lease per message and destination");
            let d = DESTS
                .iter()
                .position(|x| *x == l.destination)
                .expect("dest");
            per_dest[d] += 1;
        }
        for d in 0..3 {
            assert!(per_dest[d] <= caps[d], "{} over its cap {caps:?}", DESTS[d]);
            if per_dest[d] < caps[d] {
                for (id, dest) in expected.keys().filter(|(_, dest)| dest == DESTS[d]) {
                    assert!(
                        got.contains(&(*id, dest.clone())),
                        "{dest} had room and {id} was left due"
                    );
                }
            }
        }
        self.leased(leases);
    }

    fn modify(
        &mut self,
        n: usize,
        f: impl Fn(&Queue, MessageId) -> Result<usize, QueueError>,
        change: impl Fn(&mut MRcpt, u64) -> bool,
        bounce: bool,
    ) {
        let Some(id) = self.pick(n) else { return };
        let result = f(self.q(), id);
        let Some(m) = self.model.get_mut(&id) else {
            assert!(
                matches!(result, Err(QueueError::NotFound { .. })),
                "{result:?}"
            );
            return;
        };
        let mut changed = 0;
        for r in &mut m.rcpts {
            if (bounce || !r.active) && change(r, self.clock) {
                r.active = false;
                r.not_before = 0;
                changed += 1;
            }
        }
        if bounce && changed > 0 {
            m.bounces += 1;
        }
        assert_eq!(result.expect("operation"), changed);
    }

    fn apply(&mut self, op: Op, path: &Path) {
        match op {
            Op::Enqueue(dests, tenant) => {
                let rcpts = recipients(&dests);
                let refs: Vec<(&str, &str)> = rcpts.iter().map(|(a, d)| (a.as_str(), *d)).collect();
                let body = format!("body {} of {}", self.ids.len(), TENANTS[tenant]).into_bytes();
                let mut msg = message(TENANTS[tenant], &refs, &body);
                msg.arrived_at = time(self.clock);
                let id = self
                    .q()
                    .enqueue(msg)
                    .expect("enqueue")
                    .wait()
                    .expect("durable");
                self.stored(id, tenant, &dests, body);
            }
            Op::Transaction(copies, tenant) => {
                let body = format!("shared body {}", self.ids.len()).into_bytes();
                let transaction = NewTransaction {
                    copies: copies
                        .iter()
                        .enumerate()
                        .map(|(i, dests)| {
                            let rcpts = recipients(dests);
                            let refs: Vec<(&str, &str)> =
                                rcpts.iter().map(|(a, d)| (a.as_str(), *d)).collect();
                            let mut m = message(TENANTS[tenant], &refs, b"");
                            m.arrived_at = time(self.clock);
                            m.into_copy(format!("Received: copy {i}\r\n")).0
                        })
                        .collect(),
                    body: body.clone().into(),
                };
                let ids = self
                    .q()
                    .enqueue_transaction(transaction)
                    .expect("enqueue")
                    .wait()
                    .expect("durable");
                assert_eq!(ids.len(), copies.len());
                for (i, (id, dests)) in ids.into_iter().zip(&copies).enumerate() {
                    let mut content = format!("Received: copy {i}\r\n").into_bytes();
                    content.extend_from_slice(&body);
                    self.stored(id, tenant, dests, content);
                }
            }
            Op::Burst(n, victim) => {
                let victim = self.pick(victim);
                let arrived = time(self.clock);
                let queue = self.q();
                let first = self.ids.len();
                let (ids, deleted) = std::thread::scope(|scope| {
                    let writers: Vec<_> = (0..n)
                        .map(|w| {
                            scope.spawn(move || {
                                let body = format!("burst {first} writer {w}").into_bytes();
                                let mut msg = message("t0", &[("r0@a.test", "a.test")], &body);
                                msg.arrived_at = arrived;
                                let id = queue
                                    .enqueue(msg)
                                    .expect("enqueue")
                                    .wait()
                                    .expect("durable");
                                (id, body)
                            })
                        })
                        .collect();
                    let deleted = victim.map(|id| (id, queue.delete(id)));
                    let ids: Vec<_> = writers
                        .into_iter()
                        .map(|w| w.join().expect("writer"))
                        .collect();
                    (ids, deleted)
                });
                if let Some((id, result)) = deleted {
                    match self.model.remove(&id) {
                        Some(_) => result.expect("delete"),
                        None => assert!(
                            matches!(result, Err(QueueError::NotFound { .. })),
                            "{result:?}"
                        ),
                    }
                }
                for (id, body) in ids {
                    self.stored(id, 0, &[0], body);
                }
            }
            Op::TakeAny => {
                let leases = self
                    .q()
                    .take_due_any(time(self.clock), usize::MAX)
                    .expect("take");
                self.take(leases, None, None);
            }
            Op::TakeTenant(t) => {
                let leases = self
                    .q()
                    .take_due_tenant(time(self.clock), TENANTS[t], usize::MAX)
                    .expect("take");
                self.take(leases, None, Some(t));
            }
            Op::TakeTenantWithin(t, caps) => {
                let room = |d: &str| DESTS.iter().position(|x| *x == d).map_or(0, |i| caps[i]);
                let leases = self
                    .q()
                    .take_due_tenant_within(time(self.clock), TENANTS[t], usize::MAX, &room)
                    .expect("take");
                self.take_within(leases, t, caps);
            }
            Op::TakeDest(d) => {
                let leases = self
                    .q()
                    .take_due(time(self.clock), DESTS[d], usize::MAX)
                    .expect("take");
                self.take(leases, Some(d), None);
            }
            Op::Record(n, choices) => {
                if self.leases.is_empty() {
                    return;
                }
                let lease = self.leases.remove(n % self.leases.len());
                let id = lease.id;
                let outcomes: Vec<(u16, Outcome)> = lease
                    .recipients
                    .iter()
                    .enumerate()
                    .map(|(k, r)| {
                        let o = match choices[k % choices.len()] {
                            0 => Outcome::Delivered {
                                reply: said(250, "ok"),
                            },
                            1 => Outcome::Failed {
                                reason: said(550, "no"),
                            },
                            _ => Outcome::Deferred {
                                reason: said(451, "later"),
                            },
                        };
                        (r.index, o)
                    })
                    .collect();
                let result = self.q().record_attempt(
                    lease.clone(),
                    &outcomes,
                    attempt(0, said(421, "x")).with_at(time(self.clock)),
                    &policy(),
                );
                let live = self.model.get(&id).is_some_and(|m| {
                    lease
                        .recipients
                        .iter()
                        .all(|r| m.rcpts[usize::from(r.index)].active)
                });
                if !live {
                    assert!(
                        matches!(result, Err(QueueError::LeaseLost { .. })),
                        "{result:?}"
                    );
                    return;
                }
                result.expect("record_attempt");
                let m = self.model.get_mut(&id).expect("model");
                let mut bounced = false;
                for (idx, o) in outcomes {
                    let r = &mut m.rcpts[usize::from(idx)];
                    r.active = false;
                    r.attempts += 1;
                    r.state = match o {
                        Outcome::Delivered { .. } => M::Delivered,
                        Outcome::Failed { .. } => {
                            bounced = true;
                            M::Failed
                        }
                        Outcome::Deferred { .. } => match next_retry(
                            &policy(),
                            r.attempts,
                            time(m.arrived),
                            time(self.clock),
                            0,
                        ) {
                            Retry::At(t) => M::Deferred(
                                t.duration_since(time(0)).expect("after base").as_secs(),
                            ),
                            Retry::Expired => {
                                bounced = true;
                                M::Expired
                            }
                        },
                    };
                }
                if bounced {
                    m.bounces += 1;
                }
                if m.done() {
                    self.model.remove(&id);
                }
            }
            Op::Return(n, delay) => {
                if self.leases.is_empty() {
                    return;
                }
                let lease = self.leases.remove(n % self.leases.len());
                let returned = self
                    .q()
                    .return_lease(&lease.key(), time(self.clock + delay));
                let mut want = 0;
                if let Some(m) = self.model.get_mut(&lease.id) {
                    for l in &lease.recipients {
                        let r = &mut m.rcpts[usize::from(l.index)];
                        if r.active {
                            r.active = false;
                            r.not_before = self.clock + delay;
                            want += 1;
                        }
                    }
                }
                assert_eq!(returned, want, "recipients returned");
            }
            Op::Hold(n) => self.modify(
                n,
                |q, id| q.hold(id),
                |r, _| {
                    let hit = matches!(r.state, M::Queued | M::Deferred(_));
                    if hit {
                        r.state = M::Held;
                    }
                    hit
                },
                false,
            ),
            Op::Release(n) => {
                let now = time(self.clock);
                self.modify(
                    n,
                    |q, id| q.release(id, now),
                    |r, c| {
                        let hit = r.state == M::Held;
                        if hit {
                            r.state = M::Deferred(c);
                        }
                        hit
                    },
                    false,
                )
            }
            Op::RetryNow(n) => {
                let now = time(self.clock);
                self.modify(
                    n,
                    |q, id| q.retry_now(id, now),
                    |r, c| {
                        let hit = matches!(r.state, M::Deferred(t) if t > c);
                        if hit {
                            r.state = M::Deferred(c);
                        }
                        hit
                    },
                    false,
                )
            }
            Op::BounceNow(n) => self.modify(
                n,
                |q, id| q.bounce_now(id, "operator"),
                |r, _| {
                    let hit = !matches!(r.state, M::Delivered | M::Failed | M::Expired);
                    if hit {
                        r.state = M::Failed;
                    }
                    hit
                },
                true,
            ),
            Op::Delete(n) => {
                let Some(id) = self.pick(n) else { return };
                let result = self.q().delete(id);
                match self.model.remove(&id) {
                    Some(_) => result.expect("delete"),
                    None => assert!(
                        matches!(result, Err(QueueError::NotFound { .. })),
                        "{result:?}"
                    ),
                }
            }
            Op::Bounces => {
                let bounces = self.q().take_bounces(usize::MAX).expect("bounces");
                let owed: u32 = self.model.values().map(|m| m.bounces).sum();
                assert_eq!(bounces.len() as u32, owed);
                for b in &bounces {
                    self.q().bounce_done(b).expect("bounce_done");
                }
                for m in self.model.values_mut() {
                    m.bounces = 0;
                }
                self.model.retain(|_, m| !m.done());
            }
            Op::Advance(secs) => self.clock += secs,
            Op::Reopen => {
                drop(self.queue.take());
                self.leases.clear();
                for m in self.model.values_mut() {
                    for r in &mut m.rcpts {
                        r.active = false;
                        r.not_before = 0;
                    }
                }
                self.queue = Some(open(path));
            }
        }
    }

    fn check(&self) {
        let mut counts: BTreeMap<StateKind, u64> = BTreeMap::new();
        for (id, m) in &self.model {
            let info = self.q().show(*id).expect("show");
            let body = self
                .q()
                .message_body(*id)
                .unwrap_or_else(|e| panic!("body of stored message {id}: {e}"));
            assert_eq!(body, m.content, "body of {id}");
            assert_eq!(info.size, m.content.len() as u64, "size of {id}");
            for (r, got) in m.rcpts.iter().zip(&info.recipients) {
                let want = match (r.active, r.state) {
                    (true, _) => RecipientState::Active,
                    (_, M::Queued) => RecipientState::Queued,
                    (_, M::Deferred(t)) => RecipientState::Deferred {
                        next_attempt: time(t),
                    },
                    (_, M::Held) => RecipientState::Held,
                    (_, M::Delivered) => RecipientState::Delivered,
                    (_, M::Failed) => RecipientState::Failed,
                    (_, M::Expired) => RecipientState::Expired,
                };
                assert_eq!(got.state, want, "message {id}");
                assert_eq!(got.attempts.len() as u32, r.attempts);
                *counts.entry(want.kind()).or_insert(0) += 1;
            }
        }
        assert_eq!(self.q().counts().by_state, counts);
        for (t, name) in TENANTS.iter().enumerate() {
            let (messages, bytes) = self
                .model
                .values()
                .filter(|m| m.tenant == t)
                .fold((0, 0), |(n, b), m| (n + 1, b + m.content.len() as u64));
            assert_eq!(
                self.q().tenant_usage(name),
                (messages, bytes),
                "usage of {name}"
            );
        }
        let stored: BTreeSet<MessageId> = self
            .ids
            .iter()
            .copied()
            .filter(|id| self.q().show(*id).is_ok())
            .collect();
        assert_eq!(stored, self.model.keys().copied().collect());
    }
}

trait WithAt {
    fn with_at(self, at: SystemTime) -> Self;
}
impl WithAt for sealpost_queue::Attempt {
    fn with_at(mut self, at: SystemTime) -> Self {
        self.at = at;
        self
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn queue_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut world = World { queue: Some(open(dir.path())), ids: Vec::new(), model: BTreeMap::new(), leases: Vec::new(), clock: 0 };
        for op in ops {
            world.apply(op, dir.path());
            world.check();
        }
    }
}
