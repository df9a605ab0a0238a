//! The destination actor: one per next hop (a recipient domain, or a
//! managed domain's downstream route). It owns the hop's pool of idle
//! connections, its concurrency limit and its backoff, and runs delivery
//! attempts as futures on its arbiter.
//!
//! Backoff: when an attempt could reach no host at all (DNS failure, every
//! MX refused the connection or timed out), the destination pauses for
//! `[delivery] destination_backoff`, doubled per further failure up to
//! `max_destination_backoff`. Leases that arrive meanwhile are deferred at
//! once with that reason instead of each trying and failing; the first
//! lease after the pause tries again. Any server answering clears it.
//!
//! When the hosts answered but refused what one policy requires (no
//! STARTTLS for `mandatory`, TLS below its minimum, a DANE or MTA-STS
//! failure), only mail under that same policy (level and minimum TLS
//! version) pauses: the destination's mail under other policies, which
//! the hosts may well take, goes on. A transaction under that policy, or
//! the pause running out, clears it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;
use sealpost_queue::Lease;
use tracing::{error, info};

use super::scheduler::{Done, Scheduler};
use super::status::{DestinationStatus, StatusBoard};
use crate::date::unix_ms;
use crate::delivery::attempt::{conclude, defer_all, log_outcomes, return_lease};
use crate::delivery::{attempt, effective_policy, Effective, Health, Pool, Report, Shared};

/// Deliver this lease.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Lease);

/// Forget the backoff and close the idle connections (admin "flush").
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Backoff {
    until: SystemTime,
    failures: u32,
    reason: String,
}

/// What holds a destination's leases back: its own pause (no host
/// answered) and the pauses of policies its hosts refused. Pure state,
/// driven by the attempts' [`Health`] and the clock passed in.
#[derive(Debug, Default)]
struct Pauses {
    /// No host answered: every lease waits.
    down: Option<Backoff>,
    /// The hosts refused one policy's TLS: leases under that policy wait.
    /// An expired entry is kept so that a further refusal doubles the
    /// pause; there are at most as many entries as (level, minimum TLS
    /// version) pairs.
    refused: HashMap<Effective, Backoff>,
}

/// What [`Pauses::record`] changed, for the log.
#[derive(Debug, PartialEq, Eq)]
enum PauseChange {
    None,
    Cleared { down: bool, policy: bool },
    Paused { failures: u32, pause: Duration },
}

impl Pauses {
    /// The pause holding back a lease under `policy` at `now`.
    fn holding(&self, policy: &Effective, now: SystemTime) -> Option<&Backoff> {
        self.down
            .as_ref()
            .filter(|b| b.until > now)
            .or_else(|| self.refused.get(policy).filter(|b| b.until > now))
    }

    /// Takes an attempt's health under `policy` into account.
    fn record(
        &mut self,
        health: &Health,
        policy: &Effective,
        now: SystemTime,
        first: Duration,
        max: Duration,
    ) -> PauseChange {
        let next = |previous: Option<&Backoff>, reason: &str| {
            let failures = previous.map_or(0, |b| b.failures) + 1;
            let pause = pause_after(failures, first, max);
            let backoff = Backoff {
                until: now + pause,
                failures,
                reason: reason.to_string(),
            };
            (backoff, PauseChange::Paused { failures, pause })
        };
        let change = match health {
            Health::Reached => {
                let down = self.down.take().is_some();
                let policy = self.refused.remove(policy).is_some();
                if down || policy {
                    PauseChange::Cleared { down, policy }
                } else {
                    PauseChange::None
                }
            }
            Health::Unreachable(reason) => {
                let (backoff, change) = next(self.down.as_ref(), reason);
                self.down = Some(backoff);
                change
            }
            Health::Refused(reason) => {
                let (backoff, change) = next(self.refused.get(policy), reason);
                self.refused.insert(policy.clone(), backoff);
                change
            }
            Health::NotTried => PauseChange::None,
        };
        change
    }

    /// Until when the whole destination is paused.
    fn down_until(&self) -> Option<SystemTime> {
        self.down.as_ref().map(|b| b.until)
    }

    fn clear(&mut self) {
        self.down = None;
        self.refused.clear();
    }
}

pub struct Destination {
    name: String,
    shared: Arc<Shared>,
    scheduler: Addr<Scheduler>,
    board: Arc<StatusBoard>,
    pool: Arc<Pool>,
    waiting: VecDeque<Lease>,
    active: usize,
    pauses: Pauses,
    last: Option<Report>,
    /// Since when nothing is waiting, running, pooled or paused.
    idle_since: Option<std::time::Instant>,
    /// The scheduler was told this actor is idle.
    offered_retirement: bool,
    /// The scheduler forgot this actor: finish what is here, then stop.
    retired: bool,
}

/// An actor idle this long offers to retire, so one actor per destination
/// ever seen does not pile up.
const RETIRE_AFTER: Duration = Duration::from_secs(300);

/// This destination's actor has been idle for [`RETIRE_AFTER`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Idle {
    pub name: String,
    pub actor: Addr<Destination>,
}

/// The scheduler forgot this actor (it sends new leases to a new one).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Destination {
    pub fn new(
        name: String,
        shared: Arc<Shared>,
        scheduler: Addr<Scheduler>,
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
            board,
            pool,
            waiting: VecDeque::new(),
            active: 0,
            pauses: Pauses::default(),
            last: None,
            idle_since: None,
            offered_retirement: false,
            retired: false,
        }
    }

    /// The pause that holds `lease` back now, if any: the destination's
    /// own, else its policy's.
    fn pause_for(&self, lease: &Lease) -> Option<(SystemTime, String, Effective)> {
        let policy = effective_policy(&self.shared.live.current(), lease);
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
        while self.active < limit {
            let Some(lease) = self.waiting.pop_front() else {
                break;
            };
            if let Some((until, reason, policy)) = self.pause_for(&lease) {
                self.defer_in_backoff(lease, until, &reason, &policy, ctx);
                continue;
            }
            self.active += 1;
            let (key, tenant) = (lease.key(), lease.tenant.clone());
            // A panic in an attempt must not take the actor (and every
            // lease sent to it later) down with it.
            let work = AssertUnwindSafe(attempt(self.shared.clone(), self.pool.clone(), lease))
                .catch_unwind();
            ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
                act.active -= 1;
                match result {
                    Ok(report) => {
                        act.scheduler.do_send(Done {
                            tenant,
                            delivered: report.delivered,
                            deferred: report.deferred,
                            failed: report.failed,
                        });
                        act.on_report(report);
                    }
                    Err(_) => {
                        let config = act.shared.live.current();
                        let until = return_lease(&act.shared, &config, &key);
                        act.scheduler.do_send(Done::nothing(tenant));
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
        self.publish();
    }

    fn defer_in_backoff(
        &mut self,
        lease: Lease,
        until: SystemTime,
        why: &str,
        policy: &Effective,
        ctx: &mut Context<Self>,
    ) {
        let reason = format!(
            "destination {} is paused until {} after: {why}",
            self.name,
            humantime_like(until)
        );
        let shared = self.shared.clone();
        let scheduler = self.scheduler.clone();
        let level = policy.level;
        self.active += 1;
        let work = async move {
            let config = shared.live.current();
            let (outcomes, attempt) = defer_all(&lease, &reason);
            log_outcomes(
                &lease,
                &outcomes,
                &attempt,
                level,
                std::time::Instant::now(),
            );
            let tenant = lease.tenant.clone();
            let deferred = outcomes.len();
            conclude(&shared, &config, lease, outcomes, attempt).await;
            scheduler.do_send(Done {
                tenant,
                delivered: 0,
                deferred,
                failed: 0,
            });
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.active -= 1;
            act.pump(ctx);
        }));
    }

    fn on_report(&mut self, report: Report) {
        let delivery = &self.shared.live.current().delivery;
        let change = self.pauses.record(
            &report.health,
            &report.policy,
            SystemTime::now(),
            delivery.destination_backoff,
            delivery.max_destination_backoff,
        );
        let (level, min_tls) = (report.policy.level, report.policy.min_tls);
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
                        conn.quit().await;
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
            && self.active == 0
            && self.pool.is_empty()
            && self.pauses.down.as_ref().is_none_or(|b| b.until <= now)
            && self.pauses.refused.values().all(|b| b.until <= now)
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
            self.scheduler.do_send(Idle {
                name: self.name.clone(),
                actor: ctx.address(),
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
                waiting: self.waiting.len(),
                backoff_until: self.pauses.down_until().map(unix_ms),
                last_error: match last.map(|r| &r.health) {
                    Some(Health::Unreachable(reason) | Health::Refused(reason)) => {
                        Some(reason.clone())
                    }
                    _ => None,
                },
            },
        );
    }
}

/// The pause after `failures` consecutive unreachable attempts.
pub fn pause_after(failures: u32, first: Duration, max: Duration) -> Duration {
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
        self.waiting.push_back(msg.0);
        self.pump(ctx);
    }
}

impl Handler<Flush> for Destination {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.pauses.clear();
        self.close_idle(Duration::ZERO, ctx);
        info!(destination = %self.name, "destination flushed: backoff cleared, idle connections closed");
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{MinTlsVersion, SecurityLevel};

    fn policy(level: SecurityLevel, min_tls: MinTlsVersion) -> Effective {
        Effective { level, min_tls }
    }

    #[test]
    fn a_refused_policy_pauses_only_itself_until_it_delivers_again() {
        let s = Duration::from_secs;
        let t0 = SystemTime::UNIX_EPOCH + s(1_800_000_000);
        let strict = policy(SecurityLevel::Mandatory, MinTlsVersion::Tls12);
        let loose = policy(SecurityLevel::Opportunistic, MinTlsVersion::Any);
        let mut p = Pauses::default();
        let refused = Health::Refused("mandatory: STARTTLS not offered".into());
        assert_eq!(
            p.record(&refused, &strict, t0, s(60), s(600)),
            PauseChange::Paused {
                failures: 1,
                pause: s(60)
            }
        );
        assert!(p.holding(&strict, t0 + s(1)).is_some());
        assert!(
            p.holding(&loose, t0 + s(1)).is_none(),
            "other policies go on"
        );
        assert_eq!(p.down_until(), None);
        // Mail under the other policy is delivered: the refusal stays.
        p.record(&Health::Reached, &loose, t0 + s(2), s(60), s(600));
        assert!(p.holding(&strict, t0 + s(3)).is_some());
        // The pause runs out; other mail goes on meanwhile.
        assert!(p.holding(&strict, t0 + s(60)).is_none());
        p.record(&Health::Reached, &loose, t0 + s(60), s(60), s(600));
        // The same policy refused again: the pause doubles.
        assert_eq!(
            p.record(&refused, &strict, t0 + s(61), s(60), s(600)),
            PauseChange::Paused {
                failures: 2,
                pause: s(120)
            }
        );
        // A transaction under it clears it.
        assert_eq!(
            p.record(&Health::Reached, &strict, t0 + s(200), s(60), s(600)),
            PauseChange::Cleared {
                down: false,
                policy: true
            }
        );
        assert!(p.holding(&strict, t0 + s(201)).is_none());
    }

    #[test]
    fn an_unreachable_destination_pauses_every_policy_until_a_server_answers() {
        let s = Duration::from_secs;
        let t0 = SystemTime::UNIX_EPOCH + s(1_800_000_000);
        let strict = policy(SecurityLevel::MandatoryDane, MinTlsVersion::Tls13);
        let loose = policy(SecurityLevel::Opportunistic, MinTlsVersion::Any);
        let mut p = Pauses::default();
        let down = Health::Unreachable("connection refused".into());
        p.record(&down, &strict, t0, s(60), s(600));
        assert!(p.holding(&loose, t0 + s(1)).is_some());
        assert!(p.holding(&strict, t0 + s(1)).is_some());
        assert!(
            p.holding(&loose, t0 + s(61)).is_none(),
            "the pause runs out"
        );
        assert_eq!(
            p.record(&Health::Reached, &loose, t0 + s(70), s(60), s(600)),
            PauseChange::Cleared {
                down: true,
                policy: false
            }
        );
        assert!(p.holding(&strict, t0 + s(71)).is_none());
        assert_eq!(
            p.record(&Health::NotTried, &strict, t0 + s(72), s(60), s(600)),
            PauseChange::None
        );
    }

    #[test]
    fn pauses_double_up_to_the_maximum() {
        let s = Duration::from_secs;
        let table = [(1, 60), (2, 120), (3, 240), (6, 1800), (40, 1800)];
        for (failures, want) in table {
            assert_eq!(pause_after(failures, s(60), s(1800)), s(want), "{failures}");
        }
    }
}
