//! Counters of what the server did, rendered in the Prometheus text
//! exposition format (version 0.0.4) for `GET /metrics` on the admin socket
//! and on the optional `[admin] metrics_listen` TCP listener.
//!
//! Recording is cheap: one short mutex section per event (a map per
//! tenant, a map per TLS outcome) or a few atomic additions (the latency
//! histogram). Reception records `received`; the delivery engine records
//! `delivered`, `deferred`, `bounced` and `tls_outcome`; the inbound side
//! records `refused` (one counter per [`Refusal`] reason). Queue depth is not
//! counted here: the renderer reads it from the queue's own counters.
//!
//! Metric names and labels are listed in `docs/admin-api.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sealpost_queue::{Counts, StateKind};

use crate::inbound::Refusal;

/// Upper bounds (seconds) of the delivery latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

/// Every recipient state, in the order metrics and tables show them.
pub const STATES: [StateKind; 7] = [
    StateKind::Queued,
    StateKind::Active,
    StateKind::Deferred,
    StateKind::Held,
    StateKind::Delivered,
    StateKind::Failed,
    StateKind::Expired,
];

/// The lowercase name of a state, as the admin API and metrics write it.
pub fn state_name(state: StateKind) -> &'static str {
    match state {
        StateKind::Queued => "queued",
        StateKind::Active => "active",
        StateKind::Deferred => "deferred",
        StateKind::Held => "held",
        StateKind::Delivered => "delivered",
        StateKind::Failed => "failed",
        StateKind::Expired => "expired",
    }
}

/// Per-tenant message counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TenantCounters {
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
}

/// The server's counters; share one `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    tenants: Mutex<BTreeMap<String, TenantCounters>>,
    tls: Mutex<BTreeMap<(String, String), u64>>,
    /// Clients and messages refused by a limit, per reason.
    refusals: Mutex<BTreeMap<Refusal, u64>>,
    /// One counter per bucket of [`LATENCY_BUCKETS`] plus `+Inf`
    /// (not cumulative; the renderer adds them up).
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while counting leaves plain numbers behind: keep using them.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn tenant(&self, tenant: &str, bump: impl FnOnce(&mut TenantCounters)) {
        let mut tenants = lock(&self.tenants);
        match tenants.get_mut(tenant) {
            Some(counters) => bump(counters),
            None => bump(tenants.entry(tenant.to_string()).or_default()),
        }
    }

    /// A message was queued durably for `tenant`.
    pub fn received(&self, tenant: &str) {
        self.tenant(tenant, |c| c.received += 1);
    }

    /// A message (or recipient group) was delivered `latency` after arrival.
    pub fn delivered(&self, tenant: &str, latency: Duration) {
        self.tenant(tenant, |c| c.delivered += 1);
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery attempt was deferred (temporary failure).
    pub fn deferred(&self, tenant: &str) {
        self.tenant(tenant, |c| c.deferred += 1);
    }

    /// A message (or recipient group) failed permanently and bounces.
    pub fn bounced(&self, tenant: &str) {
        self.tenant(tenant, |c| c.bounced += 1);
    }

    /// The TLS result of one delivery connection, e.g. level `mandatory-dane`,
    /// outcome `authenticated`, `unauthenticated`, `plaintext` or `refused`.
    pub fn tls_outcome(&self, level: &str, outcome: &str) {
        let mut tls = lock(&self.tls);
        *tls.entry((level.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// A limit refused a client or a message, or cut a connection short.
    pub fn refused(&self, reason: Refusal) {
        *lock(&self.refusals).entry(reason).or_default() += 1;
    }

    /// How often `reason` refused so far.
    pub fn refusals(&self, reason: Refusal) -> u64 {
        lock(&self.refusals).get(&reason).copied().unwrap_or(0)
    }

    /// The counters of every tenant seen so far.
    pub fn tenants(&self) -> BTreeMap<String, TenantCounters> {
        lock(&self.tenants).clone()
    }

    /// Everything, in the Prometheus text format; queue depth from `counts`.
    pub fn render(&self, counts: &Counts) -> String {
        let mut out = String::with_capacity(4096);
        let tenants = self.tenants();
        type Counter = fn(&TenantCounters) -> u64;
        let per_tenant: [(&str, &str, Counter); 4] = [
            (
                "sealpost_messages_received_total",
                "Messages accepted and queued durably, per tenant.",
                |c| c.received,
            ),
            (
                "sealpost_messages_delivered_total",
                "Messages delivered, per tenant.",
                |c| c.delivered,
            ),
            (
                "sealpost_messages_deferred_total",
                "Delivery attempts deferred (temporary failures), per tenant.",
                |c| c.deferred,
            ),
            (
                "sealpost_messages_bounced_total",
                "Messages failed permanently, per tenant.",
                |c| c.bounced,
            ),
        ];
        for (name, help, value) in per_tenant {
            header(&mut out, name, help, "counter");
            for (tenant, counters) in &tenants {
                let _ = writeln!(
                    out,
                    "{name}{{tenant=\"{}\"}} {}",
                    escape(tenant),
                    value(counters)
                );
            }
        }

        header(
            &mut out,
            "sealpost_tls_outcomes_total",
            "TLS results of delivery connections, per policy level and outcome.",
            "counter",
        );
        for ((level, outcome), n) in lock(&self.tls).iter() {
            let _ = writeln!(
                out,
                "sealpost_tls_outcomes_total{{level=\"{}\",outcome=\"{}\"}} {n}",
                escape(level),
                escape(outcome)
            );
        }

        header(
            &mut out,
            "sealpost_smtp_refusals_total",
            "Clients and messages refused by a [limits] setting (or the postmaster rule), per reason.",
            "counter",
        );
        let refusals = lock(&self.refusals).clone();
        for reason in Refusal::ALL {
            let n = refusals.get(&reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "sealpost_smtp_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }

        header(
            &mut out,
            "sealpost_queue_recipients",
            "Recipients in the queue, per state.",
            "gauge",
        );
        for state in STATES {
            let n = counts.by_state.get(&state).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "sealpost_queue_recipients{{state=\"{}\"}} {n}",
                state_name(state)
            );
        }
        header(
            &mut out,
            "sealpost_queue_messages",
            "Messages in the queue, per tenant.",
            "gauge",
        );
        for (tenant, n) in &counts.by_tenant {
            let _ = writeln!(
                out,
                "sealpost_queue_messages{{tenant=\"{}\"}} {n}",
                escape(tenant)
            );
        }

        let name = "sealpost_delivery_latency_seconds";
        header(
            &mut out,
            name,
            "Time from arrival to delivery.",
            "histogram",
        );
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.latency_buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(
            out,
            "{name}_count {}",
            self.latency_count.load(Ordering::Relaxed)
        );
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped (the text format's rules).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_as_prometheus_text() {
        let metrics = Metrics::new();
        metrics.received("acme");
        metrics.received("acme");
        metrics.received("we\"ird");
        metrics.delivered("acme", Duration::from_millis(300));
        metrics.delivered("acme", Duration::from_secs(100_000));
        metrics.deferred("acme");
        metrics.bounced("acme");
        metrics.tls_outcome("mandatory-dane", "authenticated");
        metrics.refused(Refusal::ConnectionsPerIp);
        metrics.refused(Refusal::ConnectionsPerIp);
        let mut counts = Counts::default();
        counts.by_state.insert(StateKind::Deferred, 4);
        counts.by_tenant.insert("acme".into(), 2);
        let text = metrics.render(&counts);
        for line in [
            "sealpost_messages_received_total{tenant=\"acme\"} 2",
            "sealpost_messages_received_total{tenant=\"we\\\"ird\"} 1",
            "sealpost_messages_delivered_total{tenant=\"acme\"} 2",
            "sealpost_messages_deferred_total{tenant=\"acme\"} 1",
            "sealpost_messages_bounced_total{tenant=\"acme\"} 1",
            "sealpost_tls_outcomes_total{level=\"mandatory-dane\",outcome=\"authenticated\"} 1",
            "sealpost_smtp_refusals_total{reason=\"max_connections_per_ip\"} 2",
            "sealpost_smtp_refusals_total{reason=\"mail_loop\"} 0",
            "sealpost_queue_recipients{state=\"deferred\"} 4",
            "sealpost_queue_recipients{state=\"held\"} 0",
            "sealpost_queue_messages{tenant=\"acme\"} 2",
            "sealpost_delivery_latency_seconds_bucket{le=\"0.1\"} 0",
            "sealpost_delivery_latency_seconds_bucket{le=\"0.5\"} 1",
            "sealpost_delivery_latency_seconds_bucket{le=\"14400\"} 1",
            "sealpost_delivery_latency_seconds_bucket{le=\"+Inf\"} 2",
            "sealpost_delivery_latency_seconds_sum 100000.3",
            "sealpost_delivery_latency_seconds_count 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert_eq!(metrics.tenants()["acme"].received, 2);
    }
}
