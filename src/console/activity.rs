//! The activity page: the tenant's messages waiting in the queue (with
//! their typed reasons, rendered), its TLS outcomes per peer since start
//! (counted by the delivery engine in [`crate::metrics`]; the last refusal
//! by policy from the queue's attempt records), and its recent changes
//! from the audit log. An operator sees every tenant's.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::StatusCode;
use sealpost_queue::{ListFilter, LocalCause, MessageInfo, Reason, RecipientState};

use super::pages::{self, PeerOutcomes, QueuedLine};
use super::respond::html;
use super::session::{Session, SignedIn};
use super::ConsoleState;
use crate::admin::audit;
use crate::admin::http::HttpResponse;
use crate::config::ConsoleRole;
use crate::metrics::PeerTls;

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
    let counted = state.metrics.peer_outcomes(tenant_of(who));
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok((messages, records))) => html(
            StatusCode::OK,
            pages::activity(
                session,
                &waiting(&messages),
                &outcomes(&counted, &messages),
                &records,
            ),
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

fn tenant_of(who: &SignedIn) -> Option<&str> {
    match &who.role {
        ConsoleRole::Operator => None,
        ConsoleRole::TenantAdmin(t) => Some(t.as_str()),
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

/// Outcomes per peer (recipient domain; routes of inbound mail left out),
/// each with the last refusal by policy among the queue's records.
fn outcomes(
    counted: &[((String, String), PeerTls)],
    messages: &[MessageInfo],
) -> Vec<PeerOutcomes> {
    let mut last_refusal: BTreeMap<&str, String> = BTreeMap::new();
    for r in messages.iter().flat_map(|m| &m.recipients) {
        for a in &r.attempts {
            if refused_by_policy(a.outcome.reason()) {
                last_refusal.insert(&r.destination, a.outcome.reason().to_string());
            }
        }
    }
    let mut by_peer: BTreeMap<&str, PeerOutcomes> = BTreeMap::new();
    for ((_, peer), tls) in counted {
        if peer.starts_with("inbound:") {
            continue;
        }
        let o = by_peer.entry(peer).or_insert_with(|| PeerOutcomes {
            peer: peer.clone(),
            last_refusal: last_refusal.get(peer.as_str()).cloned(),
            ..PeerOutcomes::default()
        });
        o.dane += tls.dane;
        o.mta_sts += tls.mta_sts;
        o.tls += tls.tls;
        o.cleartext += tls.cleartext;
        o.refused += tls.refused;
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
