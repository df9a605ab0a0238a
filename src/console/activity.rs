//! The activity page: the tenant's messages waiting in the queue (with
//! their typed reasons, rendered), its recent TLS outcomes per peer from
//! the queue's attempt records, and its recent changes from the audit log.
//! An operator sees every tenant's.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::StatusCode;
use sealpost_queue::{
    Authentication, ListFilter, LocalCause, MessageInfo, Outcome, Reason, RecipientState,
};

use super::pages::{self, PeerOutcomes, QueuedLine};
use super::respond::html;
use super::session::{Session, SignedIn};
use super::ConsoleState;
use crate::admin::audit;
use crate::admin::http::HttpResponse;
use crate::config::ConsoleRole;

/// Messages read from the queue for the page, at most.
const MAX_MESSAGES: usize = 200;

/// Audit records shown, at most.
const MAX_AUDIT: usize = 50;

/// `GET /activity`.
pub async fn page(state: &Arc<ConsoleState>, session: &Session, who: &SignedIn) -> HttpResponse {
    let tenant = match &who.role {
        ConsoleRole::Operator => None,
        ConsoleRole::TenantAdmin(t) => Some(t.as_str().to_owned()),
    };
    let queue = state.queue.clone();
    let data_dir = state.live.current().server.data_dir.clone();
    let work = move || {
        let filter = ListFilter {
            tenant: tenant.clone(),
            ..ListFilter::default()
        };
        let messages = queue
            .list(&filter, None, MAX_MESSAGES)
            .map(|p| p.items)
            .map_err(|e| e.to_string())?;
        let records = audit::read(&audit::path_in(&data_dir), tenant.as_deref(), MAX_AUDIT)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((messages, records))
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok((messages, records))) => html(
            StatusCode::OK,
            pages::activity(session, &waiting(&messages), &outcomes(&messages), &records),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console: reading the queue or the audit log");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::not_found(Some(session)),
            )
        }
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::not_found(Some(session)),
        ),
    }
}

/// Each recipient not yet finished, with its last attempt's reason.
fn waiting(messages: &[MessageInfo]) -> Vec<QueuedLine> {
    let mut lines = Vec::new();
    for m in messages {
        for r in &m.recipients {
            let state = match &r.state {
                RecipientState::Queued => "queued",
                RecipientState::Active => "being delivered",
                RecipientState::Deferred { .. } => "deferred",
                RecipientState::Held => "held",
                _ => continue,
            };
            lines.push(QueuedLine {
                id: m.id.to_string(),
                tenant: m.tenant.clone(),
                sender: m.mail_from.clone(),
                recipient: r.address.clone(),
                state: state.to_owned(),
                reason: r
                    .attempts
                    .last()
                    .map_or(String::new(), |a| a.outcome.reason().to_string()),
            });
        }
    }
    lines
}

/// Outcomes per recipient domain over the attempts in the queue's records.
fn outcomes(messages: &[MessageInfo]) -> Vec<PeerOutcomes> {
    let mut by_peer: BTreeMap<String, PeerOutcomes> = BTreeMap::new();
    for m in messages {
        for r in &m.recipients {
            if r.destination.starts_with("inbound:") {
                continue;
            }
            for a in &r.attempts {
                let o = by_peer
                    .entry(r.destination.clone())
                    .or_insert_with(|| PeerOutcomes {
                        peer: r.destination.clone(),
                        ..PeerOutcomes::default()
                    });
                match &a.outcome {
                    Outcome::Delivered { .. } => {
                        match (&a.attempt.authentication, &a.attempt.tls_version) {
                            (Authentication::Dane, _) => o.dane += 1,
                            (Authentication::Webpki, _) => o.mta_sts += 1,
                            (Authentication::None, Some(_)) => o.tls += 1,
                            (Authentication::None, None) => o.cleartext += 1,
                        }
                    }
                    other if refused_by_policy(other.reason()) => {
                        o.refused += 1;
                        o.last_refusal = Some(other.reason().to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    by_peer.into_values().collect()
}

/// Whether the TLS policy refused the host: DANE, MTA-STS, or a required
/// TLS (or TLS version) the server did not give.
fn refused_by_policy(reason: &Reason) -> bool {
    match reason {
        Reason::Dane { .. } | Reason::MtaSts { .. } => true,
        Reason::Local { cause, .. } => matches!(
            cause,
            LocalCause::TlsNotOffered
                | LocalCause::TlsBelowMinimum
                | LocalCause::TlsHandshakeFailed
                | LocalCause::StartTlsInjection
        ),
        Reason::Paused { cause, .. } => refused_by_policy(cause),
        Reason::Hosts { each } => each.iter().any(refused_by_policy),
        _ => false,
    }
}
