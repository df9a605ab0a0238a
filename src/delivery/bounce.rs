//! Delivery status notifications: the bounces the queue owes (recipients
//! that failed permanently or whose lifetime ran out) and optional delay
//! warnings, built by [`crate::dsn`] (RFC 3464) and queued like any other
//! message, from the null sender to the original sender.
//!
//! - Never a DSN for a message whose sender is null (RFC 5321 section
//!   4.5.5): the bounce record is simply completed.
//! - The DSN goes where the sender's mail goes: to the tenant's own server
//!   (the managed domain's route) when the sender's domain is an enabled
//!   managed domain, else to the sender domain's MX under the outbound
//!   policy of the managed domain the original message was for.
//! - A bounce record is completed only after its DSN is durable in the
//!   queue; a crash in between sends the DSN again (at-least-once).
//! - The DSN of a REQUIRETLS message returns none of its content, not
//!   even its header section (RFC 8689 section 5): the DSN itself is sent
//!   without REQUIRETLS, so it may reach the sender over a path that is
//!   not authenticated.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sealpost_queue::{
    AcceptedPolicy, BounceDue, BouncedRecipient, Lease, MessageId, NewMessage, NewRecipient,
    Outcome, Queue, QueueError,
};
use tracing::{info, warn};

use super::plan::Destination;
use super::reason::{enhanced, Reason};
use super::shared::DeliveryContext;
use crate::config::Config;
use crate::date::unix_seconds;
use crate::dsn::{self, Action, DsnInput, DsnOutcome, RecipientReport};
use crate::policy::PeerQuery;
use crate::smtp::address::parse_reverse_path;
use crate::smtp::{EnhancedCode, Reply, ReversePath};

/// Queues the DSNs of up to `max` owed bounces; returns how many bounce
/// records were completed.
pub(crate) async fn send_bounces(shared: &Arc<DeliveryContext>, max: usize) -> usize {
    let queue = shared.queue.clone();
    let owed = match tokio::task::spawn_blocking(move || queue.take_bounces(max)).await {
        Ok(Ok(owed)) => owed,
        Ok(Err(e)) => {
            warn!(error = %e, "reading owed bounces failed");
            return 0;
        }
        Err(_) => return 0,
    };
    let mut done = 0;
    for bounce in owed {
        let shared_for_task = shared.clone();
        let record = bounce.clone();
        let result =
            tokio::task::spawn_blocking(move || bounce_one(&shared_for_task, &record)).await;
        match result {
            Ok(Ok(())) => done += 1,
            Ok(Err(e)) => {
                warn!(original = %bounce.id, error = %e, "queueing a DSN failed; it is tried again later");
                shared.queue.untake_bounce(&bounce);
            }
            Err(e) => {
                warn!(original = %bounce.id, error = %e, "queueing a DSN failed; it is tried again later");
                shared.queue.untake_bounce(&bounce);
            }
        }
    }
    done
}

fn bounce_one(shared: &DeliveryContext, bounce: &BounceDue) -> Result<(), QueueError> {
    let config = shared.live.current();
    let queue = &shared.queue;
    let now = SystemTime::now();
    let reports: Vec<RecipientReport> = bounce
        .recipients
        .iter()
        .map(|r| failure_report(r, unix_seconds(now)))
        .collect();
    let original = queue.message_body(bounce.id).unwrap_or_default();
    let sender = sender_path(&bounce.mail_from);
    let outcome = dsn::build(&DsnInput {
        reporting_mta: config.server.hostname.as_str(),
        original_sender: &sender,
        arrival_date: bounce.id.millis() / 1000,
        now: unix_seconds(now),
        recipients: &reports,
        original_message: &original,
        redact: bounce.tls_request.requires_tls(),
    });
    match outcome {
        Ok(DsnOutcome::Bounce(dsn)) => {
            let managed = bounce
                .recipients
                .iter()
                .filter_map(|r| {
                    r.address
                        .rsplit_once('@')
                        .map(|(_, d)| d.to_ascii_lowercase())
                })
                .find(|d| config.policy.domain(d).is_some());
            let id = queue_dsn(
                queue,
                &config,
                &bounce.tenant,
                &dsn.recipient.to_string(),
                managed.as_deref(),
                dsn.message,
                &format!("bounce for message {}", bounce.id),
            )?;
            info!(original = %bounce.id, dsn = %id, to = %dsn.recipient, recipients = bounce.recipients.len(), "bounce queued");
            for _ in &bounce.recipients {
                shared.metrics.bounced(&bounce.tenant);
            }
        }
        Ok(DsnOutcome::NoBounceForNullSender) => {
            info!(original = %bounce.id, recipients = bounce.recipients.len(), "no bounce: the sender is null");
        }
        Err(e) => {
            warn!(original = %bounce.id, error = %e, "no DSN could be built; the bounce is dropped")
        }
    }
    queue.bounce_done(bounce)
}

fn sender_path(mail_from: &str) -> ReversePath {
    if mail_from.is_empty() {
        return ReversePath::Null;
    }
    parse_reverse_path(&format!("<{mail_from}>")).unwrap_or(ReversePath::Null)
}

/// What a DSN says of one recipient's reason (RFC 3464 section 2.3):
/// its status, of `class` (5: failed, 4: delayed); the remote MTA and its
/// reply when the server answered, else the reason as text.
struct Described {
    status: EnhancedCode,
    remote_mta: Option<String>,
    diagnostic: Option<Reply>,
    local_reason: Option<String>,
}

fn describe(reason: &Reason, class: u8) -> Described {
    let remote = reason.remote().map(|(host, code, status, text)| {
        let reply = Reply {
            code,
            enhanced: status.map(enhanced),
            lines: vec![text.to_string()],
        };
        (host.to_string(), reply)
    });
    let status = match (reason.status(), &remote) {
        (Some(status), _) => enhanced(status),
        (None, Some((_, reply))) => dsn::status_of(reply),
        (None, None) => EnhancedCode(class, 0, 0),
    };
    // The action decides the class (a reason's own status may be of the
    // other class, e.g. a deferral's 4.x.x in a bounce at expiry).
    let status = EnhancedCode(class, status.1, status.2);
    let (remote_mta, diagnostic) = match remote {
        Some((host, reply)) => (Some(host), Some(reply)),
        None => (None, None),
    };
    Described {
        status,
        local_reason: diagnostic.is_none().then(|| reason.to_string()),
        remote_mta,
        diagnostic,
    }
}

fn failure_report(r: &BouncedRecipient, now: u64) -> RecipientReport {
    let described = describe(&r.reason, 5);
    let status = if r.expired {
        // RFC 3463: 4.4.7 delivery time expired.
        EnhancedCode(4, 4, 7)
    } else {
        described.status
    };
    RecipientReport {
        final_recipient: r.address.clone(),
        original_recipient: None,
        action: Action::Failed,
        status,
        local_reason: described.local_reason,
        remote_mta: described.remote_mta,
        diagnostic: described.diagnostic,
        last_attempt: Some(now),
        will_retry_until: None,
    }
}

/// Queues a DSN for `to` (durable before it returns).
fn queue_dsn(
    queue: &Queue,
    config: &Config,
    tenant: &str,
    to: &str,
    managed_domain: Option<&str>,
    message: Vec<u8>,
    what: &str,
) -> Result<MessageId, QueueError> {
    let to_domain = to
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let sender_is_ours = config.policy.domain(&to_domain).is_some_and(|d| d.enabled);
    let (destination, policy) = if sender_is_ours {
        (
            Destination::Inbound(&to_domain).key(),
            AcceptedPolicy {
                level: "opportunistic".into(),
                min_tls: "any".into(),
                explanation: format!("{what}: to managed domain {to_domain} by its route"),
            },
        )
    } else {
        let resolution = config.policy.resolve(
            managed_domain.unwrap_or(""),
            PeerQuery::Outbound {
                recipient_domain: &to_domain,
            },
        );
        (
            to_domain.clone(),
            AcceptedPolicy {
                level: resolution.level.to_string(),
                min_tls: resolution.min_tls.to_string(),
                explanation: format!("{what}: {resolution}"),
            },
        )
    };
    queue
        .enqueue(NewMessage {
            tenant: tenant.to_string(),
            mail_from: String::new(),
            mail_params: Vec::new(),
            recipients: vec![NewRecipient {
                address: to.to_string(),
                destination,
                params: Vec::new(),
            }],
            policy,
            body: message,
            arrived_at: SystemTime::now(),
        })?
        .wait()
}

/// Sends a delay warning for the recipients of `lease` deferred in this
/// attempt when the message has just crossed `[delivery] delay_warning`
/// (no earlier attempt was past it). Blocking (reads the message's
/// attempt log); called only for messages older than the threshold.
pub fn delay_warning(
    shared: &DeliveryContext,
    config: &Config,
    lease: &Lease,
    outcomes: &[(u16, Outcome)],
    threshold: Duration,
) {
    if lease.mail_from.is_empty() {
        return;
    }
    let now = SystemTime::now();
    let crossed_at = lease.arrived_at + threshold;
    if now < crossed_at {
        return;
    }
    let Ok(info) = shared.queue.show(lease.id) else {
        return;
    };
    // Each deferred recipient not warned about yet, with its own reason.
    let deferred: Vec<(&str, &Reason)> = outcomes
        .iter()
        .filter_map(|(index, o)| match o {
            Outcome::Deferred { reason } => Some((index, reason)),
            _ => None,
        })
        .filter_map(|(index, reason)| {
            let r = info.recipients.iter().find(|r| r.index == *index)?;
            let warned = r.attempts.iter().any(|a| a.attempt.at >= crossed_at);
            (!warned).then_some((r.address.as_str(), reason))
        })
        .collect();
    if deferred.is_empty() {
        return;
    }
    let until = unix_seconds(lease.arrived_at + config.delivery.retry.lifetime);
    let reports: Vec<RecipientReport> = deferred
        .iter()
        .map(|(address, reason)| {
            let described = describe(reason, 4);
            RecipientReport {
                final_recipient: address.to_string(),
                original_recipient: None,
                action: Action::Delayed,
                status: described.status,
                local_reason: described.local_reason,
                remote_mta: described.remote_mta,
                diagnostic: described.diagnostic,
                last_attempt: Some(unix_seconds(now)),
                will_retry_until: Some(until),
            }
        })
        .collect();
    let original = shared.queue.message_body(lease.id).unwrap_or_default();
    let sender = sender_path(&lease.mail_from);
    let built = dsn::build(&DsnInput {
        reporting_mta: config.server.hostname.as_str(),
        original_sender: &sender,
        arrival_date: unix_seconds(lease.arrived_at),
        now: unix_seconds(now),
        recipients: &reports,
        original_message: &original,
        redact: lease.tls_request.requires_tls(),
    });
    if let Ok(DsnOutcome::Bounce(dsn)) = built {
        let managed = deferred
            .iter()
            .filter_map(|(a, _)| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
            .find(|d| config.policy.domain(d).is_some());
        match queue_dsn(
            &shared.queue,
            config,
            &lease.tenant,
            &dsn.recipient.to_string(),
            managed.as_deref(),
            dsn.message,
            &format!("delay warning for message {}", lease.id),
        ) {
            Ok(id) => {
                info!(original = %lease.id, dsn = %id, recipients = deferred.len(), "delay warning queued")
            }
            Err(e) => warn!(original = %lease.id, error = %e, "queueing a delay warning failed"),
        }
    }
}
