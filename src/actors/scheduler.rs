//! The scheduler actor: takes due work from the queue's due index and hands
//! each lease to the destination actor of its next hop, creating that
//! actor on the next arbiter (round robin) the first time. It bounds the
//! leases in flight, wakes on every accepted message and on a timer (for
//! retries coming due), and turns owed bounces into DSNs.
//!
//! Tenants share the delivery slots: each round, the tenants with due mail
//! are served in turn ([`shares`]), each up to an equal part of the free
//! slots and at most its limit in flight (published by its tenant actor:
//! `[[tenants]] max_in_flight` or `[delivery] in_flight_per_tenant`), so
//! one tenant's flood never makes another tenant's mail wait behind it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use tracing::{debug, warn};

use super::destination::{Deliver, Destination, Flush, GiveBack, Idle, Retire};
use super::status::{StatusBoard, TenantBoard};
use super::tenant::{tenant_limit, Attempted, Tenant};
use crate::delivery::{send_bounces, Shared};
use crate::service::Heartbeat;

/// Leases handed to destinations and not finished, at most.
const MAX_IN_FLIGHT: usize = 4096;
/// Leases taken from the queue per round.
const BATCH: usize = 512;
/// How often the due index is checked without a wake-up.
const TICK: Duration = Duration::from_millis(250);

/// New mail is queued: look for due work now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// A lease of this tenant is finished (recorded in the queue).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Done {
    pub tenant: String,
    /// Recipients of the lease by result (for the tenant's counters).
    pub delivered: usize,
    pub deferred: usize,
    pub failed: usize,
}

impl Done {
    /// A lease that ended without outcomes (e.g. a panicked attempt).
    pub fn nothing(tenant: String) -> Done {
        Done {
            tenant,
            delivered: 0,
            deferred: 0,
            failed: 0,
        }
    }
}

/// Stop taking work (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pause;

/// Flush one destination; answers whether it exists.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct FlushDestination(pub String);

pub struct Scheduler {
    shared: Arc<Shared>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    destinations: HashMap<String, Addr<Destination>>,
    board: Arc<StatusBoard>,
    in_flight: usize,
    tenant_in_flight: HashMap<String, usize>,
    tenants: HashMap<String, Addr<Tenant>>,
    tenant_board: Arc<TenantBoard>,
    /// Which due tenant is served first in the next round.
    next_tenant: usize,
    paused: bool,
    bouncing: bool,
    heartbeat: Arc<Heartbeat>,
}

impl Scheduler {
    pub fn new(
        shared: Arc<Shared>,
        arbiters: Vec<ArbiterHandle>,
        board: Arc<StatusBoard>,
        tenant_board: Arc<TenantBoard>,
    ) -> Self {
        Scheduler {
            shared,
            arbiters,
            next_arbiter: 0,
            destinations: HashMap::new(),
            board,
            in_flight: 0,
            tenant_in_flight: HashMap::new(),
            tenants: HashMap::new(),
            tenant_board,
            next_tenant: 0,
            paused: false,
            bouncing: false,
            heartbeat: Arc::new(Heartbeat::default()),
        }
    }

    /// Beat `heartbeat` on every tick of the loop.
    pub fn with_heartbeat(mut self, heartbeat: Arc<Heartbeat>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    fn destination(&mut self, name: &str, me: Addr<Scheduler>) -> Addr<Destination> {
        // A stopped actor (retired, or ended by a panic) is replaced.
        if let Some(addr) = self.destinations.get(name).filter(|a| a.connected()) {
            return addr.clone();
        }
        let actor = Destination::new(
            name.to_string(),
            self.shared.clone(),
            me,
            self.board.clone(),
        );
        let addr = match self
            .arbiters
            .get(self.next_arbiter % self.arbiters.len().max(1))
        {
            Some(arbiter) => Destination::start_in_arbiter(arbiter, |_| actor),
            None => actor.start(),
        };
        self.next_arbiter += 1;
        self.destinations.insert(name.to_string(), addr.clone());
        addr
    }

    /// Hands due leases to destinations while the in-flight bounds allow,
    /// sharing the free slots between the tenants with due mail.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.paused {
            return;
        }
        let free = MAX_IN_FLIGHT.saturating_sub(self.in_flight).min(BATCH);
        if free == 0 {
            return;
        }
        let now = SystemTime::now();
        let due = self.shared.queue.due_tenants(now);
        for tenant in &due {
            self.tenant(tenant);
        }
        let limit = |tenant: &str| self.limit(tenant);
        let quotas = shares(&due, &self.tenant_in_flight, &limit, free, self.next_tenant);
        self.next_tenant = self.next_tenant.wrapping_add(1);
        let mut more = false;
        for (tenant, quota) in quotas {
            let leases = match self.shared.queue.take_due_tenant(now, &tenant, quota) {
                Ok(leases) => leases,
                Err(e) => {
                    warn!(error = %e, %tenant, "taking due mail from the queue failed");
                    continue;
                }
            };
            more |= leases.len() >= quota;
            for lease in leases {
                debug!(id = %lease.id, %tenant, destination = %lease.destination, recipients = lease.recipients.len(), "scheduled");
                let addr = self.destination(&lease.destination, ctx.address());
                self.in_flight += 1;
                *self.tenant_in_flight.entry(tenant.clone()).or_default() += 1;
                addr.do_send(Deliver(lease));
            }
        }
        if more {
            // More may be due: go on after the mailbox drained.
            ctx.notify(Wake);
        }
    }

    /// The tenant's actor, started on the scheduler's arbiter the first
    /// time (or again if it stopped).
    fn tenant(&mut self, name: &str) -> Addr<Tenant> {
        if let Some(addr) = self.tenants.get(name).filter(|a| a.connected()) {
            return addr.clone();
        }
        let addr = Tenant::new(
            name.to_string(),
            self.shared.live.clone(),
            self.tenant_board.clone(),
        )
        .start();
        self.tenants.insert(name.to_string(), addr.clone());
        addr
    }

    /// The tenant's in-flight limit as its actor published it (the
    /// configuration's until it has).
    fn limit(&self, tenant: &str) -> usize {
        match self.tenant_board.get(tenant) {
            Some(snapshot) => snapshot.max_in_flight,
            None => tenant_limit(&self.shared.live.current(), tenant),
        }
    }

    fn bounces(&mut self, ctx: &mut Context<Self>) {
        if self.bouncing || self.paused {
            return;
        }
        self.bouncing = true;
        let shared = self.shared.clone();
        ctx.spawn(
            async move { send_bounces(&shared, 64).await }
                .into_actor(self)
                .map(|queued, act, ctx| {
                    act.bouncing = false;
                    if queued > 0 {
                        act.fill(ctx);
                    }
                }),
        );
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.heartbeat.beat();
        ctx.run_interval(TICK, |act, ctx| {
            act.heartbeat.beat();
            act.fill(ctx);
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.bounces(ctx));
        self.fill(ctx);
    }
}

impl Handler<Wake> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.fill(ctx);
    }
}

impl Handler<Done> for Scheduler {
    type Result = ();
    fn handle(&mut self, done: Done, ctx: &mut Self::Context) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let limit = self.limit(&done.tenant);
        let tenant_was_full = match self.tenant_in_flight.get_mut(&done.tenant) {
            Some(n) => {
                let full = *n >= limit;
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.tenant_in_flight.remove(&done.tenant);
                }
                full
            }
            None => false,
        };
        if done.delivered + done.deferred + done.failed > 0 {
            self.tenant(&done.tenant).do_send(Attempted {
                delivered: done.delivered,
                deferred: done.deferred,
                failed: done.failed,
            });
        }
        if self.in_flight == MAX_IN_FLIGHT - 1 || tenant_was_full {
            self.fill(ctx);
        }
    }
}

impl Handler<Idle> for Scheduler {
    type Result = ();
    fn handle(&mut self, idle: Idle, _: &mut Self::Context) {
        // Only the actor in the map retires; new leases get a new actor.
        if self.destinations.get(&idle.name) == Some(&idle.actor) {
            self.destinations.remove(&idle.name);
            self.board.remove(&idle.name);
            idle.actor.do_send(Retire);
        }
    }
}

impl Handler<Pause> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Pause, _: &mut Self::Context) {
        self.paused = true;
        for destination in self.destinations.values() {
            destination.do_send(GiveBack);
        }
    }
}

impl Handler<FlushDestination> for Scheduler {
    type Result = bool;
    fn handle(&mut self, msg: FlushDestination, _: &mut Self::Context) -> bool {
        match self.destinations.get(&msg.0) {
            Some(addr) => {
                addr.do_send(Flush);
                true
            }
            None => false,
        }
    }
}

/// How many messages each tenant with due mail may lease in this round:
/// tenants in turn starting at `start`, each up to an equal part of `free`
/// (at least one) and to what its in-flight `limit` leaves.
pub fn shares(
    due: &[String],
    in_flight: &HashMap<String, usize>,
    limit: &dyn Fn(&str) -> usize,
    free: usize,
    start: usize,
) -> Vec<(String, usize)> {
    if due.is_empty() {
        return Vec::new();
    }
    let fair = (free / due.len()).max(1);
    let mut left = free;
    let mut out = Vec::new();
    for i in 0..due.len() {
        if left == 0 {
            break;
        }
        let tenant = &due[(start + i) % due.len()];
        let room = limit(tenant).saturating_sub(in_flight.get(tenant).copied().unwrap_or(0));
        let quota = room.min(fair).min(left);
        if quota > 0 {
            out.push((tenant.clone(), quota));
            left -= quota;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn tenants_share_the_free_slots_and_keep_to_their_limit() {
        let none = HashMap::new();
        let busy: HashMap<String, usize> = [("flood".to_string(), 100)].into();
        type Row<'a> = (
            &'a [&'a str],
            &'a HashMap<String, usize>,
            usize,
            usize,
            usize,
            Vec<(&'a str, usize)>,
        );
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
        ];
        for (due, in_flight, per_tenant, free, start, want) in table {
            let want: Vec<(String, usize)> =
                want.into_iter().map(|(t, n)| (t.to_string(), n)).collect();
            assert_eq!(
                shares(&tenants(due), in_flight, &|_: &str| per_tenant, free, start),
                want,
                "{due:?} start {start}"
            );
        }
    }
}
