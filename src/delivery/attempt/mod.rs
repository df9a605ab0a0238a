//! One delivery attempt of one lease (the due recipients of one message
//! for one destination): the effective policy under the configuration in
//! force, the plan, the SMTP session over a pooled or new connection, and
//! the outcomes written to the queue before the lease is released.
//!
//! Rules kept here (RFC-NOTES, DESIGN "Rules that keep it safe"):
//! - MX hosts by preference, each address in turn; the cleartext retry of
//!   the same address only under `opportunistic` after a failed handshake.
//! - A required level never sends a byte of the message in cleartext: the
//!   client returns a connection only once its requirement holds.
//! - Once the message body has been sent, an error leaves the recipients'
//!   fate unknown: they are deferred and no other host is tried in this
//!   attempt (at-least-once, never silently twice in one attempt).
//! - Every outcome carries a reason a person can read: the remote reply
//!   with its host, or the level and the policy's refusal.
//! - The sender's TLS request (RFC 8689: REQUIRETLS, `TLS-Required: No`)
//!   changes the level planned under ([`super::tls_request`]); a
//!   REQUIRETLS message skips every host whose TLS is not authenticated
//!   and carries the parameter on MAIL FROM.

mod connection;
mod record;
mod rules;
mod tls_result;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sealpost_queue::{Authentication as QueueAuth, Lease, Outcome, QueueError};
use tracing::{debug, error, info, Instrument};

use super::decision::{
    body_was_sent, connection_verdict, session_verdict, ConnectionEvent, ConnectionVerdict, Hop,
    HopTls, NotUsed,
};
use super::plan::{effective_policy, next_hop, Effective, NextHop, Plan, Planner};
use super::pool::{Leased, Pool};
use super::reason::{
    connection_failure, plan_deferral_health, remote, status, Health, LocalCause, Place, Reason,
    Status,
};
pub(crate) use super::shared::DeliveryContext;
use super::tls_request;
use crate::cluster::ConnectionLease;
use crate::config::Config;
use crate::policy::SecurityLevel;
use crate::smtp::address::{parse_forward_path, parse_reverse_path};
use crate::smtp::client::{
    Achieved, ClientConfig, ClientError, Connection, Delivery, MessageRefusal, OutboundMessage,
    Peer, RecipientOutcome, Timeouts, TlsParams,
};
use crate::smtp::{ForwardPath, ReversePath};
pub(crate) use record::{conclude, defer_all, log_outcomes, return_lease, Outcomes};

use record::{attempt_from, bounces_now, deferred, fail_all, local_attempt};
use rules::{Event, Rules, Step, Verdict};

/// What an attempt did, for the destination actor and the logs.
#[derive(Debug, Clone)]
pub struct Report {
    pub health: Health,
    pub delivered: usize,
    pub deferred: usize,
    pub failed: usize,
    /// The hosts of the plan, in order (for the admin view).
    pub hosts: Vec<String>,
    /// What the plan required of TLS, e.g. "DANE authentication ...".
    pub tls: Option<String>,
    pub tenant: String,
    /// From arrival to this attempt's end.
    pub latency: std::time::Duration,
    /// The policy the attempt ran under (a refusal pauses only it);
    /// `None` when the stored policy did not parse.
    pub policy: Option<Effective>,
}

/// The client settings under `config`.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new(config.server.hostname.as_str());
    if let Some(limit) = config.delivery.command_timeout {
        client.timeouts = Timeouts::uniform(limit);
    }
    client
}

/// Runs one attempt and records it in the queue, inside a `delivery`
/// span naming the message, its tenant and its destination (every event
/// of the attempt carries them).
pub async fn attempt(shared: Arc<DeliveryContext>, pool: Arc<Pool>, lease: Lease) -> Report {
    let span = span(&lease);
    run(shared, pool, lease).instrument(span).await
}

/// The span of one delivery attempt (also of a lease deferred without
/// one, while its destination is paused): its events carry the message
/// id, tenant and destination without repeating them.
pub(crate) fn span(lease: &Lease) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        id = %lease.id,
        tenant = %lease.tenant,
        destination = %lease.destination
    )
}

async fn run(shared: Arc<DeliveryContext>, pool: Arc<Pool>, lease: Lease) -> Report {
    let started = Instant::now();
    let config = shared.live.current();
    let mut report = Report {
        health: Health::NotTried,
        delivered: 0,
        deferred: 0,
        failed: 0,
        hosts: Vec::new(),
        tls: None,
        tenant: lease.tenant.clone(),
        latency: std::time::Duration::ZERO,
        policy: None,
    };
    let effective = match effective_policy(&config, &lease) {
        Ok(effective) => effective,
        Err(bad) => {
            // Never a weaker level in its place: the message waits until
            // an operator looks at it.
            error!(error = %bad, level = %lease.policy.level, min_tls = %lease.policy.min_tls, "the stored policy of a queued message does not parse; deferring it");
            let reason = bad.reason();
            let (outcomes, attempt) = defer_all(&lease, &reason);
            log_outcomes(&lease, &outcomes, &attempt, None, started);
            report.deferred = outcomes.len();
            report.latency = lease.arrived_at.elapsed().unwrap_or_default();
            conclude(&shared, &config, lease, outcomes, attempt).await;
            return report;
        }
    };
    let planned = tls_request::plan_under(effective, lease.tls_request);
    tls_request::log_change(&lease.destination, planned.change);
    let effective = planned.effective;
    report.policy = Some(effective.clone());
    let planner = Planner {
        resolver: &shared.resolver,
        mta_sts: &shared.mta_sts,
        smtp_port: config.delivery.smtp_port,
    };
    let hop = next_hop(&config, &lease.destination);
    let plan = planner.plan(&hop, &effective).await;
    let mut plan_policy = tls_result::PlanPolicy::of(&plan);
    let level = effective.level;
    let (mut outcomes, mut attempt, mut failed_before) =
        run_plan(&shared, &pool, &config, &lease, plan, level, &mut report).await;
    if level == SecurityLevel::MtaSts
        && recheck_before_bounce(&shared, &config, &lease, &hop, &outcomes).await
    {
        let plan = planner.plan(&hop, &effective).await;
        plan_policy = tls_result::PlanPolicy::of(&plan);
        (outcomes, attempt, failed_before) =
            run_plan(&shared, &pool, &config, &lease, plan, level, &mut report).await;
    }
    let domain = match &hop {
        NextHop::Domain(domain) => Some(*domain),
        _ => None,
    };
    tls_result::record(
        &shared,
        &lease,
        domain,
        &plan_policy,
        &attempt,
        &failed_before,
    )
    .await;
    for (_, outcome) in &outcomes {
        match outcome {
            Outcome::Delivered { .. } => report.delivered += 1,
            Outcome::Deferred { .. } => report.deferred += 1,
            Outcome::Failed { .. } => report.failed += 1,
        }
    }
    log_outcomes(&lease, &outcomes, &attempt, Some(level), started);
    // A session that ran names its MX; a deferral that tried one address
    // names it too, but no session ran: refused.
    let session_ran = attempt.mx_host.is_some() && report.health == Health::Reached;
    let tls_outcome = match (&attempt.tls_version, attempt.authentication, session_ran) {
        (Some(_), QueueAuth::Dane | QueueAuth::WebPki, _) => "authenticated",
        (Some(_), QueueAuth::None, _) => "unauthenticated",
        (None, _, true) => "plaintext",
        (None, _, false) => "refused",
    };
    let achieved = crate::metrics::tls_achieved(
        level,
        attempt.authentication,
        attempt.tls_version.is_some(),
        session_ran,
    );
    if let Some(achieved) = achieved {
        shared.metrics.destination_tls(&lease.destination, achieved);
    }
    let deferral_kind = match report.health {
        Health::Refused(_) => "policy",
        Health::Unreachable(_) => "unreachable",
        Health::Reached => "peer",
        Health::NotTried => "local",
    };
    let refused = matches!(report.health, Health::Refused(_));
    if report.delivered > 0 || refused {
        let delivered = achieved.filter(|_| report.delivered > 0);
        (shared.metrics).peer_outcome(&lease.tenant, &lease.destination, delivered, refused);
    }
    let tenant = lease.tenant.clone();
    let latency = lease.arrived_at.elapsed().unwrap_or_default();
    conclude(&shared, &config, lease, outcomes, attempt).await;
    let metrics = &shared.metrics;
    for _ in 0..report.delivered {
        metrics.delivered(&tenant, latency);
    }
    for _ in 0..report.deferred {
        metrics.deferred(&tenant);
        metrics.deferral(level.as_str(), deferral_kind);
    }
    metrics.tls_outcome(level.as_str(), tls_outcome);
    report.latency = latency;
    report
}

/// Carries out `plan` for `lease`: the outcomes, the attempt record, and
/// the reasons of the addresses that failed before the one that replied
/// ([`Delivered::failed_before`]), with the report's health, hosts and TLS
/// filled in.
async fn run_plan(
    shared: &Arc<DeliveryContext>,
    pool: &Arc<Pool>,
    config: &Config,
    lease: &Lease,
    plan: Plan,
    level: SecurityLevel,
    report: &mut Report,
) -> (Outcomes, sealpost_queue::Attempt, Vec<Reason>) {
    let (outcomes, attempt) = match plan {
        Plan::Fail(reason) => {
            report.health = Health::Reached;
            fail_all(lease, &reason, local_attempt(&reason))
        }
        Plan::Defer(reason) => {
            report.health = plan_deferral_health(level, reason.clone());
            defer_all(lease, &reason)
        }
        Plan::Hops { hops, .. } => {
            report.hosts = hops.iter().map(|h| h.host.clone()).collect();
            report.tls = hops.first().map(|h| h.tls.to_string());
            // Held until the attempt ends: the body and its dot-stuffed copy.
            let _memory = shared.body_memory.hold(lease.size()).await;
            let body = {
                let queue = shared.queue.clone();
                let lease = lease.clone();
                tokio::task::spawn_blocking(move || queue.read_body(&lease)).await
            };
            match body {
                Ok(Ok(body)) => {
                    let client = Arc::new(client_config(config));
                    let run = SmtpDriver {
                        shared,
                        pool,
                        client,
                        destination: &lease.destination,
                    };
                    let delivered = run.deliver(lease, &hops, &body).await;
                    report.health = delivered.health;
                    return (
                        delivered.outcomes,
                        delivered.attempt,
                        delivered.failed_before,
                    );
                }
                Ok(Err(e)) => queue_trouble(lease, &e),
                Err(join) => queue_trouble(
                    lease,
                    &QueueError::Io {
                        path: shared.queue.path().to_path_buf(),
                        detail: join.to_string(),
                    },
                ),
            }
        }
    };
    (outcomes, attempt, Vec::new())
}

/// RFC 8461 section 5.1: before the last attempt of a message under the
/// `mta-sts` level bounces, look for a new policy (the TXT id again, and a
/// new fetch even within the wait after a failed one). A changed policy
/// gets one more try in this attempt instead of the bounce.
async fn recheck_before_bounce(
    shared: &DeliveryContext,
    config: &Config,
    lease: &Lease,
    hop: &NextHop<'_>,
    outcomes: &Outcomes,
) -> bool {
    let NextHop::Domain(domain) = hop else {
        return false;
    };
    let lifetime = config.delivery.retry.lifetime;
    if !bounces_now(SystemTime::now(), lease.arrived_at, lifetime, outcomes) {
        return false;
    }
    let Some(used) = shared.mta_sts.cached(domain) else {
        return false;
    };
    match shared.mta_sts.recheck_before_bounce(domain, &used.id).await {
        crate::mta_sts::BounceCheck::Changed(lookup) => {
            info!(%domain, used_id = %used.id, reason = %lookup.reason, "MTA-STS policy changed before the bounce; trying again under it");
            true
        }
        crate::mta_sts::BounceCheck::Unchanged(_) => {
            info!(%domain, used_id = %used.id, "MTA-STS policy unchanged before the bounce; the bounce stands");
            false
        }
    }
}

fn queue_trouble(lease: &Lease, e: &QueueError) -> (Outcomes, sealpost_queue::Attempt) {
    error!(error = %e, "reading the message body failed");
    defer_all(
        lease,
        &Reason::Queue {
            detail: e.to_string(),
        },
    )
}

/// The SMTP part of an attempt: the I/O the [`Rules`] ask for.
struct SmtpDriver<'a> {
    shared: &'a DeliveryContext,
    pool: &'a Pool,
    client: Arc<ClientConfig>,
    /// The next hop, whose fleet-wide connection limit a new connection
    /// counts against.
    destination: &'a str,
}

/// How often a delivery waiting for a fleet connection lease asks again.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// How trying one address ended.
enum Tried {
    /// A transaction ran: outcomes per recipient.
    Ran(Vec<RecipientOutcome>, Achieved),
    /// The server would not take this message (nothing sent).
    Refused(MessageRefusal, Achieved),
    /// The body was sent and then the connection failed: fate unknown.
    Unknown(ClientError),
    /// Nothing of the message was accepted.
    Failed(ClientError),
    /// The connection is up but its TLS does not do for this hop
    /// ([`connection_verdict`]): closed before MAIL.
    NotUsed {
        why: NotUsed,
        /// The local address of the connection.
        local: Option<std::net::IpAddr>,
    },
    /// The connection closed before the message was sent.
    Closed,
}

/// What a [`Verdict::Replied`] or [`Verdict::Fail`] needs of the session.
#[derive(Default)]
struct Seen {
    ran: Option<(Vec<RecipientOutcome>, Achieved)>,
    refused: Option<Achieved>,
    /// The addresses tried and failed (for the attempt record).
    failed_at: Vec<(String, SocketAddr)>,
    /// The address whose connection was lost after the body.
    lost_at: Option<(String, SocketAddr)>,
}

/// How the SMTP part of an attempt ended.
struct Delivered {
    outcomes: Outcomes,
    attempt: sealpost_queue::Attempt,
    health: Health,
    /// The reasons of the addresses that failed (or refused) before the
    /// one whose reply decided, in order; empty for the other verdicts,
    /// whose attempt reason holds every host's. TLS reporting counts
    /// their policy failures as sessions.
    failed_before: Vec<Reason>,
}

impl From<(Outcomes, sealpost_queue::Attempt, Health)> for Delivered {
    fn from((outcomes, attempt, health): (Outcomes, sealpost_queue::Attempt, Health)) -> Self {
        Delivered {
            outcomes,
            attempt,
            health,
            failed_before: Vec::new(),
        }
    }
}

impl SmtpDriver<'_> {
    async fn deliver(&self, lease: &Lease, hops: &[Hop], body: &[u8]) -> Delivered {
        let from =
            parse_reverse_path(&format!("<{}>", lease.mail_from)).unwrap_or(ReversePath::Null);
        let to: Vec<ForwardPath> = lease
            .recipients
            .iter()
            .filter_map(|r| parse_forward_path(&format!("<{}>", r.address)).ok())
            .collect();
        if to.len() != lease.recipients.len() {
            let reason = Reason::local(
                LocalCause::BadAddress,
                status::BAD_ADDRESS,
                "a queued recipient address no longer parses",
            );
            let (outcomes, attempt) = fail_all(lease, &reason, local_attempt(&reason));
            return (outcomes, attempt, Health::NotTried).into();
        }
        let message = OutboundMessage {
            from: &from,
            to: &to,
            body,
            requiretls: lease.tls_request.requires_tls(),
        };
        let mut rules = Rules::default();
        let mut seen = Seen::default();
        'hosts: for hop in hops {
            if message.requiretls && !tls_request::authenticated(&hop.tls) {
                info!(host = %hop.host, tls = %hop.tls, "REQUIRETLS: host not used, its TLS is not authenticated");
                match rules.on(Event::Unfit(tls_request::unfit(hop))) {
                    Step::Done(verdict) => return self.verdict(lease, verdict, seen),
                    _ => continue 'hosts,
                }
            }
            for addr in &hop.addresses {
                match self
                    .try_address(hop, *addr, &message, &mut rules, &mut seen)
                    .await
                {
                    Step::Done(verdict) => return self.verdict(lease, verdict, seen),
                    Step::NextHost => continue 'hosts,
                    Step::NextAddress | Step::RetryCleartext => {}
                }
            }
        }
        match rules.finish() {
            Some(verdict) => self.verdict(lease, verdict, seen),
            None => {
                let reason = Reason::local(
                    LocalCause::NoAddress,
                    status::NO_ROUTE,
                    "the plan had no address to try",
                );
                let (outcomes, attempt) = defer_all(lease, &reason);
                (outcomes, attempt, Health::Unreachable(reason)).into()
            }
        }
    }

    /// One address, with its cleartext retry when the rules grant it;
    /// what the rules say next.
    async fn try_address(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        message: &OutboundMessage<'_>,
        rules: &mut Rules,
        seen: &mut Seen,
    ) -> Step {
        let mut params = match hop.params(self.shared.webpki.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                let reason = Reason::Local {
                    cause: LocalCause::TlsSetup,
                    status: status::CRYPTO,
                    place: Place::at(&hop.host, addr.ip()),
                    detail: e.to_string(),
                };
                seen.failed_at.push((hop.host.clone(), addr));
                return rules.on(Event::HostFailed {
                    reason,
                    by_policy: true,
                });
            }
        };
        let mut pooled = true;
        loop {
            let tried = self
                .connect_and_send(hop, addr, &params, message, pooled)
                .await;
            let event = self.event(hop, addr, tried, &params, seen);
            if let Event::HostFailed { reason, .. } | Event::TlsFailed { reason, .. } = &event {
                info!(host = %hop.host, %addr, %reason, "host not used");
            }
            let next = rules.on(event);
            match &next {
                Step::RetryCleartext => match params.cleartext_retry() {
                    Some(retry) => {
                        debug!(host = %hop.host, %addr, "TLS handshake failed; retrying this host in cleartext (opportunistic)");
                        params = retry;
                        pooled = false;
                        continue;
                    }
                    None => return Step::NextAddress,
                },
                Step::NextAddress => seen.failed_at.push((hop.host.clone(), addr)),
                Step::NextHost | Step::Done(_) => {}
            }
            return next;
        }
    }

    /// The event for the rules from what trying an address did.
    fn event(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        tried: Tried,
        params: &TlsParams,
        seen: &mut Seen,
    ) -> Event {
        let webpki = matches!(hop.tls, HopTls::WebPki);
        match tried {
            Tried::Ran(outcomes, achieved) => {
                seen.ran = Some((outcomes, achieved));
                Event::Replied
            }
            Tried::Refused(why, achieved) => {
                let (class, subject, detail) = why.status();
                let cause = if why.is_requiretls() {
                    LocalCause::RequireTls
                } else {
                    LocalCause::MessageRefused
                };
                let reason = Reason::Local {
                    cause,
                    status: Status(class, subject, detail),
                    place: Place::at(&hop.host, addr.ip()),
                    detail: why.to_string(),
                };
                seen.refused = Some(achieved);
                Event::MessageRefused(reason)
            }
            Tried::Unknown(e) => {
                seen.lost_at = Some((hop.host.clone(), addr));
                Event::LostAfterBody(Reason::Local {
                    cause: LocalCause::ConnectionLostAfterBody,
                    status: status::BAD_CONNECTION,
                    place: Place::at(&hop.host, addr.ip()),
                    detail: format!(
                        "connection lost after the message was sent, it may have been delivered: {}",
                        connection_failure(webpki, &e)
                    ),
                })
            }
            Tried::Failed(e) => {
                let reason = connection_failure(webpki, &e);
                // The same verdict the probe gives for what it saw.
                match connection_verdict(hop, params, &ConnectionEvent::of_error(&e)) {
                    ConnectionVerdict::RetryCleartext(_) => Event::TlsFailed {
                        reason,
                        cleartext_allowed: true,
                    },
                    ConnectionVerdict::NotUsed(why) => Event::HostFailed {
                        reason,
                        by_policy: why.by_policy(),
                    },
                    // The server answered; the client refused its TLS.
                    ConnectionVerdict::SendOverTls { .. } | ConnectionVerdict::SendCleartext(_) => {
                        Event::HostFailed {
                            reason,
                            by_policy: true,
                        }
                    }
                }
            }
            Tried::NotUsed { why, local } => Event::HostFailed {
                reason: why.reason(&hop.host, addr.ip()).with_local(local),
                by_policy: why.by_policy(),
            },
            Tried::Closed => Event::HostFailed {
                reason: Reason::Local {
                    cause: LocalCause::ConnectionFailed,
                    status: status::BAD_CONNECTION,
                    place: Place::at(&hop.host, addr.ip()),
                    detail: "connection closed before the message was sent".into(),
                },
                by_policy: false,
            },
        }
    }

    /// The outcomes, record and health of a decided attempt.
    fn verdict(&self, lease: &Lease, verdict: Verdict, seen: Seen) -> Delivered {
        match verdict {
            Verdict::Replied(failed_before) => match seen.ran {
                Some((outcomes, achieved)) => Delivered {
                    failed_before,
                    ..self.ran(lease, outcomes, &achieved).into()
                },
                None => unreachable_verdict(lease).into(),
            },
            Verdict::Unknown(reason) => {
                let mut attempt = local_attempt(&reason);
                if let Some((host, addr)) = seen.lost_at {
                    attempt.mx_host = Some(host);
                    attempt.ip = Some(addr.ip().to_string());
                }
                let (outcomes, attempt) = deferred(lease, &reason, attempt);
                (outcomes, attempt, Health::Reached).into()
            }
            Verdict::Fail(reason) => {
                // Every host answered and refused this message as it is;
                // the refusal's status goes into the DSN.
                let attempt = match &seen.refused {
                    Some(achieved) => attempt_from(achieved, &reason),
                    None => local_attempt(&reason),
                };
                let (outcomes, attempt) = fail_all(lease, &reason, attempt);
                (outcomes, attempt, Health::Reached).into()
            }
            Verdict::Defer(reason, health) => {
                let mut attempt = local_attempt(&reason);
                if let [(host, addr)] = seen.failed_at.as_slice() {
                    // One address was tried: the record (and log) names it.
                    attempt.mx_host = Some(host.clone());
                    attempt.ip = Some(addr.ip().to_string());
                }
                let (outcomes, attempt) = deferred(lease, &reason, attempt);
                (outcomes, attempt, health).into()
            }
        }
    }
}

/// The rules said a transaction ran but none was seen: a bug, deferred
/// (never lost, never failed).
fn unreachable_verdict(lease: &Lease) -> (Outcomes, sealpost_queue::Attempt, Health) {
    error!("the attempt rules saw a reply the driver did not keep; deferring");
    let reason = Reason::local(
        LocalCause::ProtocolError,
        status::PROTOCOL,
        "internal: reply lost",
    );
    let (outcomes, attempt) = defer_all(lease, &reason);
    (outcomes, attempt, Health::NotTried)
}
