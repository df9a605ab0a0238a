//! Counters of what the server did, and the Prometheus text exposition
//! (version 0.0.4) of them for `GET /metrics` on the admin socket and on
//! the optional `[admin] metrics_listen` TCP listener. The text is written
//! by the `prometheus-client` crate (escaping, `_total` suffixes, HELP and
//! TYPE lines); this module decides what is counted and how many series
//! there are.
//!
//! Names follow the Prometheus conventions: the `sealpost_` prefix,
//! `_total` on counters, base units (seconds, bytes) in the name. They are
//! listed in `docs/admin-api.md`.
//!
//! Recording is cheap: one short mutex section per event or a few atomic
//! additions. Reception records `received`; the delivery engine records
//! `delivered`, `deferred`, `deferral`, `bounced` and `tls_outcome`; the
//! inbound side records `refused` (one counter per [`Refusal`] reason).
//! Queue depth, free disk space and certificate expiry are read at scrape
//! time ([`Gauges`]).
//!
//! ## The per-tenant cap
//! 10,000 tenants times four counters would be 40,000 series. A tenant
//! gets series of its own (`tenant="<name>"`) when it is among the first
//! [`TENANT_SERIES`] tenants seen since start; the server admits the
//! tenants with the largest queues first ([`Metrics::admit`]), so the
//! biggest senders keep their own series across restarts, and the busiest
//! senders are the likeliest to be seen first after that. Every other
//! tenant counts under `tenant="other"`. A tenant keeps its series until
//! the process stops, so every counter only rises; the sum over `tenant`
//! is always the exact total. `sealpost_metrics_tenants_folded` says how
//! many tenants are folded into `other`; the admin API's `GET /tenants`
//! keeps exact counters for every tenant. The per-tenant queue gauge
//! (`sealpost_queue_messages`) shows the [`TENANT_SERIES`] tenants with
//! the most queued messages at each scrape and the rest as `other`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sealpost_queue::{Counts, StateKind};

use crate::inbound::Refusal;

mod scrape;
mod tenants;

use scrape::Scrape;
pub use tenants::TenantCounters;
use tenants::{top_with_other, Tenants};

/// Upper bounds (seconds) of the delivery latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

/// How many tenants get series of their own (the rest: `tenant="other"`).
pub(crate) const TENANT_SERIES: usize = 100;

/// The `tenant` label of the tenants without series of their own.
pub(crate) const OTHER_TENANT: &str = "other";

/// How many `(level, reason)` pairs the deferral counter keeps apart; a
/// caller passing more distinct reasons has the rest counted as `other`.
pub(crate) const DEFERRAL_SERIES: usize = 256;

/// The reason kinds of [`Metrics::deferral`], shown from start at 0 for
/// every level.
pub(crate) const DEFERRAL_KINDS: [&str; 4] = ["policy", "unreachable", "peer", "local"];

/// The outcomes of [`Metrics::tls_outcome`], shown from start at 0 for
/// every level.
pub(crate) const TLS_OUTCOMES: [&str; 4] =
    ["authenticated", "unauthenticated", "plaintext", "refused"];

/// Every recipient state, in the order metrics and tables show them.
pub(crate) const STATES: [StateKind; 7] = [
    StateKind::Queued,
    StateKind::Active,
    StateKind::Deferred,
    StateKind::Held,
    StateKind::Delivered,
    StateKind::Failed,
    StateKind::Expired,
];

/// The lowercase name of a state, as the admin API and metrics write it.
pub(crate) fn state_name(state: StateKind) -> &'static str {
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    level: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeferralLabels {
    level: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// What is read at scrape time rather than counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauges {
    /// Configurations put in force since start.
    pub config_generation: u64,
    /// Octets free on the queue's file system (`None`: unknown).
    pub disk_free_bytes: Option<u64>,
    /// `[limits] min_free_disk` (0: no reserve).
    pub disk_reserve_bytes: u64,
    /// The certificates sealpost presents (SMTP STARTTLS and the MTA-STS
    /// policy host).
    pub certificates: Vec<CertificateExpiry>,
}

/// When one served certificate expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// The SNI name it is chosen for, or `default`.
    pub name: String,
    /// The leaf's `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// The server's counters; share one `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    tenant_cap: usize,
    tenants: Mutex<Tenants>,
    tls: Family<TlsLabels, Counter>,
    deferrals: Family<DeferralLabels, Counter>,
    /// The labels in `deferrals` (the family cannot list them).
    deferral_keys: Mutex<Vec<DeferralLabels>>,
    refusals: Family<RefusalLabels, Counter>,
    latency: Histogram,
    /// The TLS level the last delivery connection to each destination
    /// achieved, for `sealpost top` (not exported: one entry per
    /// destination).
    achieved: Mutex<HashMap<String, &'static str>>,
    /// TLS outcomes per (tenant, destination) since start, for the web
    /// console's activity page (not exported; at most
    /// [`MAX_PEER_OUTCOMES`] pairs).
    peer_outcomes: Mutex<HashMap<(String, String), PeerTls>>,
    /// ACME certificate names per state (a gauge set by `src/acme`).
    acme_domains: Mutex<BTreeMap<&'static str, u64>>,
    /// `[cluster]`: `None` without it, else (limits shared, nodes alive).
    cluster: Mutex<Option<(bool, usize)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::with_tenant_series(TENANT_SERIES)
    }
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

    /// Counters giving at most `cap` tenants series of their own.
    pub(crate) fn with_tenant_series(cap: usize) -> Metrics {
        let metrics = Metrics {
            tenant_cap: cap,
            tenants: Mutex::new(Tenants::default()),
            tls: Family::default(),
            deferrals: Family::default(),
            deferral_keys: Mutex::new(Vec::new()),
            refusals: Family::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            achieved: Mutex::new(HashMap::new()),
            peer_outcomes: Mutex::new(HashMap::new()),
            acme_domains: Mutex::new(BTreeMap::new()),
            cluster: Mutex::new(None),
        };
        // Series that exist from start, so that `rate()` and `increase()`
        // see the first event (Prometheus' advice for known labels).
        for level in crate::policy::SecurityLevel::ALL {
            for outcome in TLS_OUTCOMES {
                let _ = metrics.tls.get_or_create(&TlsLabels {
                    level: level.as_str().to_string(),
                    outcome: outcome.to_string(),
                });
            }
            for reason in DEFERRAL_KINDS {
                let labels = DeferralLabels {
                    level: level.as_str().to_string(),
                    reason: reason.to_string(),
                };
                let _ = metrics.deferrals.get_or_create(&labels);
                lock(&metrics.deferral_keys).push(labels);
            }
        }
        for reason in Refusal::ALL {
            let _ = metrics.refusals.get_or_create(&RefusalLabels {
                reason: reason.as_str(),
            });
        }
        metrics
    }

    /// Gives `tenants` (most important first) series of their own while
    /// there is room; the server calls it at start with the tenants that
    /// have the most queued messages.
    pub fn admit<'a>(&self, tenants: impl IntoIterator<Item = &'a str>) {
        let mut all = lock(&self.tenants);
        for tenant in tenants {
            if all.with_series >= self.tenant_cap {
                break;
            }
            all.slot(tenant, self.tenant_cap);
        }
    }

    fn tenant(&self, tenant: &str, bump: impl FnOnce(&mut TenantCounters)) {
        let mut all = lock(&self.tenants);
        bump(&mut all.slot(tenant, self.tenant_cap).counters);
    }

    /// `[cluster]` state: limits shared in Redis or local, and the nodes
    /// last seen alive (src/cluster/).
    pub(crate) fn set_cluster(&self, shared: bool, nodes_alive: usize) {
        *lock(&self.cluster) = Some((shared, nodes_alive));
    }

    /// Sets the `sealpost_acme_domains` gauge (names per ACME state).
    pub(crate) fn set_acme_domains(&self, counts: BTreeMap<&'static str, u64>) {
        *lock(&self.acme_domains) = counts;
    }

    /// A message was queued durably for `tenant`.
    pub fn received(&self, tenant: &str) {
        self.tenant(tenant, |c| c.received += 1);
    }

    /// A message (or recipient group) was delivered `latency` after arrival.
    pub fn delivered(&self, tenant: &str, latency: Duration) {
        self.tenant(tenant, |c| c.delivered += 1);
        self.latency.observe(latency.as_secs_f64());
    }

    /// A delivery attempt was deferred (temporary failure).
    pub fn deferred(&self, tenant: &str) {
        self.tenant(tenant, |c| c.deferred += 1);
    }

    /// Why a delivery attempt under the policy `level` was deferred: a
    /// reason kind from a small fixed set (`policy` when the message's TLS
    /// policy refused what the destination offered, `unreachable`, `peer`
    /// for a 4xx answer, `local`), never free text.
    pub fn deferral(&self, level: &str, reason: &str) {
        let mut labels = DeferralLabels {
            level: level.to_string(),
            reason: reason.to_string(),
        };
        if let Some(counter) = self.deferrals.get(&labels) {
            counter.inc();
            return;
        }
        let mut keys = lock(&self.deferral_keys);
        if keys.len() >= DEFERRAL_SERIES {
            labels.reason = OTHER_TENANT.to_string();
        }
        if !keys.contains(&labels) {
            keys.push(labels.clone());
        }
        self.deferrals.get_or_create(&labels).inc();
    }

    /// A message (or recipient group) failed permanently and bounces.
    pub(crate) fn bounced(&self, tenant: &str) {
        self.tenant(tenant, |c| c.bounced += 1);
    }

    /// The TLS result of one delivery connection, e.g. level `mandatory-dane`,
    /// outcome `authenticated`, `unauthenticated`, `plaintext` or `refused`.
    pub fn tls_outcome(&self, level: &str, outcome: &str) {
        self.tls
            .get_or_create(&TlsLabels {
                level: level.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The TLS level the last connection to `destination` achieved
    /// (see [`tls_achieved`]).
    pub(crate) fn destination_tls(&self, destination: &str, achieved: &'static str) {
        let mut all = lock(&self.achieved);
        match all.get_mut(destination) {
            Some(level) => *level = achieved,
            None => {
                all.insert(destination.to_string(), achieved);
            }
        }
    }

    /// The TLS level last achieved per destination.
    pub(crate) fn destinations_tls(&self) -> HashMap<String, &'static str> {
        lock(&self.achieved).clone()
    }

    /// One delivery attempt's TLS outcome for `tenant` towards
    /// `destination`: `delivered` recipients over a connection that
    /// achieved `achieved` ([`tls_achieved`]), or refused by the TLS
    /// policy.
    pub fn peer_outcome(
        &self,
        tenant: &str,
        destination: &str,
        delivered: Option<&'static str>,
        refused: bool,
    ) {
        let mut all = lock(&self.peer_outcomes);
        let key = (tenant.to_string(), destination.to_string());
        if all.len() >= MAX_PEER_OUTCOMES && !all.contains_key(&key) {
            return;
        }
        let counts = all.entry(key).or_default();
        match delivered {
            Some("DANE") => counts.dane += 1,
            Some("MTA-STS") => counts.mta_sts += 1,
            Some("TLS") => counts.tls += 1,
            Some(_) => counts.cleartext += 1,
            None => {}
        }
        if refused {
            counts.refused += 1;
        }
    }

    /// The TLS outcomes per (tenant, destination) since start, of one
    /// tenant or of all, sorted.
    pub fn peer_outcomes(&self, tenant: Option<&str>) -> Vec<((String, String), PeerTls)> {
        let mut list: Vec<_> = lock(&self.peer_outcomes)
            .iter()
            .filter(|((t, _), _)| tenant.is_none_or(|want| want == t))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        list.sort();
        list
    }

    /// A limit refused a client or a message, or cut a connection short.
    pub(crate) fn refused(&self, reason: Refusal) {
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The exact counters of every tenant seen so far (not capped).
    pub(crate) fn tenants(&self) -> BTreeMap<String, TenantCounters> {
        lock(&self.tenants)
            .by_name
            .iter()
            .map(|(name, slot)| (name.clone(), slot.counters))
            .collect()
    }

    /// Deferrals so far per `(level, reason)`.
    pub(crate) fn deferrals(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.deferral_keys)
            .iter()
            .map(|labels| {
                let n = self.deferrals.get(labels).map_or(0, |c| c.get());
                ((labels.level.clone(), labels.reason.clone()), n)
            })
            .collect()
    }

    /// Per-tenant counters as exposed: the tenants with series of their
    /// own, then `other`; and how many tenants `other` holds.
    fn tenant_series(&self) -> (Vec<(String, TenantCounters)>, usize) {
        let all = lock(&self.tenants);
        let mut own = Vec::with_capacity(all.with_series + 1);
        let mut other = TenantCounters::default();
        let mut folded = 0;
        for (name, slot) in &all.by_name {
            if slot.own_series {
                own.push((name.clone(), slot.counters));
            } else {
                other.add(&slot.counters);
                folded += 1;
            }
        }
        drop(all);
        own.sort_by(|a, b| a.0.cmp(&b.0));
        own.push((OTHER_TENANT.to_string(), other));
        (own, folded)
    }

    /// The counters and queue depth from `counts`, in the Prometheus
    /// text format (the scrape-time gauges at their defaults).
    pub fn render(&self, counts: &Counts) -> String {
        self.render_with(counts, &Gauges::default())
    }

    /// Everything, in the Prometheus text format: the counters, queue
    /// depth from `counts`, and `gauges`.
    pub(crate) fn render_with(&self, counts: &Counts, gauges: &Gauges) -> String {
        let (tenants, folded) = self.tenant_series();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            tenants,
            folded,
            queue_tenants: top_with_other(&counts.by_tenant, self.tenant_cap),
            states: STATES
                .iter()
                .map(|&s| (state_name(s), counts.by_state.get(&s).copied().unwrap_or(0)))
                .collect(),
            gauges: gauges.clone(),
            acme_domains: lock(&self.acme_domains).clone(),
            cluster: *lock(&self.cluster),
        }));
        registry.register(
            "sealpost_smtp_refusals",
            "Clients and messages refused by a [limits] setting (or the postmaster rule), per reason",
            self.refusals.clone(),
        );
        registry.register(
            "sealpost_tls_outcomes",
            "TLS results of delivery connections, per policy level and outcome",
            self.tls.clone(),
        );
        registry.register(
            "sealpost_deferrals",
            "Delivery attempts deferred, per policy level and reason kind (policy, unreachable, peer, local)",
            self.deferrals.clone(),
        );
        registry.register(
            "sealpost_delivery_latency_seconds",
            "Time from arrival to delivery",
            self.latency.clone(),
        );
        let mut text = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// Most (tenant, destination) pairs whose TLS outcomes are kept.
pub const MAX_PEER_OUTCOMES: usize = 100_000;

/// Delivery attempts towards one peer by the TLS they achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerTls {
    /// Attempts that delivered over a connection authenticated by DANE,
    /// by MTA-STS (WebPKI), encrypted otherwise, or in cleartext.
    pub dane: u64,
    pub mta_sts: u64,
    pub tls: u64,
    pub cleartext: u64,
    /// Attempts the TLS policy refused (no TLS, no usable TLSA, ...).
    pub refused: u64,
}

/// The TLS level a delivery connection achieved, as `sealpost top` shows
/// it: `DANE` (authenticated by TLSA), `MTA-STS` (authenticated by WebPKI
/// under an MTA-STS policy), `TLS` (encrypted, otherwise authenticated or
/// not), `cleartext` (a session without TLS); `None` when no session ran.
pub(crate) fn tls_achieved(
    level: crate::policy::SecurityLevel,
    authentication: sealpost_queue::Authentication,
    encrypted: bool,
    session_ran: bool,
) -> Option<&'static str> {
    use sealpost_queue::Authentication;
    match (encrypted, authentication, session_ran) {
        (true, Authentication::Dane, _) => Some("DANE"),
        (true, Authentication::WebPki, _) if level == crate::policy::SecurityLevel::MtaSts => {
            Some("MTA-STS")
        }
        (true, _, _) => Some("TLS"),
        (false, _, true) => Some("cleartext"),
        (false, _, false) => None,
    }
}

/// What one scrape shows beside the live families.
#[cfg(test)]
mod tests;
