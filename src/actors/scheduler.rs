//! The scheduler actor: hands due work to the destination actors of its
//! next hops, creating each actor on the next arbiter (round robin) the
//! first time. It owns the engine's in-flight slots, wakes on every
//! accepted message and on a timer (for retries coming due), and turns
//! owed bounces into DSNs.
//!
//! Each round it grants the free slots to the tenants with due mail by
//! [`shares`] (equal parts, in turn, none past its share of the slots
//! while others have due mail: `super::fair`), and asks each tenant's
//! actor to lease that many ([`Take`]); the tenant actor leases within
//! its own quotas and the slots it does not use come back at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use tracing::debug;

use super::destination::Destination;
use super::fair::shares;
use super::messages::{Deliver, Done, Flush, GiveBack, Idle, Retire, SchedulerInbox};
use super::status::{StatusBoard, TenantBoard};
use super::tenant::{tenant_limit, Attempted, Take, Tenant};
use crate::delivery::{send_bounces, DeliveryContext};
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
pub(crate) struct Wake;

/// Stop taking work (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Pause;

/// Flush one destination; answers whether it exists.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct FlushDestination(pub String);

pub(crate) struct Scheduler {
    shared: Arc<DeliveryContext>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// Each destination's actor and its serial.
    destinations: HashMap<String, (Addr<Destination>, u64)>,
    /// The serial of the next destination actor.
    next_serial: u64,
    board: Arc<StatusBoard>,
    in_flight: usize,
    tenant_in_flight: HashMap<String, usize>,
    tenants: HashMap<String, Addr<Tenant>>,
    tenant_board: Arc<TenantBoard>,
    /// Which due tenant is served first in the next round.
    next_tenant: usize,
    /// A fill is already asked for (wake-ups coalesce).
    fill_asked: bool,
    paused: bool,
    bouncing: bool,
    heartbeat: Arc<Heartbeat>,
}

impl Scheduler {
    pub fn new(
        shared: Arc<DeliveryContext>,
        arbiters: Vec<ArbiterHandle>,
        board: Arc<StatusBoard>,
        tenant_board: Arc<TenantBoard>,
    ) -> Self {
        Scheduler {
            shared,
            arbiters,
            next_arbiter: 0,
            destinations: HashMap::new(),
            next_serial: 0,
            board,
            in_flight: 0,
            tenant_in_flight: HashMap::new(),
            tenants: HashMap::new(),
            tenant_board,
            next_tenant: 0,
            fill_asked: false,
            paused: false,
            bouncing: false,
            heartbeat: Arc::new(Heartbeat::default()),
        }
    }

    /// Beat `heartbeat` on every tick of the loop.
    pub(crate) fn with_heartbeat(mut self, heartbeat: Arc<Heartbeat>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    fn destination(&mut self, name: &str, me: Addr<Scheduler>) -> Addr<Destination> {
        // A stopped actor (retired, or ended by a panic) is replaced.
        if let Some((addr, _)) = self.destinations.get(name).filter(|(a, _)| a.connected()) {
            return addr.clone();
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        let inbox = SchedulerInbox {
            done: me.clone().recipient(),
            idle: me.recipient(),
        };
        let actor = Destination::new(
            name.to_string(),
            self.shared.clone(),
            inbox,
            serial,
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
        self.destinations
            .insert(name.to_string(), (addr.clone(), serial));
        addr
    }

    /// Grants the free slots to the tenants with due mail and asks their
    /// actors to lease that many; the leases go to their destinations when
    /// the answers come.
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
        let limit = |tenant: &str| self.limit(tenant);
        let quotas = shares(
            &due,
            &self.tenant_in_flight,
            &limit,
            free,
            MAX_IN_FLIGHT,
            self.next_tenant,
        );
        self.next_tenant = self.next_tenant.wrapping_add(1);
        for (tenant, quota) in quotas {
            // The slots are the tenant's until its actor answers.
            self.in_flight += quota;
            *self.tenant_in_flight.entry(tenant.clone()).or_default() += quota;
            let take = self.tenant(&tenant).send(Take { now, max: quota });
            ctx.spawn(take.into_actor(self).map(move |answer, act, ctx| {
                let leases = answer.unwrap_or_default();
                act.give_back(&tenant, quota - leases.len().min(quota));
                let more = leases.len() >= quota;
                for lease in leases {
                    debug!(id = %lease.id, %tenant, destination = %lease.destination, recipients = lease.recipients.len(), "scheduled");
                    let addr = act.destination(&lease.destination, ctx.address());
                    addr.do_send(Deliver(lease));
                }
                if more {
                    // More may be due: go on after the mailbox drained.
                    act.fill_soon(ctx);
                }
            }));
        }
    }

    /// Fills once the messages already in the mailbox are handled.
    fn fill_soon(&mut self, ctx: &mut Context<Self>) {
        if !self.fill_asked {
            self.fill_asked = true;
            ctx.notify(Wake);
        }
    }

    /// Frees `n` slots held by `tenant`.
    fn give_back(&mut self, tenant: &str, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
        if let Some(held) = self.tenant_in_flight.get_mut(tenant) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                self.tenant_in_flight.remove(tenant);
            }
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
            self.shared.clone(),
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
        self.fill_asked = false;
        self.fill(ctx);
    }
}

impl Handler<Done> for Scheduler {
    type Result = ();
    fn handle(&mut self, done: Done, ctx: &mut Self::Context) {
        self.give_back(&done.tenant, 1);
        // The tenant's actor hears of it before any later `Take` (one
        // mailbox, in order), so the fill below sees its room at this
        // destination.
        self.tenant(&done.tenant).do_send(Attempted {
            destination: done.destination,
        });
        self.fill_soon(ctx);
    }
}

impl Handler<Idle> for Scheduler {
    type Result = ();
    fn handle(&mut self, idle: Idle, _: &mut Self::Context) {
        // Only the actor in the map retires; new leases get a new actor.
        let current = self
            .destinations
            .get(&idle.name)
            .is_some_and(|(_, serial)| *serial == idle.serial);
        if current {
            if let Some((actor, _)) = self.destinations.remove(&idle.name) {
                self.board.remove(&idle.name);
                actor.do_send(Retire);
            }
        }
    }
}

impl Handler<Pause> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Pause, _: &mut Self::Context) {
        self.paused = true;
        for (destination, _) in self.destinations.values() {
            destination.do_send(GiveBack);
        }
    }
}

impl Handler<FlushDestination> for Scheduler {
    type Result = bool;
    fn handle(&mut self, msg: FlushDestination, _: &mut Self::Context) -> bool {
        match self.destinations.get(&msg.0) {
            Some((addr, _)) => {
                addr.do_send(Flush);
                true
            }
            None => false,
        }
    }
}
