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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::client::WebPkiServerVerifier;
use sealpost_queue::{Attempt, Authentication as QueueAuth, Lease, Outcome, Queue, QueueError};
use tracing::{debug, error, info, warn};

use super::plan::{Effective, Hop, NextHop, Plan, Planner};
use super::pool::Pool;
use super::reason::{describe_failure, local_reason, plan_deferral_health, refused_by_policy};
// Their home was here: the old paths keep working.
pub use super::reason::{parse_remote_reason, remote_reason};
use crate::config::Config;
use crate::dns::Resolver;
use crate::live::LiveConfig;
use crate::mta_sts::PolicyCache;
use crate::policy::{MinTlsVersion, PeerQuery, SecurityLevel};
use crate::smtp::address::{parse_forward_path, parse_reverse_path};
use crate::smtp::client::{
    Achieved, Authentication, ClientConfig, ClientError, Connection, Delivery, MessageRefusal,
    OutboundMessage, Peer, RecipientOutcome, Stage, Timeouts,
};
use crate::smtp::{EnhancedCode, ForwardPath, ReversePath};

/// The prefix of inbound destinations (see [`crate::inbound::reception`]).
pub const INBOUND_PREFIX: &str = "inbound:";

/// What every attempt needs, shared by all destinations.
pub struct Shared {
    pub queue: Arc<Queue>,
    pub live: Arc<LiveConfig>,
    pub resolver: Arc<Resolver>,
    pub mta_sts: Arc<PolicyCache>,
    /// WebPKI roots for MTA-STS (`None` when they could not be loaded).
    pub webpki: Option<Arc<WebPkiServerVerifier>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bounds the message content held in memory by attempts at once
    /// (see [`BodyMemory`]).
    pub body_memory: BodyMemory,
}

/// The memory attempts may spend on message content at once: a body read
/// for delivery is held with its dot-stuffed copy (about twice its size)
/// until the attempt ends. An attempt waits for its share before it reads
/// the body, so 32 concurrent 50 MiB messages to 10 destinations hold a few
/// hundred MiB, not 16 GiB. Small messages never wait in practice (4,096
/// attempts of 10 KiB take 80 MiB).
#[derive(Clone)]
pub struct BodyMemory {
    permits: Arc<tokio::sync::Semaphore>,
    /// The budget in units of `UNIT` octets.
    units: u64,
}

impl BodyMemory {
    /// The default budget: 256 MiB.
    pub const DEFAULT_BYTES: u64 = 256 * 1024 * 1024;
    const UNIT: u64 = 1024;

    pub fn new(bytes: u64) -> BodyMemory {
        let units = (bytes / Self::UNIT).clamp(1, u64::from(u32::MAX));
        BodyMemory {
            permits: Arc::new(tokio::sync::Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits until a body of `size` octets may be held; the permit frees
    /// its share when dropped. A body larger than the whole budget takes
    /// all of it (one such body at a time).
    pub async fn hold(&self, size: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let want = (size.saturating_mul(2) / Self::UNIT).clamp(1, self.units);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        self.permits.clone().acquire_many_owned(want).await.ok()
    }

    /// Octets of the budget not held now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * Self::UNIT
    }
}

impl Default for BodyMemory {
    fn default() -> Self {
        BodyMemory::new(BodyMemory::DEFAULT_BYTES)
    }
}

/// Whether the destination could be reached at all, for its backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Some server answered a transaction (whatever it said).
    Reached,
    /// No host could be used: none answered (connection refused or lost,
    /// timeouts, DNS failures); the reason. The destination is down for
    /// every policy.
    Unreachable(String),
    /// A server answered (or the plan was decided) but the message's
    /// policy refused what it offers: STARTTLS missing or refused, TLS
    /// below the minimum, a certificate that fails DANE or MTA-STS, no
    /// usable MX under DANE or an MTA-STS policy; the reason. Mail under
    /// another policy may still be delivered to this destination.
    Refused(String),
    /// The attempt did not get as far as the network (a queue error).
    NotTried,
}

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
    /// The policy the attempt ran under (a refusal pauses only it).
    pub policy: Effective,
}

/// The policy a queued message is delivered under now: a reload applies
/// at the next attempt. Outbound mail resolves (sender's managed domain,
/// recipient domain); inbound mail follows its route; a message without a
/// sender domain (a DSN) keeps the policy it was queued with.
pub fn effective_policy(config: &Config, lease: &Lease) -> Effective {
    if let Some(domain) = lease.destination.strip_prefix(INBOUND_PREFIX) {
        if let Some(route) = route_of(config, domain) {
            return Effective {
                level: route.level,
                min_tls: route.min_tls,
            };
        }
    } else if let Some((_, sender_domain)) = lease.mail_from.rsplit_once('@') {
        let resolution = config.policy.resolve(
            &sender_domain.to_ascii_lowercase(),
            PeerQuery::Outbound {
                recipient_domain: &lease.destination,
            },
        );
        return Effective {
            level: resolution.level,
            min_tls: resolution.min_tls,
        };
    }
    Effective {
        level: lease
            .policy
            .level
            .parse()
            .unwrap_or(SecurityLevel::Opportunistic),
        min_tls: lease.policy.min_tls.parse().unwrap_or(MinTlsVersion::Any),
    }
}

fn route_of<'a>(config: &'a Config, domain: &str) -> Option<&'a crate::config::Route> {
    let name: crate::policy::DomainName = domain.parse().ok()?;
    config.routes.get(&name)
}

/// The next hop of a destination key.
pub fn next_hop<'a>(config: &'a Config, destination: &'a str) -> NextHop<'a> {
    match destination.strip_prefix(INBOUND_PREFIX) {
        Some(domain) => match route_of(config, domain) {
            Some(route) => NextHop::Route { domain, route },
            None => NextHop::NoRoute { domain },
        },
        None => NextHop::Domain(destination),
    }
}

/// The client settings under `config`.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new(config.server.hostname.as_str());
    if let Some(limit) = config.delivery.command_timeout {
        client.timeouts = Timeouts::uniform(limit);
    }
    client
}

/// Runs one attempt and records it in the queue.
pub async fn attempt(shared: Arc<Shared>, pool: Arc<Pool>, lease: Lease) -> Report {
    let started = Instant::now();
    let config = shared.live.current();
    let effective = effective_policy(&config, &lease);
    let planner = Planner {
        resolver: &shared.resolver,
        mta_sts: &shared.mta_sts,
        smtp_port: config.delivery.smtp_port,
    };
    let hop = next_hop(&config, &lease.destination);
    let plan = planner.plan(&hop, &effective).await;
    let level = effective.level;
    let mut report = Report {
        health: Health::NotTried,
        delivered: 0,
        deferred: 0,
        failed: 0,
        hosts: Vec::new(),
        tls: None,
        tenant: String::new(),
        latency: std::time::Duration::ZERO,
        policy: effective.clone(),
    };
    let (mut outcomes, mut attempt) =
        run_plan(&shared, &pool, &config, &lease, plan, &mut report).await;
    if level == SecurityLevel::MtaSts
        && recheck_before_bounce(&shared, &config, &lease, &hop, &outcomes).await
    {
        let plan = planner.plan(&hop, &effective).await;
        (outcomes, attempt) = run_plan(&shared, &pool, &config, &lease, plan, &mut report).await;
    }
    for (_, outcome) in &outcomes {
        match outcome {
            Outcome::Delivered { .. } => report.delivered += 1,
            Outcome::Deferred { .. } => report.deferred += 1,
            Outcome::Failed { .. } => report.failed += 1,
        }
    }
    log_outcomes(&lease, &outcomes, &attempt, level, started);
    // A session that ran names its MX; a deferral that tried one address
    // names it too, but no session ran: refused.
    let session_ran = attempt.mx_host.is_some() && report.health == Health::Reached;
    let tls_outcome = match (&attempt.tls_version, attempt.authentication, session_ran) {
        (Some(_), QueueAuth::Dane | QueueAuth::Webpki, _) => "authenticated",
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
    let tenant = lease.tenant.clone();
    let latency = lease.arrived_at.elapsed().unwrap_or_default();
    conclude(&shared, &config, lease, outcomes, attempt).await;
    let metrics = &shared.metrics;
    for _ in 0..report.delivered {
        metrics.delivered(&tenant, latency);
    }
    let deferral_kind = match report.health {
        Health::Refused(_) => "policy",
        Health::Unreachable(_) => "unreachable",
        Health::Reached => "peer",
        Health::NotTried => "local",
    };
    for _ in 0..report.deferred {
        metrics.deferred(&tenant);
        metrics.deferral(level.as_str(), deferral_kind);
    }
    metrics.tls_outcome(level.as_str(), tls_outcome);
    report.tenant = tenant;
    report.latency = latency;
    report
}

/// Carries out `plan` for `lease`: the outcomes and the attempt record,
/// with the report's health, hosts and TLS filled in.
async fn run_plan(
    shared: &Arc<Shared>,
    pool: &Arc<Pool>,
    config: &Config,
    lease: &Lease,
    plan: Plan,
    report: &mut Report,
) -> (Outcomes, Attempt) {
    let level = report.policy.level;
    match plan {
        Plan::Fail(reason) => {
            let reason = format!("{level}: {reason}");
            report.health = Health::Reached;
            all(
                lease,
                |_| Outcome::Failed {
                    reason: reason.clone(),
                },
                local_attempt(&reason),
            )
        }
        Plan::Defer(reason) => {
            let reason = format!("{level}: {reason}");
            report.health = plan_deferral_health(level, reason.clone());
            defer_all(lease, &reason)
        }
        Plan::Hops(hops) => {
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
                    let run = Session {
                        shared,
                        pool,
                        client,
                        level,
                    };
                    let (outcomes, attempt, health) = run.deliver(lease, &hops, &body).await;
                    report.health = health;
                    (outcomes, attempt)
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
    }
}

/// RFC 8461 section 5.1: before the last attempt of a message under the
/// `mta-sts` level bounces, look for a new policy (the TXT id again, and a
/// new fetch even within the wait after a failed one). A changed policy
/// gets one more try in this attempt instead of the bounce.
async fn recheck_before_bounce(
    shared: &Shared,
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
            info!(id = %lease.id, %domain, used_id = %used.id, reason = %lookup.reason, "MTA-STS policy changed before the bounce; trying again under it");
            true
        }
        crate::mta_sts::BounceCheck::Unchanged(_) => {
            info!(id = %lease.id, %domain, used_id = %used.id, "MTA-STS policy unchanged before the bounce; the bounce stands");
            false
        }
    }
}

pub(crate) type Outcomes = Vec<(u16, Outcome)>;

/// Sends the delay warning owed (if any) and records the attempt in the
/// queue, durable before it returns; the lease is released. A failed
/// record gives the lease back to the queue, due again after the first
/// retry interval ([`return_lease`]): not stuck until a restart, and not
/// retried in a loop that could deliver again and again.
pub(crate) async fn conclude(
    shared: &Arc<Shared>,
    config: &Arc<Config>,
    lease: Lease,
    outcomes: Outcomes,
    attempt: Attempt,
) {
    warn_if_delayed(shared, config, &lease, &outcomes).await;
    let retry = config.delivery.retry;
    let queue = shared.queue.clone();
    let key = lease.key();
    let recorded = tokio::task::spawn_blocking(move || {
        queue.record_attempt(lease, &outcomes, attempt, &retry)
    })
    .await;
    let failure = match recorded {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let until = return_lease(shared, config, &key);
    error!(id = %key.id, error = %failure, retry_at = crate::date::unix_seconds(until), "recording a delivery attempt failed; its recipients are due again after the first retry interval");
}

/// Gives a lease that ended without a durable outcome back to the queue,
/// due again after the first retry interval (the lifetime still applies at
/// that attempt). Returns when it is due.
pub(crate) fn return_lease(
    shared: &Arc<Shared>,
    config: &Config,
    key: &sealpost_queue::LeaseKey,
) -> SystemTime {
    let until = SystemTime::now() + config.delivery.retry.first_retry;
    shared.queue.return_lease(key, until);
    until
}

/// Whether recording `outcomes` now ends the message's lifetime with a
/// bounce: every recipient deferred, and the lifetime over (the queue
/// expires a deferral at or after `arrived_at + lifetime`).
fn bounces_now(
    now: SystemTime,
    arrived_at: SystemTime,
    lifetime: Duration,
    outcomes: &Outcomes,
) -> bool {
    let all_deferred = !outcomes.is_empty()
        && outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Deferred { .. }));
    all_deferred && now >= arrived_at + lifetime
}

/// Queues the delay warning owed for the recipients deferred now, if the
/// message just waited past `[delivery] delay_warning` (see
/// [`super::bounce::delay_warning`]). [`conclude`] calls it before the
/// attempt is recorded, for every path that defers: an attempt, and a
/// lease held back by its destination's pause (else a message crossing
/// the threshold during a pause would never be warned about).
async fn warn_if_delayed(
    shared: &Arc<Shared>,
    config: &Arc<Config>,
    lease: &Lease,
    outcomes: &Outcomes,
) {
    let Some(threshold) = config.delivery.delay_warning else {
        return;
    };
    let old_enough = lease.arrived_at + threshold <= SystemTime::now();
    let deferred = outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Deferred { .. }));
    if !(old_enough && deferred) {
        return;
    }
    let (shared, config, lease, outcomes) = (
        shared.clone(),
        config.clone(),
        lease.clone(),
        outcomes.clone(),
    );
    let _ = tokio::task::spawn_blocking(move || {
        super::bounce::delay_warning(&shared, &config, &lease, &outcomes, threshold)
    })
    .await;
}

fn all(lease: &Lease, outcome: impl Fn(u16) -> Outcome, attempt: Attempt) -> (Outcomes, Attempt) {
    (
        lease
            .recipients
            .iter()
            .map(|r| (r.index, outcome(r.index)))
            .collect(),
        attempt,
    )
}

/// Every recipient of `lease` deferred with `reason`, recorded as `attempt`.
fn deferred(lease: &Lease, reason: &str, attempt: Attempt) -> (Outcomes, Attempt) {
    all(
        lease,
        |_| Outcome::Deferred {
            reason: reason.to_string(),
        },
        attempt,
    )
}

/// Every recipient of `lease` deferred for a local `reason`: no session ran.
pub(crate) fn defer_all(lease: &Lease, reason: &str) -> (Outcomes, Attempt) {
    deferred(lease, reason, local_attempt(reason))
}

fn local_attempt(reason: &str) -> Attempt {
    Attempt {
        at: SystemTime::now(),
        mx_host: None,
        ip: None,
        tls_version: None,
        cipher: None,
        authentication: QueueAuth::None,
        reply_or_reason: reason.to_string(),
    }
}

fn queue_trouble(lease: &Lease, e: &QueueError) -> (Outcomes, Attempt) {
    let reason = format!("queue: {e}");
    warn!(id = %lease.id, error = %e, "reading the message body failed");
    defer_all(lease, &reason)
}

/// Logs one `delivery attempt` event per recipient (also for deferrals
/// decided without a connection, e.g. while the destination is paused).
pub(crate) fn log_outcomes(
    lease: &Lease,
    outcomes: &Outcomes,
    attempt: &Attempt,
    level: SecurityLevel,
    started: Instant,
) {
    for (index, outcome) in outcomes {
        let to = lease
            .recipients
            .iter()
            .find(|r| r.index == *index)
            .map(|r| r.address.as_str())
            .unwrap_or("");
        let (result, detail) = match outcome {
            Outcome::Delivered { reply } => ("delivered", reply),
            Outcome::Deferred { reason } => ("deferred", reason),
            Outcome::Failed { reason } => ("failed", reason),
        };
        info!(
            id = %lease.id,
            to,
            destination = %lease.destination,
            %level,
            mx = attempt.mx_host.as_deref(),
            tls = attempt.tls_version.as_deref(),
            cipher = attempt.cipher.as_deref(),
            authentication = ?attempt.authentication,
            elapsed_ms = started.elapsed().as_millis() as u64,
            result,
            detail = %detail,
            "delivery attempt"
        );
    }
}

/// The SMTP part of an attempt.
struct Session<'a> {
    shared: &'a Shared,
    pool: &'a Pool,
    client: Arc<ClientConfig>,
    level: SecurityLevel,
}

/// How trying one address ended.
enum Tried {
    /// A transaction ran: outcomes per recipient.
    Ran(Vec<RecipientOutcome>, Achieved),
    /// The server would not take this message (nothing sent).
    Refused(MessageRefusal, Achieved),
    /// The body was sent and then the connection failed: fate unknown.
    Unknown(ClientError),
    /// Nothing of the message was accepted; try the next address.
    /// `refused`: the host answered but the policy refused its TLS (see
    /// [`refused_by_policy`]).
    Failed { why: String, refused: bool },
}

impl Session<'_> {
    async fn deliver(
        &self,
        lease: &Lease,
        hops: &[Hop],
        body: &[u8],
    ) -> (Outcomes, Attempt, Health) {
        let from =
            parse_reverse_path(&format!("<{}>", lease.mail_from)).unwrap_or(ReversePath::Null);
        let to: Vec<ForwardPath> = lease
            .recipients
            .iter()
            .filter_map(|r| parse_forward_path(&format!("<{}>", r.address)).ok())
            .collect();
        if to.len() != lease.recipients.len() {
            let reason = "a queued recipient address no longer parses".to_string();
            let (outcomes, attempt) = all(
                lease,
                |_| Outcome::Failed {
                    reason: reason.clone(),
                },
                local_attempt(&reason),
            );
            return (outcomes, attempt, Health::NotTried);
        }
        let message = OutboundMessage {
            from: &from,
            to: &to,
            body,
        };
        let mut problems: Vec<String> = Vec::new();
        let mut policy_refused = false;
        // The addresses tried and failed (for the attempt record).
        let mut failed_at: Vec<(&str, SocketAddr)> = Vec::new();
        let mut refusal: Option<(MessageRefusal, Achieved)> = None;
        for hop in hops {
            for addr in &hop.addresses {
                match self.try_address(hop, *addr, &message).await {
                    Tried::Ran(outcomes, achieved) => {
                        return self.ran(lease, outcomes, &achieved);
                    }
                    Tried::Refused(why, achieved) => {
                        problems.push(format!("{} [{}]: {why}", hop.host, addr.ip()));
                        refusal = Some((why, achieved));
                        break;
                    }
                    Tried::Unknown(e) => {
                        let reason = format!(
                            "{}: connection lost after the message was sent, it may have been delivered: {e}",
                            self.level
                        );
                        let mut attempt = local_attempt(&reason);
                        attempt.mx_host = Some(hop.host.clone());
                        attempt.ip = Some(addr.ip().to_string());
                        let (outcomes, attempt) = deferred(lease, &reason, attempt);
                        return (outcomes, attempt, Health::Reached);
                    }
                    Tried::Failed { why, refused } => {
                        policy_refused |= refused;
                        problems.push(why);
                        failed_at.push((&hop.host, *addr));
                    }
                }
            }
        }
        // Fail only when every host refused the message as it is; a host
        // that could not be reached may take it later (the backup MX with a
        // small SIZE limit must not bounce mail the primary would accept).
        let refusal = refusal.filter(|_| failed_at.is_empty());
        if let Some((why, achieved)) = refusal {
            // Every host answered and refused this message as it is; the
            // refusal's status goes into the DSN.
            let (code, a, b) = why.status();
            let reason = local_reason(
                &format!("{}: {}", self.level, problems.join("; ")),
                EnhancedCode(code, a, b),
            );
            let attempt = attempt_from(&achieved, &reason);
            let (outcomes, attempt) = all(
                lease,
                |_| Outcome::Failed {
                    reason: reason.clone(),
                },
                attempt,
            );
            return (outcomes, attempt, Health::Reached);
        }
        let reason = format!("{}: {}", self.level, problems.join("; "));
        let mut attempt = local_attempt(&reason);
        if let [(host, addr)] = failed_at.as_slice() {
            // One address was tried: the record (and log) names it.
            attempt.mx_host = Some(host.to_string());
            attempt.ip = Some(addr.ip().to_string());
        }
        let (outcomes, attempt) = deferred(lease, &reason, attempt);
        let health = if policy_refused {
            Health::Refused(reason)
        } else {
            Health::Unreachable(reason)
        };
        (outcomes, attempt, health)
    }

    /// One address: a pooled connection if one satisfies the message's
    /// requirement (a fresh one when the pooled one turns out dead before
    /// the message was sent), else a new connection.
    async fn try_address(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        message: &OutboundMessage<'_>,
    ) -> Tried {
        let params = match hop.params(self.shared.webpki.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                return Tried::Failed {
                    why: format!("{} [{}]: {e}", hop.host, addr.ip()),
                    refused: true,
                }
            }
        };
        if let Some(mut conn) = self.pool.take(&hop.host, addr, &params) {
            match self.send(hop, &mut conn, message).await {
                Some(tried) => {
                    self.release(hop, conn, &tried).await;
                    return tried;
                }
                None => {
                    debug!(host = %hop.host, %addr, "pooled connection was closed; opening a new one")
                }
            }
        }
        let peer = Peer {
            mx_host: hop.host.clone(),
            addr,
        };
        let connected = match Connection::connect(peer.clone(), &params, self.client.clone()).await
        {
            Err(e) if e.retry_cleartext_allowed() => match params.cleartext_retry() {
                Some(retry) => {
                    debug!(host = %hop.host, %addr, error = %e, "TLS handshake failed; retrying this host in cleartext (opportunistic)");
                    Connection::connect(peer, &retry, self.client.clone()).await
                }
                None => Err(e),
            },
            other => other,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                return Tried::Failed {
                    why: describe_failure(hop, &e),
                    refused: refused_by_policy(&e),
                }
            }
        };
        match self.send(hop, &mut conn, message).await {
            Some(tried) => {
                self.release(hop, conn, &tried).await;
                tried
            }
            None => Tried::Failed {
                why: format!(
                    "{} [{}]: connection closed before the message was sent",
                    hop.host,
                    addr.ip()
                ),
                refused: false,
            },
        }
    }

    /// Back to the pool after a transaction, or closed.
    async fn release(&self, hop: &Hop, conn: Connection, tried: &Tried) {
        if matches!(tried, Tried::Ran(..) | Tried::Refused(..)) {
            if let Some(conn) = self.pool.put(&hop.host, conn) {
                conn.quit().await;
            }
        }
    }

    /// Sends on `conn`; the caller pools or closes it. `None`: the
    /// connection failed before the message was sent.
    async fn send(
        &self,
        hop: &Hop,
        conn: &mut Connection,
        message: &OutboundMessage<'_>,
    ) -> Option<Tried> {
        let result = conn.send(message).await;
        let achieved = conn.achieved().clone();
        let tried = match result {
            Ok(Delivery::Attempted(outcomes)) => Tried::Ran(outcomes, achieved),
            Ok(Delivery::Refused(why)) => Tried::Refused(why, achieved),
            Err(e) if body_was_sent(&e) => Tried::Unknown(e),
            Err(e) => {
                debug!(host = %hop.host, error = %e, "connection failed before the message was sent");
                return None;
            }
        };
        Some(tried)
    }

    fn ran(
        &self,
        lease: &Lease,
        outcomes: Vec<RecipientOutcome>,
        achieved: &Achieved,
    ) -> (Outcomes, Attempt, Health) {
        let peer = Peer {
            mx_host: achieved.mx_host.clone(),
            addr: achieved.peer,
        };
        let mut summary = String::new();
        let mapped: Outcomes = lease
            .recipients
            .iter()
            .zip(outcomes)
            .map(|(r, outcome)| {
                let reason = remote_reason(&peer, outcome.reply());
                if summary.is_empty() {
                    summary = reason.clone();
                }
                let outcome = match outcome {
                    RecipientOutcome::Delivered(_) => Outcome::Delivered { reply: reason },
                    RecipientOutcome::TempFail(_) => Outcome::Deferred { reason },
                    RecipientOutcome::PermFail(_) => Outcome::Failed { reason },
                };
                (r.index, outcome)
            })
            .collect();
        (mapped, attempt_from(achieved, &summary), Health::Reached)
    }
}

/// Whether an error came after the body was (partly) sent, so the server
/// may have accepted the message.
fn body_was_sent(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Timeout {
            stage: Stage::Body,
            ..
        } | ClientError::Io {
            stage: Stage::Body,
            ..
        } | ClientError::Closed {
            stage: Stage::Body,
            ..
        } | ClientError::BadReply {
            stage: Stage::Body,
            ..
        }
    )
}

fn attempt_from(achieved: &Achieved, reason: &str) -> Attempt {
    Attempt {
        at: SystemTime::now(),
        mx_host: Some(achieved.mx_host.clone()),
        ip: Some(achieved.peer.ip().to_string()),
        tls_version: achieved.tls_version.map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        }),
        cipher: achieved.cipher.clone(),
        authentication: match achieved.authentication {
            Authentication::None => QueueAuth::None,
            Authentication::Dane => QueueAuth::Dane,
            Authentication::WebPki => QueueAuth::Webpki,
        },
        reply_or_reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deferral_at_the_end_of_the_lifetime_bounces_now() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let deferred = vec![(0, Outcome::Deferred { reason: "x".into() })];
        let mixed = vec![
            (0, Outcome::Deferred { reason: "x".into() }),
            (
                1,
                Outcome::Delivered {
                    reply: "250".into(),
                },
            ),
        ];
        assert!(bounces_now(t0 + day, t0, day, &deferred));
        assert!(bounces_now(t0 + 2 * day, t0, day, &deferred));
        assert!(!bounces_now(
            t0 + day - Duration::from_secs(1),
            t0,
            day,
            &deferred
        ));
        assert!(!bounces_now(t0 + day, t0, day, &mixed));
        assert!(!bounces_now(t0 + day, t0, day, &Vec::new()));
    }
}

#[cfg(test)]
mod body_memory_tests {
    use super::BodyMemory;

    #[tokio::test]
    async fn bodies_wait_for_their_share_of_the_budget() {
        let memory = BodyMemory::new(100 * 1024 * 1024);
        // 30 MiB held twice over (content and dot-stuffed copy): 60 MiB.
        let first = memory.hold(30 * 1024 * 1024).await.expect("permit");
        assert_eq!(memory.available(), 40 * 1024 * 1024);
        // A second one does not fit until the first is released.
        let second = memory.hold(30 * 1024 * 1024);
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        drop(first);
        let second = second.await.expect("permit after the release");
        // A body larger than the whole budget takes all of it, alone.
        drop(second);
        let huge = memory.hold(1 << 40).await.expect("permit");
        assert_eq!(memory.available(), 0);
        drop(huge);
        assert_eq!(memory.available(), 100 * 1024 * 1024);
        // Small bodies take a unit each and do not wait.
        let small: Vec<_> = futures_util::future::join_all((0..100).map(|_| memory.hold(10))).await;
        assert!(small.iter().all(Option::is_some));
    }
}
