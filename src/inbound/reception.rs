//! What sealpost does with mail it receives: relay control, the inbound TLS
//! peer policy, and durable queueing before `250`.
//!
//! - Relay control: a client inside a tenant's relay sources, sending with
//!   a sender domain that is an enabled managed domain of that tenant, may
//!   relay to any recipient (outbound mail; the TLS peer is the recipient
//!   domain). So may a session authenticated (SMTP AUTH, RFC 4954) as one
//!   of the tenant's users. Any other client may only reach enabled
//!   managed domains (inbound mail).
//!   Everything else gets `554 5.7.1 Relay access denied`: never an open
//!   relay.
//! - This server's postmaster (bare `<Postmaster>` or
//!   `postmaster@<hostname>`, RFC 5321 section 4.5.1) goes to `[server]
//!   postmaster`, queued as that address; without it, to the host name's
//!   own managed domain if it is one; else `550 5.1.1`, so that such mail
//!   never waits in a queue with no route.
//! - Mail loops (RFC 5321 section 6.3): a message with more `Received:`
//!   fields than `[limits] max_received_headers` gets `554 5.4.6` at the
//!   end of DATA; the refusal is counted in the metrics.
//! - Valid recipients: a managed domain may list its recipients
//!   (`[[domains]] recipients`); an unlisted local part gets `550 5.1.1`,
//!   `postmaster` is always accepted (RFC 5321 section 4.5.1).
//! - Inbound TLS policy: the peer is the connecting IP (exact or CIDR) or
//!   the envelope sender's domain, the managed domain is the recipient's.
//!   A `mandatory` peer without TLS gets `530 5.7.0 Must issue a STARTTLS
//!   command first`; a session below the peer's minimum version is refused
//!   the same way, naming the version. Every decision is logged with the
//!   policy's explanation.
//! - Queueing: one queue message per destination of the transaction (each
//!   carries its tenant and the policy it was accepted under), with a
//!   `Received:` header; `250` only once every part is durable, `452` on a
//!   full disk, `552` when the queue's size limit is exceeded, `451` on any
//!   other storage failure. Each message queued counts as received for its
//!   tenant in the server's metrics.

use std::sync::Arc;
use std::time::SystemTime;

use sealpost_queue::{AcceptedPolicy, NewCopy, NewRecipient, NewTransaction, Queue, QueueError};
use tracing::{debug, info, warn};

use super::storage::{NoRoom, Storage};
use super::trace::{received_count, received_header, Trace};
use super::{Body, ConnectionInfo, Refusal, SessionHandler, Spool};
use crate::config::Config;
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::policy::relay::authorize_tenant;
use crate::policy::{PeerQuery, RelayRefusal, Resolution, SecurityLevel, TenantName};
use crate::smtp::{
    BodyType, Credentials, Envelope, ForwardPath, MailParams, Mailbox, RcptParams, Reply,
    ReversePath, Verdict,
};

/// The destination key of inbound mail for a managed domain: its
/// downstream route, resolved by the delivery engine.
pub fn inbound_destination(domain: &str) -> String {
    crate::delivery::Destination::Inbound(domain).key()
}

/// The inbound mail handler of `sealpost serve`.
pub struct Reception {
    /// Read once per decision; a transaction's routes are recomputed at its
    /// end against the configuration then in force.
    live: Arc<LiveConfig>,
    queue: Arc<Queue>,
    /// Called once a message is durable (wakes the delivery engine).
    on_queued: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Bounds the PBKDF2 checks running at once, so a flood of AUTH
    /// attempts queues up instead of taking every core.
    auth_checks: tokio::sync::Semaphore,
    /// AUTH attempts waiting for `auth_checks`.
    auth_waiting: std::sync::atomic::AtomicUsize,
    /// `received` per queued message.
    metrics: Arc<Metrics>,
    /// The disk reserve and the tenants' queue quotas.
    storage: Arc<Storage>,
}

/// Password checks that may run at the same time.
const CONCURRENT_AUTH_CHECKS: usize = 2;

/// AUTH attempts waiting for a check slot at most; beyond that the client
/// is told to try later (`454 4.7.0`, RFC 4954 section 6) instead of
/// queueing without bound behind a flood.
const WAITING_AUTH_CHECKS: usize = 32;

/// What an unknown user name's password is checked against, so that the
/// answer takes as long as for a known user (no user enumeration by timing).
fn decoy_hash() -> &'static Option<crate::auth::PasswordHash> {
    static DECOY: std::sync::OnceLock<Option<crate::auth::PasswordHash>> =
        std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        crate::auth::hash_password(b"sealpost decoy", crate::auth::DEFAULT_ITERATIONS).ok()
    })
}

/// Where one recipient's copy goes, and under which policy.
struct Route {
    destination: String,
    resolution: Resolution,
    /// The address queued instead of the one given (mail to our
    /// postmaster, sent on to `[server] postmaster`).
    rewrite: Option<Mailbox>,
}

impl Reception {
    pub fn new(live: Arc<LiveConfig>, queue: Arc<Queue>) -> Reception {
        Reception {
            live,
            storage: Arc::new(Storage::new(&queue)),
            queue,
            on_queued: None,
            auth_checks: tokio::sync::Semaphore::new(CONCURRENT_AUTH_CHECKS),
            auth_waiting: std::sync::atomic::AtomicUsize::new(0),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Whether the queue has room for one message of `size` octets per
    /// entry of `tenants` (one per destination group).
    fn room_for(&self, config: &Config, tenants: &[String], size: u64) -> Result<(), NoRoom> {
        self.storage.disk(config, size)?;
        let mut per_tenant: Vec<(&str, u64)> = Vec::new();
        for tenant in tenants {
            match per_tenant.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, n)) => *n += 1,
                None => per_tenant.push((tenant, 1)),
            }
        }
        for (tenant, messages) in per_tenant {
            let bytes = messages.saturating_mul(size);
            self.storage
                .tenant(config, &self.queue, tenant, messages, bytes)?;
        }
        Ok(())
    }

    /// The `452 4.3.1` for a full queue, logged and counted.
    fn no_room(&self, conn: &ConnectionInfo, from: &ReversePath, no_room: &NoRoom) -> Reply {
        let refusal = no_room.refusal();
        warn!(conn = conn.id, peer = %conn.peer, %from, reason = %refusal, detail = %no_room, "mail refused: no room in the queue");
        self.metrics.refused(refusal);
        Reply::new(452, (4, 3, 1), "Insufficient system storage")
    }

    /// Calls `waker` after each message is durable.
    pub fn with_waker(mut self, waker: Arc<dyn Fn() + Send + Sync>) -> Reception {
        self.on_queued = Some(waker);
        self
    }

    /// Counts received messages into `metrics` (the server's shared ones).
    /// Shares `storage` (the server gives the readiness check the same
    /// one, so both judge the disk reserve from one reading).
    pub fn with_storage(mut self, storage: Arc<Storage>) -> Reception {
        self.storage = storage;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Reception {
        self.metrics = metrics;
        self
    }

    /// The route of a recipient, or the refusal (relay denied, or the
    /// inbound TLS policy).
    fn route(
        &self,
        config: &Config,
        conn: &ConnectionInfo,
        from: &ReversePath,
        to: &ForwardPath,
    ) -> Result<Route, Reply> {
        if let Some(route) = postmaster_route(config, conn, from, to) {
            return route;
        }
        if let Some(reply) = unknown_recipient(config, to) {
            info!(conn = conn.id, peer = %conn.peer, %from, %to, "unknown recipient");
            return Err(reply);
        }
        let sender = sender_domain(from);
        let policy = &config.policy;
        let by_address = || {
            config
                .relay
                .authorize(conn.peer.ip(), sender.as_deref(), policy)
        };
        // A session authenticated as a tenant's user relays under the same
        // sender rule as that tenant's relay sources.
        let authorized = match authenticated_tenant(config, conn) {
            Some(tenant) => authorize_tenant(&tenant, sender.as_deref(), policy)
                .or_else(|refusal| by_address().map_err(|_| refusal)),
            None => by_address(),
        };
        match authorized {
            Ok(_) => {
                if let (ForwardPath::Mailbox(m), Some(sender)) = (to, &sender) {
                    if let Some(recipient_domain) = m.host.domain_lowercase() {
                        let resolution = policy.resolve(
                            sender,
                            PeerQuery::Outbound {
                                recipient_domain: &recipient_domain,
                            },
                        );
                        return Ok(Route {
                            destination: recipient_domain,
                            resolution,
                            rewrite: None,
                        });
                    }
                }
            }
            // Not a relay source at all: the ordinary inbound case.
            Err(RelayRefusal::NotASource { .. }) => {}
            // A relay source that may not relay this sender: its mail may
            // still reach managed domains as inbound mail.
            Err(refusal) => {
                debug!(conn = conn.id, %from, %to, %refusal, "not relayed as outbound mail");
            }
        }
        let ForwardPath::Mailbox(mailbox) = to else {
            // Bare <Postmaster> is handled by `postmaster_route`.
            return Err(no_postmaster());
        };
        let Some(domain) = managed_domain(config, mailbox) else {
            return Err(Reply::new(554, (5, 7, 1), "Relay access denied"));
        };
        let resolution = inbound_policy(config, conn, from, &domain);
        if let Some(reply) = tls_refusal(&resolution, conn) {
            info!(conn = conn.id, peer = %conn.peer, %from, %to, policy = %resolution, "refused by the inbound TLS policy");
            return Err(reply);
        }
        Ok(Route {
            destination: inbound_destination(&domain),
            resolution,
            rewrite: None,
        })
    }
}

/// Whether `to` is this server's postmaster: the bare `<Postmaster>` or
/// `postmaster@<server hostname>` (any case, RFC 5321 section 4.5.1).
fn is_our_postmaster(config: &Config, to: &ForwardPath) -> bool {
    match to {
        ForwardPath::Postmaster => true,
        ForwardPath::Mailbox(m) => {
            let hostname = config.server.hostname.as_str().trim_end_matches('.');
            m.local_part.eq_ignore_ascii_case("postmaster")
                && m.host
                    .domain_lowercase()
                    .is_some_and(|d| d.trim_end_matches('.').eq_ignore_ascii_case(hostname))
        }
    }
}

/// The route of mail to this server's postmaster, or `None` for any other
/// recipient. With `[server] postmaster` it goes to that address (queued
/// as that address: inbound to its managed domain's route, else outbound
/// to its domain). Without it, when the host name is itself an enabled
/// managed domain, `postmaster@<hostname>` takes that domain's way and the
/// bare `<Postmaster>` joins it; otherwise it is refused with `550 5.1.1`
/// rather than accepted into a queue with no way out.
fn postmaster_route(
    config: &Config,
    conn: &ConnectionInfo,
    from: &ReversePath,
    to: &ForwardPath,
) -> Option<Result<Route, Reply>> {
    if !is_our_postmaster(config, to) {
        return None;
    }
    let hostname = config.server.hostname.as_str();
    if let Some(target) = &config.server.postmaster {
        let domain = target.host.domain_lowercase().unwrap_or_default();
        let route = match managed_domain(config, target) {
            Some(managed) => Route {
                destination: inbound_destination(&managed),
                resolution: inbound_policy(config, conn, from, &managed),
                rewrite: Some(target.clone()),
            },
            None => Route {
                resolution: config.policy.resolve(
                    hostname,
                    PeerQuery::Outbound {
                        recipient_domain: &domain,
                    },
                ),
                destination: domain,
                rewrite: Some(target.clone()),
            },
        };
        return Some(Ok(route));
    }
    let managed = config.policy.domain(hostname).filter(|d| d.enabled);
    match (managed, to) {
        (Some(_), ForwardPath::Mailbox(_)) => None,
        (Some(domain), ForwardPath::Postmaster) => {
            let name = domain.name.as_str();
            Some(Ok(Route {
                destination: inbound_destination(name),
                resolution: inbound_policy(config, conn, from, name),
                rewrite: None,
            }))
        }
        (None, _) => Some(Err(no_postmaster())),
    }
}

/// The refusal of mail to a postmaster nobody takes.
fn no_postmaster() -> Reply {
    Reply::new(
        550,
        (5, 1, 1),
        "<postmaster>: Recipient address rejected: user unknown",
    )
}

/// The tenant of the user the session authenticated as (`None` also when
/// a reload removed that user).
fn authenticated_tenant(config: &Config, conn: &ConnectionInfo) -> Option<TenantName> {
    let name = conn.authenticated.as_deref()?;
    config.users.get(name).map(|user| user.tenant.clone())
}

fn auth_refusal() -> Verdict {
    Verdict::Reject(Reply::new(
        535,
        (5, 7, 8),
        "Authentication credentials invalid",
    ))
}

/// `550 5.1.1` for a recipient of an enabled managed domain that lists its
/// valid recipients, when the local part is not listed (`postmaster` is
/// always valid, RFC 5321 4.5.1).
fn unknown_recipient(config: &Config, to: &ForwardPath) -> Option<Reply> {
    let ForwardPath::Mailbox(mailbox) = to else {
        return None;
    };
    let domain = managed_domain(config, mailbox)?;
    let list = config.recipients.get(&domain)?;
    (!list.accepts(&mailbox.local_part)).then(|| {
        Reply::new(
            550,
            (5, 1, 1),
            format!("<{mailbox}>: Recipient address rejected: user unknown"),
        )
    })
}

/// The enabled managed domain a recipient mailbox belongs to.
fn managed_domain(config: &Config, mailbox: &Mailbox) -> Option<String> {
    let domain = mailbox.host.domain_lowercase()?;
    let managed = config.policy.domain(&domain)?;
    managed.enabled.then(|| managed.name.as_str().to_string())
}

fn inbound_policy(
    config: &Config,
    conn: &ConnectionInfo,
    from: &ReversePath,
    domain: &str,
) -> Resolution {
    let sender_domain = sender_domain(from);
    config.policy.resolve(
        domain,
        PeerQuery::Inbound {
            ip: Some(conn.peer.ip()),
            sender_domain: sender_domain.as_deref(),
        },
    )
}

fn sender_domain(from: &ReversePath) -> Option<String> {
    match from {
        ReversePath::Mailbox(m) => m.host.domain_lowercase(),
        ReversePath::Null => None,
    }
}

/// Whether the session meets the policy; the refusal when it does not.
pub fn tls_refusal(resolution: &Resolution, conn: &ConnectionInfo) -> Option<Reply> {
    if resolution.level != SecurityLevel::Mandatory {
        return None;
    }
    match &conn.tls {
        None => Some(Reply::new(
            530,
            (5, 7, 0),
            "Must issue a STARTTLS command first",
        )),
        Some(tls) if !resolution.min_tls.accepts(tls.version) => Some(Reply::new(
            530,
            (5, 7, 0),
            format!(
                "Must issue a STARTTLS command first: {} is below the required TLS {}",
                tls.version_name(),
                resolution.min_tls
            ),
        )),
        Some(_) => None,
    }
}

impl SessionHandler for Reception {
    fn mail_from(&self, conn: &ConnectionInfo, from: &ReversePath, params: &MailParams) -> Verdict {
        if let Some(v) = super::transfer::mail_verdict(&self.live.current(), conn, params) {
            return v;
        }
        // Relay control, the TLS policy and the quota depend on the
        // recipient's domain; only the disk reserve is known now.
        match self.storage.disk(&self.live.current(), 0) {
            Ok(()) => Verdict::Accept,
            Err(no_room) => Verdict::Reject(self.no_room(conn, from, &no_room)),
        }
    }

    fn rcpt(
        &self,
        conn: &ConnectionInfo,
        from: &ReversePath,
        _: usize,
        to: &ForwardPath,
        params: &RcptParams,
    ) -> Verdict {
        let config = self.live.current();
        if let Some(verdict) = super::transfer::rcpt_verdict(&config, conn, params) {
            return verdict;
        }
        match self.route(&config, conn, from, to) {
            Ok(route) => {
                let tenant = route.resolution.tenant.as_ref().map_or("", |t| t.as_str());
                if let Err(no_room) = self.storage.tenant(&config, &self.queue, tenant, 0, 0) {
                    return Verdict::Reject(self.no_room(conn, from, &no_room));
                }
                info!(
                    conn = conn.id,
                    peer = %conn.peer,
                    %from,
                    %to,
                    destination = %route.destination,
                    policy = %route.resolution,
                    tls = conn.tls.as_ref().map(|t| t.version_name()),
                    "recipient accepted"
                );
                Verdict::Accept
            }
            Err(reply) => {
                if reply.code == 554 {
                    info!(conn = conn.id, peer = %conn.peer, %from, %to, "relay access denied");
                } else if is_our_postmaster(&self.live.current(), to) {
                    info!(conn = conn.id, peer = %conn.peer, %from, %to, reason = %Refusal::Postmaster, "refused: no `[server] postmaster` is configured to take the postmaster's mail");
                    self.metrics.refused(Refusal::Postmaster);
                }
                Verdict::Reject(reply)
            }
        }
    }

    fn refused(&self, _: &ConnectionInfo, refusal: Refusal) {
        self.metrics.refused(refusal);
    }

    /// SMTP AUTH against `[[tenants]] users`. The PBKDF2 check runs on the
    /// blocking pool; an unknown user, a failed check, or PLAIN acting for
    /// another identity (authzid) all get `535 5.7.8`.
    async fn auth(&self, conn: &ConnectionInfo, credentials: Credentials) -> Verdict {
        use std::sync::atomic::Ordering;
        let config = self.live.current();
        let user = config.users.get(&credentials.username).cloned();
        let other_identity = credentials
            .authzid
            .as_deref()
            .is_some_and(|z| !z.eq_ignore_ascii_case(&credentials.username));
        // Every refusal costs one password check, known user or not.
        let hash = match &user {
            Some(user) => user.hash.clone(),
            None => match decoy_hash() {
                Some(decoy) => decoy.clone(),
                None => return auth_refusal(),
            },
        };
        if self.auth_waiting.fetch_add(1, Ordering::AcqRel) >= WAITING_AUTH_CHECKS {
            self.auth_waiting.fetch_sub(1, Ordering::AcqRel);
            warn!(conn = conn.id, peer = %conn.peer, "SMTP AUTH deferred: too many checks waiting");
            return Verdict::Reject(Reply::new(
                454,
                (4, 7, 0),
                "Temporary authentication failure, try again later",
            ));
        }
        let slot = self.auth_checks.acquire().await;
        self.auth_waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(_slot) = slot else {
            return auth_refusal(); // never closed
        };
        let password = credentials.password().as_bytes().to_vec();
        let valid = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false);
        match user {
            None => {
                info!(conn = conn.id, peer = %conn.peer, user = %credentials.username, "SMTP AUTH refused: unknown user");
                auth_refusal()
            }
            Some(user) if other_identity => {
                info!(conn = conn.id, peer = %conn.peer, user = %user.name, "SMTP AUTH refused: acting for another identity is not supported");
                auth_refusal()
            }
            Some(user) if valid => {
                info!(conn = conn.id, peer = %conn.peer, user = %user.name, tenant = %user.tenant, "SMTP AUTH succeeded");
                Verdict::Accept
            }
            Some(user) => {
                info!(conn = conn.id, peer = %conn.peer, user = %user.name, "SMTP AUTH refused: wrong password");
                auth_refusal()
            }
        }
    }

    fn spool(&self) -> Option<Spool> {
        Some(self.queue.spool())
    }

    async fn message(&self, conn: &ConnectionInfo, mut envelope: Envelope, body: Body) -> Verdict {
        if super::transfer::is_transfer(&envelope) {
            return self.transferred(conn, &envelope, body).await;
        }
        let now = SystemTime::now();
        let at = crate::date::unix_seconds(now);
        // One queue message per destination: each has its own tenant,
        // policy and next hop.
        let config = self.live.current();
        let hostname = config.server.hostname.as_str();
        if let Some(reply) = mail_loop(&config, conn, &envelope.from, body.head()) {
            self.metrics.refused(Refusal::MailLoop);
            return Verdict::Reject(reply);
        }
        if let Some(reply) = self
            .take_tls_reports(&config, conn, &mut envelope, &body)
            .await
        {
            return Verdict::AcceptWith(reply);
        }
        let tls_request = super::tls_request::tls_request(envelope.params.requiretls, body.head());
        let mut groups: Vec<(Route, Vec<ForwardPath>)> = Vec::new();
        for rcpt in &envelope.recipients {
            // Accepted at RCPT; only a reload in between can refuse it now.
            // Then nothing is queued and the client tries again later.
            let Ok(route) = self.route(&config, conn, &envelope.from, &rcpt.path) else {
                warn!(conn = conn.id, to = %rcpt.path, "recipient no longer accepted after a configuration reload");
                return Verdict::Reject(Reply::new(
                    451,
                    (4, 3, 0),
                    "Configuration changed during the transaction, try again",
                ));
            };
            let path = match &route.rewrite {
                Some(mailbox) => ForwardPath::Mailbox(mailbox.clone()),
                None => rcpt.path.clone(),
            };
            match groups
                .iter_mut()
                .find(|(r, _)| r.destination == route.destination)
            {
                Some((_, list)) => list.push(path),
                None => groups.push((route, vec![path])),
            }
        }
        let mut copies = Vec::with_capacity(groups.len());
        for (route, recipients) in &groups {
            let resolution = &route.resolution;
            let tenant = resolution
                .tenant
                .as_ref()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            let single = match recipients.as_slice() {
                [ForwardPath::Mailbox(m)] => Some(m.to_string()),
                _ => None,
            };
            let trace = Trace {
                helo: &envelope.helo,
                client_ip: conn.peer.ip(),
                esmtp: envelope.esmtp,
                smtputf8: envelope.params.smtputf8,
                tls: conn.tls.as_ref(),
                by: hostname,
                id: "pending",
                single_recipient: single.as_deref(),
                at,
            };
            copies.push(NewCopy {
                tenant,
                mail_from: match &envelope.from {
                    ReversePath::Null => String::new(),
                    ReversePath::Mailbox(m) => m.to_string(),
                },
                mail_params: mail_params(&envelope.params),
                recipients: recipients
                    .iter()
                    .map(|r| NewRecipient {
                        address: match r {
                            ForwardPath::Postmaster => format!("postmaster@{hostname}"),
                            ForwardPath::Mailbox(m) => m.to_string(),
                        },
                        params: Vec::new(),
                        destination: route.destination.clone(),
                    })
                    .collect(),
                policy: AcceptedPolicy {
                    level: resolution.level.to_string(),
                    min_tls: resolution.min_tls.to_string(),
                    explanation: resolution.to_string(),
                },
                tls_request,
                arrived_at: now,
                trace: received_header(&trace),
            });
        }
        let tenants: Vec<String> = copies.iter().map(|c| c.tenant.clone()).collect();
        let size = body.len();
        if let Err(no_room) = self.room_for(&config, &tenants, size) {
            return Verdict::Reject(self.no_room(conn, &envelope.from, &no_room));
        }
        // One body for every destination group, committed together: one 250
        // for all copies, or one refusal with none of them stored.
        let transaction = NewTransaction { copies, body };
        let stored = match self.queue.enqueue_transaction(transaction) {
            Ok(durable) => durable.await,
            Err(e) => Err(e),
        };
        let ids = match stored {
            Ok(ids) => ids,
            Err(e) => return Verdict::Reject(storage_refusal(conn, &e)),
        };
        for tenant in &tenants {
            self.metrics.received(tenant);
        }
        let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        let ids = ids.join(" ");
        if let Some(wake) = &self.on_queued {
            wake();
        }
        let mut tenant_names: Vec<&str> = tenants.iter().map(String::as_str).collect();
        tenant_names.sort_unstable();
        tenant_names.dedup();
        // The accepted-message line (docs/operations.md, "Log lines").
        info!(
            schema = ACCEPTED_LOG_SCHEMA,
            event = "accepted",
            conn = conn.id,
            queue_id = %ids,
            sender = %envelope.from,
            recipients = envelope.recipients.len(),
            size,
            client_ip = %conn.peer.ip(),
            tls_version = conn.tls.as_ref().map_or("none", |t| t.version_name()),
            tls_cipher = conn.tls.as_ref().map_or("none", |t| t.cipher.as_str()),
            tenant = %tenant_names.join(" "),
            tls_request = ?tls_request,
            "message accepted"
        );
        Verdict::AcceptWith(Reply::new(250, (2, 0, 0), format!("Ok: queued as {ids}")))
    }
}

impl Reception {
    /// A message handed over by a cluster peer (`super::transfer`).
    async fn transferred(&self, conn: &ConnectionInfo, envelope: &Envelope, body: Body) -> Verdict {
        let config = self.live.current();
        let queued =
            super::transfer::receive(&config, &self.queue, &self.storage, conn, envelope, body);
        match queued.await {
            Ok((tenant, ids)) => {
                ids.iter().for_each(|_| self.metrics.received(&tenant));
                if let Some(wake) = &self.on_queued {
                    wake();
                }
                let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                let text = format!("Ok: queued as {}", ids.join(" "));
                Verdict::AcceptWith(Reply::new(250, (2, 0, 0), text))
            }
            Err(reply) => Verdict::Reject(reply),
        }
    }

    /// TLS reports mailed to a hosted domain's `mailto:` TLSRPT destination
    /// (RFC 8460 section 5.3) are stored for its tenant (`crate::tlsrpt`)
    /// instead of relayed: those recipients are taken out of `envelope`.
    /// A message that holds no acceptable report (or is too large to be
    /// one) stays addressed to them and is relayed like any other, so
    /// nothing is lost. `Some(250)` when no recipient is left.
    async fn take_tls_reports(
        &self,
        config: &Config,
        conn: &ConnectionInfo,
        envelope: &mut Envelope,
        body: &Body,
    ) -> Option<Reply> {
        use crate::tlsrpt::mail::{report_address_domain, report_part};
        let mut domains: Vec<String> = envelope
            .recipients
            .iter()
            .filter_map(|r| match &r.path {
                ForwardPath::Mailbox(m) => report_address_domain(config, m),
                ForwardPath::Postmaster => None,
            })
            .collect();
        if domains.is_empty() {
            return None;
        }
        domains.sort();
        domains.dedup();
        let part = match body {
            Body::Memory(bytes) => report_part(bytes),
            Body::Spooled(_) => None,
        };
        let Some((encoding, report)) = part else {
            info!(
                conn = conn.id,
                ?domains,
                "mail to a TLSRPT address holds no TLS report: relayed as usual"
            );
            return None;
        };
        let content_type = match encoding {
            crate::tlsrpt::Encoding::Gzip => "application/tlsrpt+gzip",
            crate::tlsrpt::Encoding::Json => "application/tlsrpt+json",
        };
        let receiver = Arc::new(crate::tlsrpt::Receiver::new(self.live.clone()));
        let report = Arc::new(report);
        let mut stored = Vec::new();
        for domain in domains {
            let (receiver, report, name) = (receiver.clone(), report.clone(), domain.clone());
            let result = tokio::task::spawn_blocking(move || {
                receiver.receive(&name, Some(content_type), &report, "mail")
            })
            .await;
            match result {
                Ok(Ok(_)) => stored.push(domain),
                Ok(Err(e)) => {
                    info!(conn = conn.id, %domain, error = %e, "mailed TLS report refused: relayed as usual")
                }
                Err(e) => {
                    warn!(conn = conn.id, %domain, error = %e, "storing a mailed TLS report failed")
                }
            }
        }
        envelope.recipients.retain(|r| match &r.path {
            ForwardPath::Mailbox(m) => {
                report_address_domain(config, m).is_none_or(|d| !stored.contains(&d))
            }
            ForwardPath::Postmaster => true,
        });
        envelope
            .recipients
            .is_empty()
            .then(|| Reply::new(250, (2, 0, 0), "Ok: TLS report stored"))
    }
}

/// The version of the accepted-message log line's fields (its `schema`
/// field); raised when a field changes meaning or goes away.
pub const ACCEPTED_LOG_SCHEMA: u64 = 1;

/// `554 5.4.6` when the message already carries more `Received:` fields
/// than `[limits] max_received_headers` (RFC 5321 section 6.3): it is
/// going round in a loop. Refused at the end of DATA, so the sending
/// side (a client, or the previous hop's queue) bounces it: nothing is
/// dropped in silence.
fn mail_loop(
    config: &Config,
    conn: &ConnectionInfo,
    from: &ReversePath,
    body: &[u8],
) -> Option<Reply> {
    let hops = received_count(body);
    let limit = config.limits.max_received_headers;
    (hops > limit).then(|| {
        info!(conn = conn.id, peer = %conn.peer, %from, hops, limit, reason = %Refusal::MailLoop, "message refused: too many Received headers, a mail loop");
        Reply::new(
            554,
            (5, 4, 6),
            format!("Too many hops ({hops} Received headers): routing loop detected"),
        )
    })
}

/// The MAIL parameters worth keeping for the onward hop.
fn mail_params(params: &MailParams) -> Vec<String> {
    let mut kept = Vec::new();
    if params.body == Some(BodyType::EightBitMime) {
        kept.push("BODY=8BITMIME".to_string());
    }
    if params.smtputf8 {
        kept.push("SMTPUTF8".to_string());
    }
    kept
}

fn storage_refusal(conn: &ConnectionInfo, error: &QueueError) -> Reply {
    warn!(conn = conn.id, peer = %conn.peer, error = %error, "the queue refused the message");
    match error {
        e if e.is_disk_full() => Reply::new(452, (4, 3, 1), "Insufficient system storage"),
        QueueError::TooLarge { .. } => Reply::new(552, (5, 3, 4), "Message too big for the queue"),
        _ => Reply::new(451, (4, 3, 0), "Local error in processing; try again later"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnectionInfo {
        ConnectionInfo {
            id: 1,
            peer: "192.0.2.7:40000".parse().expect("addr"),
            local: "192.0.2.1:25".parse().expect("addr"),
            tls: None,
            helo: None,
            authenticated: None,
        }
    }

    fn reception(config: &str) -> (Reception, tempfile::TempDir) {
        let config = crate::config::Config::for_test(config);
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(dir.path().join("queue"), Default::default()).expect("queue");
        let reception = Reception::new(Arc::new(LiveConfig::new(config)), Arc::new(queue));
        (reception, dir)
    }

    fn mailbox(address: &str) -> ForwardPath {
        let (local, domain) = address.split_once('@').expect("address");
        ForwardPath::Mailbox(Mailbox {
            local_part: local.into(),
            host: crate::smtp::Host::Domain(domain.into()),
        })
    }

    #[test]
    fn a_managed_domain_named_like_the_host_keeps_its_tls_policy() {
        let (reception, _dir) = reception(
            r#"
[server]
hostname = "mx.example"

[[domains]]
name = "mx.example"
tenant = "t"
inbound.default = { level = "mandatory" }
"#,
        );
        let from = ReversePath::Null;
        let refused = reception.route(
            &reception.live.current(),
            &conn(),
            &from,
            &mailbox("bob@mx.example"),
        );
        assert_eq!(refused.err().map(|r| r.code), Some(530));
        let postmaster = reception.route(
            &reception.live.current(),
            &conn(),
            &from,
            &ForwardPath::Postmaster,
        );
        assert_eq!(
            postmaster.ok().map(|r| r.destination),
            Some("inbound:mx.example".into())
        );
        let elsewhere = reception.route(
            &reception.live.current(),
            &conn(),
            &from,
            &mailbox("bob@other.example"),
        );
        assert_eq!(elsewhere.err().map(|r| r.code), Some(554));
    }

    #[test]
    fn the_postmaster_goes_to_the_configured_address_or_is_refused() {
        let from = ReversePath::Null;
        let ours = [
            ForwardPath::Postmaster,
            mailbox("PostMaster@MX.Sealpost.test"),
        ];
        let (none, _dir) = reception("[server]\nhostname = \"mx.sealpost.test\"\n");
        for to in &ours {
            let refused = none.route(&none.live.current(), &conn(), &from, to);
            let reply = refused.err().expect("refused");
            assert_eq!(
                (reply.code, reply.enhanced.map(|e| e.to_string())),
                (550, Some("5.1.1".into())),
                "{to}"
            );
        }
        let table = [
            ("ops@example.net", "example.net"),
            ("hostmaster@acme.example", "inbound:acme.example"),
        ];
        for (postmaster, destination) in table {
            let (r, _dir) = reception(&format!(
                "[server]\nhostname = \"mx.sealpost.test\"\npostmaster = \"{postmaster}\"\n\n\
                 [[domains]]\nname = \"acme.example\"\ntenant = \"acme\"\n"
            ));
            for to in &ours {
                let Ok(route) = r.route(&r.live.current(), &conn(), &from, to) else {
                    panic!("{to} refused");
                };
                assert_eq!(route.destination, destination, "{to}");
                assert_eq!(
                    route.rewrite.map(|m| m.to_string()).as_deref(),
                    Some(postmaster)
                );
            }
            // Another domain's postmaster is not ours.
            let other = r.route(
                &r.live.current(),
                &conn(),
                &from,
                &mailbox("postmaster@elsewhere.test"),
            );
            assert_eq!(other.err().map(|r| r.code), Some(554));
        }
    }

    #[test]
    fn more_received_fields_than_the_limit_are_a_loop() {
        let config = crate::config::Config::for_test("[limits]\nmax_received_headers = 3\n");
        let body = |n: usize| "Received: from a by b\r\n".repeat(n) + "\r\nhi\r\n";
        let from = ReversePath::Null;
        assert!(mail_loop(&config, &conn(), &from, body(3).as_bytes()).is_none());
        let reply = mail_loop(&config, &conn(), &from, body(4).as_bytes()).expect("a loop");
        assert_eq!(
            (reply.code, reply.enhanced.map(|e| e.to_string())),
            (554, Some("5.4.6".into()))
        );
    }

    #[test]
    fn an_authenticated_session_relays_for_its_tenant() {
        let hash = crate::auth::hash_password(b"pw", crate::auth::MIN_ITERATIONS)
            .expect("hash")
            .to_string();
        let (reception, _dir) = reception(&format!(
            r#"
[[domains]]
name = "acme.example"
tenant = "acme"

[[domains]]
name = "globex.example"
tenant = "globex"

[[tenants]]
name = "acme"
users = [{{ name = "relay@acme", password_hash = "{hash}" }}]
"#
        ));
        let config = reception.live.current();
        let sender = |address: &str| match mailbox(address) {
            ForwardPath::Mailbox(m) => ReversePath::Mailbox(m),
            ForwardPath::Postmaster => ReversePath::Null,
        };
        let to = mailbox("bob@elsewhere.test");
        let mut authed = conn();
        authed.authenticated = Some("Relay@Acme".into());
        let table = [
            (&authed, sender("a@acme.example"), Ok("elsewhere.test")),
            (&authed, sender("a@globex.example"), Err(554)),
            (&authed, ReversePath::Null, Err(554)),
            (&conn(), sender("a@acme.example"), Err(554)),
        ];
        for (conn, from, want) in table {
            let got = reception.route(&config, conn, &from, &to);
            let got = got.map(|r| r.destination).map_err(|r| r.code);
            assert_eq!(got.as_deref().map_err(|c| *c), want, "{from}");
        }
    }

    #[test]
    fn a_full_disk_is_a_452_too_large_a_552_and_other_failures_a_451() {
        let full = QueueError::DiskFull {
            path: "/var/lib/sealpost/queue".into(),
            detail: "No space left on device".into(),
        };
        let reply = storage_refusal(&conn(), &full);
        assert_eq!(
            (reply.code, reply.enhanced.map(|e| e.to_string())),
            (452, Some("4.3.1".into()))
        );
        let big = QueueError::TooLarge { size: 10, limit: 5 };
        assert_eq!(storage_refusal(&conn(), &big).code, 552);
        let other = QueueError::Io {
            path: "/var/lib/sealpost/queue".into(),
            detail: "Input/output error".into(),
        };
        assert_eq!(storage_refusal(&conn(), &other).code, 451);
    }
}
