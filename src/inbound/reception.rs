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
use tracing::{info, warn};

use super::storage::{NoRoom, Storage};
use super::trace::{received_count, received_header, Trace};
use super::{Body, ConnectionInfo, Refusal, SessionHandler, Spool};
use crate::config::Config;
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::smtp::{
    BodyType, Credentials, Envelope, ForwardPath, MailParams, RcptParams, Reply, ReversePath,
    Verdict,
};

mod auth;
mod routing;
mod tls_reports;

use auth::CONCURRENT_AUTH_CHECKS;
use routing::{is_our_postmaster, Route};

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

    /// SMTP AUTH (`auth.rs`).
    async fn auth(&self, conn: &ConnectionInfo, credentials: Credentials) -> Verdict {
        self.authenticate(conn, credentials).await
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
            let trace = Trace::of_session(&envelope, conn, hostname, single.as_deref(), at);
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
}

/// The version of the accepted-message log line's fields (its `schema`
/// field); raised when a field changes meaning or goes away.
pub(crate) const ACCEPTED_LOG_SCHEMA: u64 = 1;

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
    use crate::smtp::Mailbox;

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
