//! The destination actor: one per next hop (a recipient domain, or a
//! managed domain's downstream route). It owns the hop's pool of idle
//! connections, its concurrency limit and its backoff, and runs delivery
//! attempts as futures on its arbiter.
//!
//! Backoff: when an attempt could reach no host at all (DNS failure, every
//! MX refused the connection or the required TLS), the destination pauses
//! for `[delivery] destination_backoff`, doubled per further failure up to
//! `max_destination_backoff`. Leases that arrive meanwhile are deferred at
//! once with that reason instead of each trying and failing; the first
//! lease after the pause tries again. Any server answering clears it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use sealpost_queue::{Attempt, Authentication, Lease, Outcome};
use tracing::{info, warn};

use super::scheduler::{Done, Scheduler};
use super::status::{DestinationStatus, StatusBoard};
use crate::delivery::{attempt, Health, Pool, Report, Shared};

/// Deliver this lease.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Lease);

/// Forget the backoff and close the idle connections (admin "flush").
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

struct Backoff {
    until: SystemTime,
    failures: u32,
    reason: String,
}

pub struct Destination {
    name: String,
    shared: Arc<Shared>,
    scheduler: Addr<Scheduler>,
    board: Arc<StatusBoard>,
    pool: Arc<Pool>,
    waiting: VecDeque<Lease>,
    active: usize,
    backoff: Option<Backoff>,
    last: Option<Report>,
}

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
            backoff: None,
            last: None,
        }
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
            let paused = self
                .backoff
                .as_ref()
                .filter(|b| b.until > SystemTime::now())
                .map(|b| (b.until, b.reason.clone()));
            if let Some((until, reason)) = paused {
                self.defer_in_backoff(lease, until, &reason, ctx);
                continue;
            }
            self.active += 1;
            let work = attempt(self.shared.clone(), self.pool.clone(), lease);
            ctx.spawn(work.into_actor(self).map(|report, act, ctx| {
                act.active -= 1;
                act.scheduler.do_send(Done {
                    tenant: report.tenant.clone(),
                });
                act.on_report(report);
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
        ctx: &mut Context<Self>,
    ) {
        let reason = format!(
            "destination {} is paused until {} after: {why}",
            self.name,
            humantime_like(until)
        );
        for r in &lease.recipients {
            info!(
                id = %lease.id,
                to = %r.address,
                destination = %self.name,
                result = "deferred",
                detail = %reason,
                "delivery attempt"
            );
        }
        let shared = self.shared.clone();
        let scheduler = self.scheduler.clone();
        self.active += 1;
        let work = async move {
            let retry = shared.live.current().delivery.retry;
            let outcomes: Vec<(u16, Outcome)> = lease
                .recipients
                .iter()
                .map(|r| {
                    (
                        r.index,
                        Outcome::Deferred {
                            reason: reason.clone(),
                        },
                    )
                })
                .collect();
            let attempt = Attempt {
                at: SystemTime::now(),
                mx_host: None,
                ip: None,
                tls_version: None,
                cipher: None,
                authentication: Authentication::None,
                reply_or_reason: reason,
            };
            let queue = shared.queue.clone();
            let id = lease.id;
            let tenant = lease.tenant.clone();
            let result = tokio::task::spawn_blocking(move || {
                queue.record_attempt(lease, &outcomes, attempt, &retry)
            })
            .await;
            if let Ok(Err(e)) = result {
                warn!(%id, error = %e, "recording a deferral failed");
            }
            scheduler.do_send(Done { tenant });
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.active -= 1;
            act.pump(ctx);
        }));
    }

    fn on_report(&mut self, report: Report) {
        match &report.health {
            Health::Reached => {
                if self.backoff.take().is_some() {
                    info!(destination = %self.name, "destination reachable again");
                }
            }
            Health::Unreachable(reason) => {
                let delivery = &self.shared.live.current().delivery;
                let failures = self.backoff.as_ref().map_or(0, |b| b.failures) + 1;
                let pause = pause_after(
                    failures,
                    delivery.destination_backoff,
                    delivery.max_destination_backoff,
                );
                info!(destination = %self.name, failures, pause_s = pause.as_secs(), %reason, "destination unreachable; pausing it");
                self.backoff = Some(Backoff {
                    until: SystemTime::now() + pause,
                    failures,
                    reason: reason.clone(),
                });
            }
            Health::NotTried => {}
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

    fn publish(&self) {
        let last = self.last.as_ref();
        self.board.set(DestinationStatus {
            name: self.name.clone(),
            mx_hosts: last.map(|r| r.hosts.clone()).unwrap_or_default(),
            tls: last.and_then(|r| r.tls.clone()),
            active_connections: self.active,
            idle_connections: self.pool.len(),
            waiting: self.waiting.len(),
            backoff_until: self.backoff.as_ref().map(|b| unix_ms(b.until)),
            last_error: match last.map(|r| &r.health) {
                Some(Health::Unreachable(reason)) => Some(reason.clone()),
                _ => None,
            },
        });
    }
}

/// The pause after `failures` consecutive unreachable attempts.
pub fn pause_after(failures: u32, first: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(max)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn humantime_like(t: SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::date::rfc5322_date(secs)
}

impl Actor for Destination {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(500), |act, ctx| {
            let timeout = act.shared.live.current().delivery.idle_timeout;
            act.close_idle(timeout, ctx);
        });
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
        self.backoff = None;
        self.close_idle(Duration::ZERO, ctx);
        info!(destination = %self.name, "destination flushed: backoff cleared, idle connections closed");
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum() {
        let s = Duration::from_secs;
        let table = [(1, 60), (2, 120), (3, 240), (6, 1800), (40, 1800)];
        for (failures, want) in table {
            assert_eq!(pause_after(failures, s(60), s(1800)), s(want), "{failures}");
        }
    }
}
