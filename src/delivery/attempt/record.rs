//! The end of an attempt: its outcomes per recipient and the attempt
//! record, the delay warning owed, the log lines, and the write to the
//! queue (durable before the lease is released, see
//! [`sealpost_queue::Queue::record_attempt`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sealpost_queue::{Attempt, Authentication as QueueAuth, Lease, Outcome};
use tracing::{error, info};

use super::DeliveryContext;
use crate::config::Config;
use crate::delivery::reason::Reason;
use crate::policy::SecurityLevel;
use crate::smtp::client::{Achieved, TlsAuthentication};

/// Each recipient's outcome, by its index in the message.
pub(crate) type Outcomes = Vec<(u16, Outcome)>;

/// Sends the delay warning owed (if any) and records the attempt in the
/// queue, durable before it returns; the lease is released. A failed
/// record gives the lease back to the queue, due again after the first
/// retry interval ([`return_lease`]): not stuck until a restart, and not
/// retried in a loop that could deliver again and again.
pub(crate) async fn conclude(
    shared: &Arc<DeliveryContext>,
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
    shared: &Arc<DeliveryContext>,
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
pub(crate) fn bounces_now(
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
/// [`crate::delivery::bounce::delay_warning`]). [`conclude`] calls it
/// before the attempt is recorded, for every path that defers: an attempt,
/// and a lease held back by its destination's pause (else a message
/// crossing the threshold during a pause would never be warned about).
async fn warn_if_delayed(
    shared: &Arc<DeliveryContext>,
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
        crate::delivery::bounce::delay_warning(&shared, &config, &lease, &outcomes, threshold)
    })
    .await;
}

/// Every recipient of `lease` with `outcome`, recorded as `attempt`.
pub(crate) fn all(lease: &Lease, outcome: Outcome, attempt: Attempt) -> (Outcomes, Attempt) {
    (
        lease
            .recipients
            .iter()
            .map(|r| (r.index, outcome.clone()))
            .collect(),
        attempt,
    )
}

/// Every recipient of `lease` deferred with `reason`, recorded as `attempt`.
pub(crate) fn deferred(lease: &Lease, reason: &Reason, attempt: Attempt) -> (Outcomes, Attempt) {
    let outcome = Outcome::Deferred {
        reason: reason.clone(),
    };
    all(lease, outcome, attempt)
}

/// Every recipient of `lease` deferred for a local `reason`: no session ran.
pub(crate) fn defer_all(lease: &Lease, reason: &Reason) -> (Outcomes, Attempt) {
    deferred(lease, reason, local_attempt(reason))
}

/// Every recipient of `lease` failed for `reason`, recorded as `attempt`.
pub(crate) fn fail_all(lease: &Lease, reason: &Reason, attempt: Attempt) -> (Outcomes, Attempt) {
    let outcome = Outcome::Failed {
        reason: reason.clone(),
    };
    all(lease, outcome, attempt)
}

/// The record of an attempt that ran no session.
pub(crate) fn local_attempt(reason: &Reason) -> Attempt {
    Attempt {
        at: SystemTime::now(),
        mx_host: None,
        ip: None,
        tls_version: None,
        cipher: None,
        authentication: QueueAuth::None,
        reply_or_reason: reason.clone(),
    }
}

/// The record of an attempt over a connection that achieved `achieved`.
pub(crate) fn attempt_from(achieved: &Achieved, reason: &Reason) -> Attempt {
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
            TlsAuthentication::None => QueueAuth::None,
            TlsAuthentication::Dane => QueueAuth::Dane,
            TlsAuthentication::WebPki => QueueAuth::WebPki,
        },
        reply_or_reason: reason.clone(),
    }
}

/// The version of the `delivery` log line's fields (docs/operations.md,
/// "Log lines"): a consumer checks it before it reads them.
pub(crate) const LOG_SCHEMA: &str = "sealpost.delivery.v1";

/// Logs the one `delivery` line of an attempt (docs/operations.md, "Log
/// lines"), then one `delivery attempt` event per recipient
/// (also for deferrals (also for deferrals
/// decided without a connection, e.g. while the destination is paused).
/// The message id, tenant and destination come from the attempt's span;
/// `detail` is the reason as stored, after the level it was decided under.
pub(crate) fn log_outcomes(
    lease: &Lease,
    outcomes: &Outcomes,
    attempt: &Attempt,
    level: Option<SecurityLevel>,
    started: Instant,
) {
    // `unknown`: the stored policy did not parse.
    let level = level.map_or("unknown", SecurityLevel::as_str);
    let count = |want: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| want(o)).count();
    let recipients: Vec<&str> = lease
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    let relay = match (&attempt.mx_host, &attempt.ip) {
        (Some(host), Some(ip)) => format!("{host} [{ip}]"),
        (Some(host), None) => host.clone(),
        _ => "none".to_string(),
    };
    let reason = &attempt.reply_or_reason;
    // From arrival to the start of this attempt.
    let queue_delay = lease
        .arrived_at
        .elapsed()
        .unwrap_or_default()
        .saturating_sub(started.elapsed());
    info!(
        schema = LOG_SCHEMA,
        recipients = %recipients.join(","),
        relay = %relay,
        level,
        delay_queue_ms = queue_delay.as_millis() as u64,
        delay_attempt_ms = started.elapsed().as_millis() as u64,
        delivered = count(|o| matches!(o, Outcome::Delivered { .. })),
        deferred = count(|o| matches!(o, Outcome::Deferred { .. })),
        failed = count(|o| matches!(o, Outcome::Failed { .. })),
        dsn_status = %reason.status().map_or_else(String::new, |s| s.to_string()),
        tls = attempt.tls_version.as_deref().unwrap_or("none"),
        cipher = attempt.cipher.as_deref().unwrap_or("none"),
        authentication = match attempt.authentication {
            QueueAuth::None => "none",
            QueueAuth::Dane => "dane",
            QueueAuth::WebPki => "mta-sts",
        },
        reason_kind = reason.kind(),
        reason = %reason,
        "delivery"
    );
    for (index, outcome) in outcomes {
        let to = lease
            .recipients
            .iter()
            .find(|r| r.index == *index)
            .map(|r| r.address.as_str())
            .unwrap_or("");
        let result = match outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Failed { .. } => "failed",
        };
        let reason = outcome.reason();
        info!(
            to,
            level,
            mx = attempt.mx_host.as_deref(),
            tls = attempt.tls_version.as_deref(),
            cipher = attempt.cipher.as_deref(),
            authentication = ?attempt.authentication,
            elapsed_ms = started.elapsed().as_millis() as u64,
            result,
            reason_kind = reason.kind(),
            detail = %format_args!("{level}: {reason}"),
            "delivery attempt"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::reason::{status, LocalCause};

    #[test]
    fn only_a_deferral_at_the_end_of_the_lifetime_bounces_now() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let x = Reason::local(LocalCause::ConnectionFailed, status::NO_ANSWER, "x");
        let deferred = vec![(0, Outcome::Deferred { reason: x.clone() })];
        let mixed = vec![
            (0, Outcome::Deferred { reason: x.clone() }),
            (1, Outcome::Delivered { reply: x }),
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
