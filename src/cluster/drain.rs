//! `sealpost queue drain`: hands this node's waiting messages to another
//! sealpost node over SMTP with the transfer extension
//! ([`crate::smtp::transfer`]), so a node can be taken down without
//! losing or bouncing its queue (`docs/cluster.md`, "Draining a node").
//!
//! - Every queued or deferred recipient is leased whatever its due time
//!   ([`Queue::take_pending`]), one lease (message and destination) per
//!   SMTP transaction. Held messages stay where they are.
//! - The envelope, the stored MAIL and RCPT parameters (DSN: RET, ENVID,
//!   NOTIFY, ORCPT), the REQUIRETLS request, the accepted policy, the
//!   tenant and the arrival time travel as transfer records; the body
//!   travels with this node's `Received:` line, and the receiving node
//!   adds its own.
//! - A recipient is removed here only after the other node's `250` for
//!   the message, recorded as delivered (durable) before the next lease.
//!   If this process dies between that `250` and the record, the message
//!   is due again here and a second drain sends it again: at worst a
//!   duplicate, never a loss.
//! - A refusal by the other node stops the drain (`failed`, with its
//!   reply); the message stays here. A lost connection is opened again
//!   once per message before the drain gives up.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sealpost_queue::{Attempt, Authentication, Lease, Outcome, Queue, RetryPolicy, StateKind};
use tracing::{info, warn};

use crate::admin::drain::{DrainControl, DrainRefusal, DrainRequest, DrainState, DrainStatus};
use crate::delivery::reason::remote;
use crate::live::LiveConfig;
use crate::policy::MinTlsVersion;
use crate::smtp::address::{parse_forward_path, parse_reverse_path};
use crate::smtp::client::{
    ClientConfig, ClientError, Connection, Delivery, OutboundMessage, Peer, RecipientOutcome,
    TlsParams, TlsRequirement,
};
use crate::smtp::transfer::{self, MessageRecord, RecipientRecord, KEYWORD};

/// Leases taken per round.
const BATCH: usize = 64;

/// How often the drain looks again while the delivery engine still holds
/// some of the messages in an attempt.
const ENGINE_POLL: Duration = Duration::from_millis(250);

/// Runs drains in the daemon, one at a time.
pub(crate) struct Drainer {
    queue: Arc<Queue>,
    live: Arc<LiveConfig>,
    current: Mutex<Option<Arc<Mutex<DrainStatus>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drainer {
    pub fn new(queue: Arc<Queue>, live: Arc<LiveConfig>) -> Drainer {
        Drainer {
            queue,
            live,
            current: Mutex::new(None),
        }
    }
}

impl DrainControl for Drainer {
    fn start(&self, request: DrainRequest) -> Result<DrainStatus, DrainRefusal> {
        let mut current = lock(&self.current);
        if let Some(running) = current.as_ref() {
            let running = lock(running);
            if running.state == DrainState::Running {
                return Err(DrainRefusal::Running {
                    to: running.to.clone(),
                });
            }
        }
        let valid = request
            .to
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(DrainRefusal::BadAddress { given: request.to });
        }
        let handle =
            tokio::runtime::Handle::try_current().map_err(|_| DrainRefusal::Unavailable)?;
        let status = DrainStatus {
            to: request.to.clone(),
            tenant: request.tenant.clone(),
            state: DrainState::Running,
            handed_over: 0,
            refused: 0,
            remaining: 0,
            held: 0,
            last_error: None,
        };
        let shared = Arc::new(Mutex::new(status.clone()));
        *current = Some(shared.clone());
        let run = Run {
            queue: self.queue.clone(),
            live: self.live.clone(),
            request,
            status: shared,
        };
        handle.spawn(run.run());
        Ok(status)
    }

    fn status(&self) -> Option<DrainStatus> {
        let current = lock(&self.current);
        let shared = current.as_ref()?;
        let mut status = lock(shared).clone();
        drop(current);
        let (remaining, held) = stored(&self.queue, status.tenant.as_deref());
        status.remaining = remaining;
        status.held = held;
        Some(status)
    }
}

/// Messages stored (of `tenant`, if given) and recipients held.
fn stored(queue: &Queue, tenant: Option<&str>) -> (u64, u64) {
    let counts = queue.counts();
    let messages = match tenant {
        Some(t) => counts.by_tenant.get(t).copied().unwrap_or(0),
        None => counts.by_tenant.values().sum(),
    };
    let held = counts.by_state.get(&StateKind::Held).copied().unwrap_or(0);
    (messages, held)
}

/// Why a drain stopped before the end.
#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error("cannot resolve {to}: {detail}")]
    Resolve { to: String, detail: String },
    #[error("cannot connect to {to}: {source}")]
    Connect { to: String, source: ClientError },
    #[error("{to} does not offer {KEYWORD} to this node: add this node's address to its `[cluster] peers`")]
    NotOffered { to: String },
    #[error("{to} refused message {id}: {reply}")]
    Refused {
        to: String,
        id: String,
        reply: String,
    },
    #[error("message {id}: {detail}")]
    Local { id: String, detail: String },
    #[error("the queue: {0}")]
    Queue(String),
}

/// One message's fate.
enum Handed {
    Accepted,
    /// The connection broke before the other node's answer: try again on
    /// a new one.
    ConnectionLost(ClientError),
}

struct Run {
    queue: Arc<Queue>,
    live: Arc<LiveConfig>,
    request: DrainRequest,
    status: Arc<Mutex<DrainStatus>>,
}

impl Run {
    async fn run(self) {
        info!(to = %self.request.to, tenant = ?self.request.tenant, "drain started");
        let result = self.drain().await;
        let mut status = lock(&self.status);
        match result {
            Ok(()) => {
                status.state = DrainState::Done;
                info!(to = %status.to, handed_over = status.handed_over, "drain done");
            }
            Err(e) => {
                if matches!(e, DrainError::Refused { .. }) {
                    status.refused += 1;
                }
                warn!(to = %status.to, handed_over = status.handed_over, error = %e, "drain failed");
                status.state = DrainState::Failed;
                status.last_error = Some(e.to_string());
            }
        }
    }

    async fn drain(&self) -> Result<(), DrainError> {
        let mut conn = self.connect().await?;
        loop {
            let (queue, tenant) = (self.queue.clone(), self.request.tenant.clone());
            let batch =
                tokio::task::spawn_blocking(move || queue.take_pending(tenant.as_deref(), BATCH))
                    .await
                    .map_err(|e| DrainError::Queue(e.to_string()))?
                    .map_err(|e| DrainError::Queue(e.to_string()))?;
            let leases = batch.leases;
            if leases.is_empty() {
                // The drain's own leases are all settled here, so these
                // are the engine's attempts: what they defer waits again.
                if batch.leased == 0 {
                    conn.quit().await;
                    return Ok(());
                }
                tokio::time::sleep(ENGINE_POLL).await;
                continue;
            }
            let mut leases = leases.into_iter();
            while let Some(lease) = leases.next() {
                let result = self.hand_over(&mut conn, &lease).await;
                let result = match result {
                    Ok(Handed::ConnectionLost(e)) => {
                        warn!(id = %lease.id, error = %e, "drain connection lost: opening another");
                        match self.connect().await {
                            Ok(fresh) => {
                                conn = fresh;
                                self.hand_over(&mut conn, &lease).await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    other => other,
                };
                match result {
                    Ok(Handed::Accepted) => lock(&self.status).handed_over += 1,
                    Ok(Handed::ConnectionLost(e)) => {
                        self.give_back(&lease, leases.by_ref());
                        return Err(DrainError::Connect {
                            to: self.request.to.clone(),
                            source: e,
                        });
                    }
                    Err(e) => {
                        self.give_back(&lease, leases.by_ref());
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Returns `lease` and the rest of its batch to the queue, untouched.
    fn give_back(&self, lease: &Lease, rest: impl Iterator<Item = Lease>) {
        let now = SystemTime::now();
        self.queue.return_lease(&lease.key(), now);
        for other in rest {
            self.queue.return_lease(&other.key(), now);
        }
    }

    async fn connect(&self) -> Result<Connection, DrainError> {
        let to = self.request.to.clone();
        let addr = tokio::net::lookup_host(&to)
            .await
            .map_err(|e| DrainError::Resolve {
                to: to.clone(),
                detail: e.to_string(),
            })?
            .next()
            .ok_or_else(|| DrainError::Resolve {
                to: to.clone(),
                detail: "no address".into(),
            })?;
        let host = to.rsplit_once(':').map_or(to.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let config = self.live.current();
        let client = Arc::new(ClientConfig::new(config.server.hostname.as_str()));
        // STARTTLS whenever the other node offers it (sealpost always
        // does); the peers are authorized by address, not certificate.
        let params = TlsParams::new(TlsRequirement::Opportunistic, MinTlsVersion::Any, host)
            .or_else(|_| {
                TlsParams::new(
                    TlsRequirement::Opportunistic,
                    MinTlsVersion::Any,
                    "localhost",
                )
            })
            .map_err(|e| DrainError::Resolve {
                to: to.clone(),
                detail: e.to_string(),
            })?;
        let peer = Peer {
            mx_host: to.clone(),
            addr,
            local: None,
        };
        let conn = Connection::connect(peer, &params, client)
            .await
            .map_err(|source| DrainError::Connect {
                to: to.clone(),
                source,
            })?;
        let offered = conn
            .capabilities()
            .is_some_and(|caps| caps.other.iter().any(|(k, _)| k == KEYWORD));
        if !offered {
            conn.quit().await;
            return Err(DrainError::NotOffered { to });
        }
        Ok(conn)
    }

    /// Sends one leased message; records it as delivered after the
    /// other node's `250` (the lease is given back on any other answer).
    async fn hand_over(&self, conn: &mut Connection, lease: &Lease) -> Result<Handed, DrainError> {
        let local = |detail: String| DrainError::Local {
            id: lease.id.to_string(),
            detail,
        };
        let (queue, copy) = (self.queue.clone(), lease.clone());
        let body = tokio::task::spawn_blocking(move || queue.read_body(&copy))
            .await
            .map_err(|e| local(e.to_string()))?;
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                self.queue.return_lease(&lease.key(), SystemTime::now());
                return Err(local(e.to_string()));
            }
        };
        let from = parse_reverse_path(&format!("<{}>", lease.mail_from))
            .map_err(|e| local(format!("sender: {e}")))?;
        let to = lease
            .recipients
            .iter()
            .map(|r| parse_forward_path(&format!("<{}>", r.address)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| local(format!("recipient: {e}")))?;
        let (mail, rcpt) = records(lease);
        let message = OutboundMessage {
            from: &from,
            to: &to,
            body: &body,
            // The sender's REQUIRETLS travels in the transfer record, for
            // the receiving node's delivery; this hop is between nodes.
            requiretls: false,
        };
        let sent = conn.send_with(&message, &mail, &rcpt).await;
        let outcomes = match sent {
            Ok(Delivery::Attempted(outcomes)) => outcomes,
            Ok(Delivery::Refused(why)) => {
                self.queue.return_lease(&lease.key(), SystemTime::now());
                return Err(self.refused(lease, why.to_string()));
            }
            Err(e) => {
                self.queue.return_lease(&lease.key(), SystemTime::now());
                return Ok(Handed::ConnectionLost(e));
            }
        };
        let accepted: Vec<(u16, Outcome)> = lease
            .recipients
            .iter()
            .zip(&outcomes)
            .filter_map(|(r, o)| match o {
                RecipientOutcome::Delivered(reply) => Some((
                    r.index,
                    Outcome::Delivered {
                        reply: remote(conn.peer(), reply),
                    },
                )),
                _ => None,
            })
            .collect();
        if accepted.is_empty() {
            self.queue.return_lease(&lease.key(), SystemTime::now());
            let reply = outcomes
                .first()
                .map_or_else(|| "no answer".to_string(), |o| o.reply().to_string());
            return Err(self.refused(lease, reply));
        }
        let all = accepted.len() == lease.recipients.len();
        let attempt = Attempt {
            at: SystemTime::now(),
            mx_host: Some(self.request.to.clone()),
            ip: Some(conn.peer().addr.ip().to_string()),
            tls_version: None,
            cipher: None,
            authentication: Authentication::None,
            reply_or_reason: accepted[0].1.reason().clone(),
        };
        let (queue, lease_owned) = (self.queue.clone(), lease.clone());
        tokio::task::spawn_blocking(move || {
            queue.record_attempt(lease_owned, &accepted, attempt, &RetryPolicy::default())
        })
        .await
        .map_err(|e| local(e.to_string()))?
        .map_err(|e| DrainError::Queue(e.to_string()))?;
        if !all {
            // The rest (over the other node's recipient limit) stay
            // waiting here and go in a later round.
            info!(id = %lease.id, "part of a message handed over; the rest follows");
        }
        Ok(Handed::Accepted)
    }

    fn refused(&self, lease: &Lease, reply: String) -> DrainError {
        DrainError::Refused {
            to: self.request.to.clone(),
            id: lease.id.to_string(),
            reply,
        }
    }
}

/// The transfer records of a lease: the MAIL parameter and one RCPT
/// parameter per recipient.
fn records(lease: &Lease) -> (Vec<String>, Vec<Vec<String>>) {
    let arrived_ms = lease
        .arrived_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let message = MessageRecord {
        tenant: lease.tenant.clone(),
        level: lease.policy.level.clone(),
        min_tls: lease.policy.min_tls.clone(),
        tls_request: lease.tls_request,
        arrived_ms,
        origin_id: lease.id.to_string(),
        mail_params: lease.mail_params.clone(),
    };
    let rcpt = lease
        .recipients
        .iter()
        .map(|r| {
            vec![transfer::parameter(&RecipientRecord {
                destination: lease.destination.clone(),
                params: r.params.clone(),
            })]
        })
        .collect();
    (vec![transfer::parameter(&message)], rcpt)
}
