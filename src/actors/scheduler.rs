//! The scheduler actor: takes due work from the queue's due index and hands
//! each lease to the destination actor of its next hop, creating that
//! actor on the next arbiter (round robin) the first time. It bounds the
//! leases in flight, wakes on every accepted message and on a timer (for
//! retries coming due), and turns owed bounces into DSNs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use tracing::{debug, warn};

use super::destination::{Deliver, Destination, Flush};
use super::status::StatusBoard;
use crate::delivery::{send_bounces, Shared};

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

/// A lease is finished (recorded in the queue).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Done;

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
    paused: bool,
    bouncing: bool,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>, arbiters: Vec<ArbiterHandle>, board: Arc<StatusBoard>) -> Self {
        Scheduler {
            shared,
            arbiters,
            next_arbiter: 0,
            destinations: HashMap::new(),
            board,
            in_flight: 0,
            paused: false,
            bouncing: false,
        }
    }

    fn destination(&mut self, name: &str, me: Addr<Scheduler>) -> Addr<Destination> {
        if let Some(addr) = self.destinations.get(name) {
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

    /// Hands due leases to destinations while the in-flight bound allows.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.paused {
            return;
        }
        let free = MAX_IN_FLIGHT.saturating_sub(self.in_flight);
        if free == 0 {
            return;
        }
        let want = free.min(BATCH);
        let leases = match self.shared.queue.take_due_any(SystemTime::now(), want) {
            Ok(leases) => leases,
            Err(e) => {
                warn!(error = %e, "taking due mail from the queue failed");
                return;
            }
        };
        let full = leases.len() >= want;
        for lease in leases {
            debug!(id = %lease.id, destination = %lease.destination, recipients = lease.recipients.len(), "scheduled");
            let addr = self.destination(&lease.destination, ctx.address());
            self.in_flight += 1;
            addr.do_send(Deliver(lease));
        }
        if full {
            // More may be due: go on after the mailbox drained.
            ctx.notify(Wake);
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
        ctx.run_interval(TICK, |act, ctx| act.fill(ctx));
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
    fn handle(&mut self, _: Done, ctx: &mut Self::Context) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == MAX_IN_FLIGHT - 1 {
            self.fill(ctx);
        }
    }
}

impl Handler<Pause> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Pause, _: &mut Self::Context) {
        self.paused = true;
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
