//! `GET /top`: one snapshot of what `sealpost top` shows, in one request
//! a second: the message counters (the client turns two snapshots into
//! rates), the queue by state, the busiest destinations with the TLS level
//! their last connection achieved and their pause, per-tenant counts, and
//! the top defer reasons.
//!
//! `?tenant=NAME` narrows the destinations, the tenants and the defer
//! reasons to one tenant's mail. The destinations' queued counts and the
//! defer reasons come from a walk over at most [`TOP_SCAN`] messages (the
//! queue's own counters when no tenant is asked for), so a refresh a
//! second stays cheap on a large queue.

use std::collections::BTreeMap;

use sealpost_queue::{ListFilter, Queue, StateKind};
use serde::{Deserialize, Serialize};

use super::http::{parse_query, ApiError};
use super::views::{DestinationStatus, ReasonCount, ReasonTally};
use super::AdminState;
use crate::metrics::{state_name, STATES};

/// Messages walked at most per snapshot.
pub(crate) const TOP_SCAN: usize = 1_000;

/// Destinations and tenants listed at most.
pub(crate) const TOP_ROWS: usize = 50;

/// `GET /top`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopSnapshot {
    /// Unix milliseconds when it was taken.
    pub at_ms: u64,
    /// The tenant asked for (`None`: all).
    pub tenant: Option<String>,
    /// Since start, summed over the tenants shown.
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Recipients per state (every state).
    pub queue: Vec<(String, u64)>,
    /// The destinations with the most queued recipients.
    pub destinations: Vec<TopDestination>,
    pub tenants: Vec<TopTenant>,
    /// Last-attempt reasons of deferred recipients, most frequent first.
    pub defer_reasons: Vec<ReasonCount>,
    /// Deferrals since start per `level/reason kind`.
    pub deferral_kinds: Vec<ReasonCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopDestination {
    pub name: String,
    /// Recipients not yet final.
    pub queued: u64,
    pub active_connections: usize,
    /// The TLS level the last connection achieved: `DANE`, `MTA-STS`,
    /// `TLS`, `cleartext` (`None`: no session yet).
    pub tls: Option<String>,
    /// Unix milliseconds until which it is paused (backed off).
    pub paused_until: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopTenant {
    pub name: String,
    pub queued_messages: u64,
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

/// Builds the snapshot (blocking: walks the queue).
pub fn snapshot(
    state: &AdminState,
    engine: Vec<DestinationStatus>,
    query: &str,
) -> Result<TopSnapshot, ApiError> {
    let mut tenant = None;
    for (name, value) in parse_query(query)? {
        match name.as_str() {
            "tenant" if !value.is_empty() => tenant = Some(value),
            "tenant" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: use tenant"
                )))
            }
        }
    }
    let counts = state.queue.counts();
    let counters = state.metrics.tenants();
    let mut out = TopSnapshot {
        at_ms: super::views::unix_ms(std::time::SystemTime::now()),
        queue: STATES
            .iter()
            .map(|s| {
                let n = counts.by_state.get(s).copied().unwrap_or(0);
                (state_name(*s).to_string(), n)
            })
            .collect(),
        ..TopSnapshot::default()
    };
    let mut tenants: Vec<TopTenant> = counters
        .iter()
        .map(|(name, c)| (name, Some(c)))
        .chain(counts.by_tenant.keys().map(|name| (name, None)))
        .filter(|(name, _)| tenant.as_deref().is_none_or(|t| t == name.as_str()))
        .map(|(name, _)| {
            let c = counters.get(name).copied().unwrap_or_default();
            TopTenant {
                name: name.clone(),
                queued_messages: counts.by_tenant.get(name).copied().unwrap_or(0),
                received: c.received,
                delivered: c.delivered,
                deferred: c.deferred,
                bounced: c.bounced,
            }
        })
        .collect();
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    tenants.dedup_by(|a, b| a.name == b.name);
    for t in &tenants {
        out.received += t.received;
        out.delivered += t.delivered;
        out.deferred += t.deferred;
        out.bounced += t.bounced;
    }
    tenants.sort_by(|a, b| {
        (b.queued_messages, b.received)
            .cmp(&(a.queued_messages, a.received))
            .then_with(|| a.name.cmp(&b.name))
    });
    tenants.truncate(TOP_ROWS);
    out.tenants = tenants;

    let (queued, reasons) = walk(&state.queue, tenant.as_deref())?;
    let queued = match tenant {
        Some(_) => queued,
        None => counts.by_destination,
    };
    let achieved = state.metrics.destinations_tls();
    let engine: BTreeMap<String, DestinationStatus> =
        engine.into_iter().map(|d| (d.name.clone(), d)).collect();
    let mut destinations: Vec<TopDestination> = queued
        .iter()
        .map(|(name, n)| (name.clone(), *n))
        .chain(
            engine
                .keys()
                .filter(|_| tenant.is_none())
                .filter(|name| !queued.contains_key(*name))
                .map(|name| (name.clone(), 0)),
        )
        .map(|(name, n)| {
            let status = engine.get(&name);
            TopDestination {
                queued: n,
                active_connections: status.map_or(0, |s| s.active_connections),
                tls: achieved.get(&name).map(|s| s.to_string()),
                paused_until: status.and_then(|s| s.backoff_until),
                last_error: status.and_then(|s| s.last_error.clone()),
                name,
            }
        })
        .collect();
    destinations.sort_by(|a, b| {
        (b.queued, b.active_connections)
            .cmp(&(a.queued, a.active_connections))
            .then_with(|| a.name.cmp(&b.name))
    });
    destinations.truncate(TOP_ROWS);
    out.destinations = destinations;
    out.defer_reasons = reasons;
    let mut kinds: Vec<ReasonCount> = state
        .metrics
        .deferrals()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((level, reason), n)| ReasonCount {
            reason: format!("{level}/{reason}"),
            kind: level,
            cause: reason,
            recipients: n,
        })
        .collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.recipients));
    out.deferral_kinds = kinds;
    out.tenant = tenant;
    Ok(out)
}

/// Non-final recipients per destination and the last-attempt reasons of
/// deferred ones, over at most [`TOP_SCAN`] messages (of `tenant`, or
/// with deferred recipients when `None`).
fn walk(
    queue: &Queue,
    tenant: Option<&str>,
) -> Result<(BTreeMap<String, u64>, Vec<ReasonCount>), ApiError> {
    let filter = ListFilter {
        tenant: tenant.map(str::to_string),
        state: tenant.is_none().then_some(StateKind::Deferred),
        ..ListFilter::default()
    };
    let mut queued: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons = ReasonTally::default();
    let page = queue
        .list(&filter, None, TOP_SCAN)
        .map_err(|e| ApiError::internal(format!("reading the queue: {e}")))?;
    for message in &page.items {
        for r in &message.recipients {
            if r.state.is_final() {
                continue;
            }
            *queued.entry(r.destination.clone()).or_default() += 1;
            if r.state.kind() == StateKind::Deferred {
                if let Some(last) = r.attempts.last() {
                    reasons.add(last.outcome.reason());
                }
            }
        }
    }
    let reasons = reasons.top(10);
    Ok((queued, reasons))
}
