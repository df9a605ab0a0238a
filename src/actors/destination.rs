//! The destination actor: one per next hop (a recipient domain, or a
//! managed domain's downstream route). It owns the hop's pool of idle
//! connections, its concurrency limit and its backoff, and runs delivery
//! attempts as futures on its arbiter.
//!
//! Leases waiting for a connection wait in one line per tenant
//! ([`Turns`]): a freed slot goes to the tenants in turn, one message each,
//! so one tenant's backlog here never delays another tenant's mail.
//!
//! Backoff: when an attempt could reach no host at all (DNS failure, every
//! MX refused the connection or timed out), the destination pauses for
//! `[delivery] destination_backoff`. Leases that arrive meanwhile are
//! deferred at once with that reason instead of each trying and failing;
//! the leases after the pause are probes. A failure counts once per pause:
//! the attempts that were under way when the pause began fail too, but do
//! not lengthen it. Only a probe that fails again doubles the pause, up to
//! `max_destination_backoff`. Any server answering clears it, and so does
//! the operator's flush; attempts started before either fail without
//! pausing the destination again.
//!
//! When the hosts answered but refused what one policy requires (no
//! STARTTLS for `mandatory`, TLS below its minimum, a DANE or MTA-STS
//! failure), only mail under that same policy (level and minimum TLS
//! version) pauses: the destination's mail under other policies, which
//! the hosts may well take, goes on. A transaction under that policy, or
//! the pause running out, clears it.
//!
//! In a fleet (`[cluster]`), a tenant with message rates is admitted by
//! the fleet before each attempt starts ([`gate`]); a new connection takes
//! a fleet-wide connection lease in the attempt itself
//! (`crate::delivery::attempt`). Waiting for either is neither a failure
//! nor a deferral. On a node alone neither happens.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;
use sealpost_queue::Lease;
use tracing::{debug, error, info};

use super::fair::Turns;
use super::messages::{Deliver, Done, Flush, GiveBack, Idle, Retire, SchedulerInbox};
use super::status::{DestinationStatus, StatusBoard};
use crate::cluster::Admission;
use crate::date::unix_ms;
use crate::delivery::attempt::{conclude, defer_all, log_outcomes, return_lease, span};
use crate::delivery::{
    attempt, effective_policy, DeliveryContext, Effective, Health, Pool, Reason, Report,
};
use gate::RateGate;

/// One pause: since when, until when, after how many counted failures.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backoff {
    since: SystemTime,
    until: SystemTime,
    failures: u32,
    reason: Reason,
}

/// The pause state of one scope: the whole destination, or one policy.
///
/// A failure counts once per pause period: an attempt that was already
/// under way when the pause began (or, after a flush or an answering
/// server, before that) tells nothing new, so it neither doubles the pause
/// nor starts one. Only a probe, an attempt started once the pause ran
/// out, that fails again doubles it.
#[derive(Debug, Default)]
struct Track {
    /// The pause in force, or the last one: kept after it runs out so
    /// that a failed probe doubles it.
    pause: Option<Backoff>,
    /// Failures of attempts started before this instant are stale: a
    /// server answered (or the operator flushed the pause) since.
    fresh_since: Option<SystemTime>,
}

impl Track {
    fn holding(&self, now: SystemTime) -> Option<&Backoff> {
        self.pause.as_ref().filter(|b| b.until > now)
    }

    /// A server answered, or the operator flushed: whether a pause ended.
    fn clear(&mut self, now: SystemTime) -> bool {
        self.fresh_since = Some(now);
        self.pause.take().is_some()
    }

    /// An attempt started at `started` failed at `now`.
    fn fail(
        &mut self,
        started: SystemTime,
        now: SystemTime,
        reason: &Reason,
        first: Duration,
        max: Duration,
    ) -> PauseChange {
        if self.fresh_since.is_some_and(|fresh| started < fresh) {
            return PauseChange::Stale;
        }
        if let Some(pause) = &self.pause {
            if started < pause.until {
                // Under way before this pause ran out: already counted.
                return PauseChange::Counted {
                    since: pause.since,
                    until: pause.until,
                };
            }
        }
        let failures = self.pause.as_ref().map_or(0, |b| b.failures) + 1;
        let pause = pause_after(failures, first, max);
        self.pause = Some(Backoff {
            since: now,
            until: now + pause,
            failures,
            reason: reason.clone(),
        });
        PauseChange::Paused { failures, pause }
    }

    fn is_running(&self, now: SystemTime) -> bool {
        self.holding(now).is_some()
    }
}

/// What holds a destination's leases back: its own pause (no host
/// answered) and the pauses of policies its hosts refused. Pure state,
/// driven by the attempts' [`Health`], when each attempt started, and the
/// clock passed in.
#[derive(Debug, Default)]
struct Pauses {
    /// No host answered: every lease waits.
    down: Track,
    /// The hosts refused one policy's TLS: leases under that policy wait.
    /// There are at most as many entries as (level, minimum TLS version)
    /// pairs.
    refused: HashMap<Effective, Track>,
    /// The operator flushed the destination: failures of attempts started
    /// before are stale in every scope, also in policies not seen yet.
    flushed: Option<SystemTime>,
}

/// What [`Pauses::record`] changed, for the log.
#[derive(Debug, PartialEq, Eq)]
enum PauseChange {
    None,
    Cleared {
        down: bool,
        policy: bool,
    },
    Paused {
        failures: u32,
        pause: Duration,
    },
    /// The attempt was under way before the pause in force (or the last
    /// one) ran out: its failure was counted already.
    Counted {
        since: SystemTime,
        until: SystemTime,
    },
    /// The attempt started before a server last answered or the operator
    /// flushed: its failure says nothing about now.
    Stale,
}

impl Pauses {
    /// The pause holding back a lease under `policy` at `now`.
    fn holding(&self, policy: &Effective, now: SystemTime) -> Option<&Backoff> {
        self.down
            .holding(now)
            .or_else(|| self.refused.get(policy).and_then(|t| t.holding(now)))
    }

    /// Takes the health of an attempt under `policy`, started at
    /// `started` and concluded at `now`, into account.
    fn record(
        &mut self,
        health: &Health,
        policy: &Effective,
        started: SystemTime,
        now: SystemTime,
        first: Duration,
        max: Duration,
    ) -> PauseChange {
        if self.flushed.is_some_and(|flushed| started < flushed)
            && !matches!(health, Health::Reached)
        {
            return PauseChange::Stale;
        }
        match health {
            Health::Reached => {
                let down = self.down.clear(now);
                let policy = self.refused.entry(policy.clone()).or_default().clear(now);
                if down || policy {
                    PauseChange::Cleared { down, policy }
                } else {
                    PauseChange::None
                }
            }
            Health::Unreachable(reason) => self.down.fail(started, now, reason, first, max),
            Health::Refused(reason) => self
                .refused
                .entry(policy.clone())
                .or_default()
                .fail(started, now, reason, first, max),
            Health::NotTried => PauseChange::None,
        }
    }

    /// The whole destination's pause in force: since when and until when.
    #[cfg(test)]
    fn down_pause(&self, now: SystemTime) -> Option<(SystemTime, SystemTime)> {
        self.down.holding(now).map(|b| (b.since, b.until))
    }

    /// Until when the whole destination is (or was last) paused.
    fn down_until(&self) -> Option<SystemTime> {
        self.down.pause.as_ref().map(|b| b.until)
    }

    /// Whether any pause is in force at `now`.
    fn any_running(&self, now: SystemTime) -> bool {
        self.down.is_running(now) || self.refused.values().any(|t| t.is_running(now))
    }

    /// The operator's flush: no pause, and failures of attempts under way
    /// now do not start a new one.
    fn clear(&mut self, now: SystemTime) {
        self.down.clear(now);
        self.refused.clear();
        self.flushed = Some(now);
    }
}

pub struct Destination {
    name: String,
    shared: Arc<DeliveryContext>,
    /// Where `Done` and `Idle` go.
    scheduler: SchedulerInbox,
    /// Tells this actor from a newer one for the same name.
    serial: u64,
    board: Arc<StatusBoard>,
    pool: Arc<Pool>,
    /// Leases waiting for a connection slot, by tenant, served in turn.
    waiting: Turns<Lease>,
    /// Leases of tenants waiting for the fleet's admission (`[cluster]`
    /// rates).
    gate: RateGate<Lease>,
    active: usize,
    pauses: Pauses,
    last: Option<Report>,
    /// Since when nothing is waiting, running, pooled or paused.
    idle_since: Option<std::time::Instant>,
    /// The scheduler was told this actor is idle.
    offered_retirement: bool,
    /// The scheduler forgot this actor: finish what is here, then stop.
    retired: bool,
    /// The engine is stopping: no attempt starts, leases go back.
    stopping: bool,
}

/// An actor idle this long offers to retire, so one actor per destination
/// ever seen does not pile up.
const RETIRE_AFTER: Duration = Duration::from_secs(300);

impl Destination {
    pub fn new(
        name: String,
        shared: Arc<DeliveryContext>,
        scheduler: SchedulerInbox,
        serial: u64,
        board: Arc<StatusBoard>,
    ) -> Destination {
        let delivery = &shared.live.current().delivery;
        let pool = Arc::new(Pool::new(
            delivery.messages_per_connection,
            delivery.connections_per_destination,
        ));
        Destination {
            name,
            shared,
            scheduler,
            serial,
            board,
            pool,
            waiting: Turns::default(),
            gate: RateGate::default(),
            active: 0,
            pauses: Pauses::default(),
            last: None,
            idle_since: None,
            offered_retirement: false,
            retired: false,
            stopping: false,
        }
    }

    /// Gives every waiting lease back to the queue, due now: the engine
    /// stops, and a lease not started must not wait for a restart.
    fn give_back(&mut self) {
        let now = SystemTime::now();
        let mut returned = 0;
        for lease in self.gate.drain() {
            self.waiting.push(&lease.tenant.clone(), lease);
        }
        while let Some(lease) = self.waiting.pop() {
            returned += self.shared.queue.return_lease(&lease.key(), now);
            self.scheduler.done.do_send(Done {
                tenant: lease.tenant.clone(),
                destination: self.name.clone(),
            });
        }
        if returned > 0 {
            info!(destination = %self.name, recipients = returned, "leases given back to the queue (stopping)");
        }
        self.publish();
    }

    /// The pause that holds `lease` back now, if any: the destination's
    /// own, else its policy's.
    /// A lease whose stored policy does not parse is not held: its
    /// attempt defers it with that error.
    fn pause_for(&self, lease: &Lease) -> Option<(SystemTime, Reason, Effective)> {
        let policy = effective_policy(&self.shared.live.current(), lease).ok()?;
        let pause = self.pauses.holding(&policy, SystemTime::now())?;
        Some((pause.until, pause.reason.clone(), policy))
    }

    /// Starts attempts while the concurrency limit allows.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let limit = self
            .shared
            .live
            .current()
            .delivery
            .connections_per_destination;
        if self.stopping {
            self.give_back();
            return;
        }
        while self.active < limit {
            let Some(lease) = self.waiting.pop() else {
                break;
            };
            if let Some((until, reason, policy)) = self.pause_for(&lease) {
                self.defer_in_backoff(lease, until, &reason, &policy, ctx);
                continue;
            }
            if !self.gate.may_ask(&lease.tenant) {
                self.gate.hold(&lease.tenant.clone(), lease, false);
                continue;
            }
            self.active += 1;
            if self.has_fleet_rates(&lease.tenant) {
                self.admit_then_start(lease, ctx);
            } else {
                self.start(lease, ctx);
            }
        }
        self.publish();
    }

    /// Starts the attempt of `lease` (its slot in `active` is counted).
    fn start(&mut self, lease: Lease, ctx: &mut Context<Self>) {
        let (key, tenant) = (lease.key(), lease.tenant.clone());
        let started = SystemTime::now();
        // A panic in an attempt must not take the actor (and every
        // lease sent to it later) down with it.
        let work =
            AssertUnwindSafe(attempt(self.shared.clone(), self.pool.clone(), lease)).catch_unwind();
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.active -= 1;
            match result {
                Ok(report) => {
                    act.scheduler.done.do_send(Done {
                        tenant,
                        destination: act.name.clone(),
                    });
                    act.on_report(report, started);
                }
                Err(_) => {
                    let config = act.shared.live.current();
                    let until = return_lease(&act.shared, &config, &key);
                    act.scheduler.done.do_send(Done {
                        tenant,
                        destination: act.name.clone(),
                    });
                    error!(
                        id = %key.id,
                        destination = %act.name,
                        retry_at = crate::date::unix_seconds(until),
                        "a delivery attempt panicked; its recipients are due again after the first retry interval"
                    );
                }
            }
            act.pump(ctx);
        }));
    }

    /// Whether `tenant` has message rates in the fleet this node joined.
    fn has_fleet_rates(&self, tenant: &str) -> bool {
        self.shared
            .live
            .current()
            .cluster
            .as_ref()
            .is_some_and(|c| {
                let rates = c.tenant_rates(tenant);
                rates.messages.is_some() || rates.per_destination.is_some()
            })
    }

    /// Asks the fleet whether `lease`'s tenant may send one more message
    /// here now (its slot in `active` is counted meanwhile): admitted, the
    /// attempt starts; told to wait, the lease is held aside with the
    /// tenant's others until then, and the slot goes to other tenants.
    /// Several questions of one tenant may be out ([`gate::MAX_QUESTIONS`]).
    fn admit_then_start(&mut self, lease: Lease, ctx: &mut Context<Self>) {
        let (tenant, destination) = (lease.tenant.clone(), self.name.clone());
        self.gate.ask(&tenant);
        let shared = self.shared.clone();
        let ask = async move {
            match shared.joined_cluster().await {
                Some(cluster) => cluster.admit(&tenant, &destination).await,
                None => Admission::Admitted,
            }
        };
        ctx.spawn(ask.into_actor(self).map(move |admission, act, ctx| {
            let tenant = lease.tenant.clone();
            act.gate.answered(&tenant);
            match admission {
                _ if act.stopping => {
                    act.active -= 1;
                    act.waiting.push(&tenant, lease);
                }
                Admission::Admitted => {
                    for held in act.gate.release(&tenant) {
                        act.waiting.push(&tenant, held);
                    }
                    act.start(lease, ctx);
                }
                Admission::Wait { after, counted } => {
                    debug!(destination = %act.name, %tenant, wait = ?after, ?counted, "tenant's message rate reached; its mail here waits");
                    act.active -= 1;
                    act.gate.wait(&tenant);
                    act.gate.hold(&tenant, lease, true);
                    ctx.run_later(after, move |act, ctx| {
                        act.gate.resume(&tenant);
                        for held in act.gate.release(&tenant) {
                            act.waiting.push(&tenant, held);
                        }
                        act.pump(ctx);
                    });
                }
            }
            act.pump(ctx);
        }));
    }

    fn defer_in_backoff(
        &mut self,
        lease: Lease,
        until: SystemTime,
        why: &Reason,
        policy: &Effective,
        ctx: &mut Context<Self>,
    ) {
        let reason = Reason::Paused {
            until,
            cause: Box::new(why.clone()),
        };
        let shared = self.shared.clone();
        let scheduler = self.scheduler.clone();
        let level = policy.level;
        let destination = self.name.clone();
        self.active += 1;
        let span = span(&lease);
        let work = async move {
            let config = shared.live.current();
            let (outcomes, attempt) = defer_all(&lease, &reason);
            log_outcomes(
                &lease,
                &outcomes,
                &attempt,
                Some(level),
                std::time::Instant::now(),
            );
            let tenant = lease.tenant.clone();
            conclude(&shared, &config, lease, outcomes, attempt).await;
            scheduler.done.do_send(Done {
                tenant,
                destination,
            });
        };
        let work = tracing::Instrument::instrument(work, span);
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.active -= 1;
            act.pump(ctx);
        }));
    }

    fn on_report(&mut self, report: Report, started: SystemTime) {
        let delivery = &self.shared.live.current().delivery;
        // Without a policy (it did not parse) the attempt tried nothing.
        let Some(policy) = report.policy.clone() else {
            self.last = Some(report);
            self.publish();
            return;
        };
        let change = self.pauses.record(
            &report.health,
            &policy,
            started,
            SystemTime::now(),
            delivery.destination_backoff,
            delivery.max_destination_backoff,
        );
        let (level, min_tls) = (policy.level, policy.min_tls);
        match (&report.health, change) {
            (_, PauseChange::Cleared { down: true, .. }) => {
                info!(destination = %self.name, "destination reachable again")
            }
            (_, PauseChange::Cleared { policy: true, .. }) => {
                info!(destination = %self.name, %level, %min_tls, "destination delivers under this policy again")
            }
            (Health::Unreachable(reason), PauseChange::Paused { failures, pause }) => {
                info!(destination = %self.name, failures, pause_s = pause.as_secs(), %reason, "destination unreachable; pausing it")
            }
            (Health::Refused(reason), PauseChange::Paused { failures, pause }) => {
                info!(destination = %self.name, %level, %min_tls, failures, pause_s = pause.as_secs(), %reason, "destination refuses this policy; pausing its mail under it")
            }
            (_, PauseChange::Counted { since, until }) => {
                debug!(destination = %self.name, since = %humantime_like(since), until = %humantime_like(until), "an attempt under way before the pause ran out failed; the pause stays as it is")
            }
            (_, PauseChange::Stale) => {
                debug!(destination = %self.name, "attempt started before the destination answered or was flushed failed; no pause")
            }
            _ => {}
        }
        self.last = Some(report);
    }

    fn close_idle(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        let expired = self.pool.expire(timeout);
        if !expired.is_empty() {
            ctx.spawn(
                async move {
                    for conn in expired {
                        conn.close().await;
                    }
                }
                .into_actor(self),
            );
            self.publish();
        }
    }

    /// Nothing waiting, running, pooled or paused.
    fn is_idle(&self) -> bool {
        let now = SystemTime::now();
        self.waiting.is_empty()
            && self.gate.is_empty()
            && self.active == 0
            && self.pool.is_empty()
            && !self.pauses.any_running(now)
    }

    /// Offers retirement after [`RETIRE_AFTER`] idle; stops once retired
    /// and idle.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.is_idle() {
            self.idle_since = None;
            return;
        }
        if self.retired {
            ctx.stop();
            return;
        }
        let now = std::time::Instant::now();
        let since = *self.idle_since.get_or_insert(now);
        if !self.offered_retirement && now.duration_since(since) >= RETIRE_AFTER {
            self.offered_retirement = true;
            self.scheduler.idle.do_send(Idle {
                name: self.name.clone(),
                serial: self.serial,
            });
        }
    }

    fn publish(&self) {
        if self.retired {
            return;
        }
        let last = self.last.as_ref();
        self.board.set(
            &self.name,
            DestinationStatus {
                name: self.name.clone(),
                mx_hosts: last.map(|r| r.hosts.clone()).unwrap_or_default(),
                tls: last.and_then(|r| r.tls.clone()),
                active_connections: self.active,
                idle_connections: self.pool.len(),
                waiting: self.waiting.len() + self.gate.len(),
                backoff_until: self.pauses.down_until().map(unix_ms),
                last_error: self.last_reason().map(Reason::to_string),
                last_reason: self.last_reason().cloned(),
            },
        );
    }
}

impl Destination {
    /// Why the last attempt found the destination unreachable or refusing.
    fn last_reason(&self) -> Option<&Reason> {
        match self.last.as_ref().map(|r| &r.health) {
            Some(Health::Unreachable(reason) | Health::Refused(reason)) => Some(reason),
            _ => None,
        }
    }
}

/// The pause after `failures` consecutive unreachable attempts.
pub(crate) fn pause_after(failures: u32, first: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(max)
}

fn humantime_like(t: SystemTime) -> String {
    crate::date::rfc5322_date(crate::date::unix_seconds(t))
}

impl Actor for Destination {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(500), |act, ctx| {
            let timeout = act.shared.live.current().delivery.idle_timeout;
            act.close_idle(timeout, ctx);
            act.check_idle(ctx);
        });
    }
}

impl Handler<Retire> for Destination {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        self.retired = true;
        self.check_idle(ctx);
    }
}

impl Handler<Deliver> for Destination {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let lease = msg.0;
        self.waiting.push(&lease.tenant.clone(), lease);
        self.pump(ctx);
    }
}

/// The engine is stopping: start no more attempts, give the waiting
/// leases back to the queue.
impl Handler<GiveBack> for Destination {
    type Result = ();
    fn handle(&mut self, _: GiveBack, _: &mut Self::Context) {
        self.stopping = true;
        self.give_back();
    }
}

impl Handler<Flush> for Destination {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.pauses.clear(SystemTime::now());
        self.close_idle(Duration::ZERO, ctx);
        info!(destination = %self.name, "destination flushed: backoff cleared, idle connections closed");
        self.publish();
    }
}

mod gate;
#[cfg(test)]
mod tests;
