//! The record path of the metrics, before and after they moved to the
//! `prometheus-client` crate (issue 21): what one delivered message costs
//! the engine (received, delivered with its latency, the TLS outcome) and
//! what a deferral costs, spread over 1,000 tenants; plus one scrape of
//! 10,000 tenants (capped to 100 series and `other`).
//!
//! `legacy` is the hand-written recording of `src/metrics.rs` as it was
//! before (a `BTreeMap` per tenant under a mutex, a map per TLS outcome,
//! atomics for the histogram), kept here only to compare. Run with
//! `cargo bench --bench metrics_record`; figures in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sealpost::metrics::Metrics;
use sealpost_queue::Counts;

mod legacy {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    const LATENCY_BUCKETS: [f64; 12] = [
        0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
    ];

    #[derive(Default, Clone, Copy)]
    struct TenantCounters {
        received: u64,
        delivered: u64,
        deferred: u64,
    }

    #[derive(Default)]
    pub struct Metrics {
        tenants: Mutex<BTreeMap<String, TenantCounters>>,
        tls: Mutex<BTreeMap<(String, String), u64>>,
        latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
        latency_sum_micros: AtomicU64,
        latency_count: AtomicU64,
    }

    impl Metrics {
        fn tenant(&self, tenant: &str, bump: impl FnOnce(&mut TenantCounters)) {
            let mut tenants = self.tenants.lock().unwrap();
            match tenants.get_mut(tenant) {
                Some(counters) => bump(counters),
                None => bump(tenants.entry(tenant.to_string()).or_default()),
            }
        }
        pub fn received(&self, tenant: &str) {
            self.tenant(tenant, |c| c.received += 1);
        }
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
        pub fn deferred(&self, tenant: &str) {
            self.tenant(tenant, |c| c.deferred += 1);
        }
        pub fn tls_outcome(&self, level: &str, outcome: &str) {
            let mut tls = self.tls.lock().unwrap();
            *tls.entry((level.to_string(), outcome.to_string()))
                .or_default() += 1;
        }
    }
}

fn tenants(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tenant-{i:05}")).collect()
}

fn record(c: &mut Criterion) {
    let names = tenants(1_000);
    let latency = Duration::from_millis(1_500);
    let mut group = c.benchmark_group("metrics_record");

    let old = legacy::Metrics::default();
    let mut i = 0;
    group.bench_function("message/hand-written", |b| {
        b.iter(|| {
            let tenant = &names[i % names.len()];
            i += 1;
            old.received(black_box(tenant));
            old.delivered(black_box(tenant), latency);
            old.tls_outcome("opportunistic", "unauthenticated");
        })
    });
    let new = Metrics::new();
    let mut i = 0;
    group.bench_function("message/prometheus-client", |b| {
        b.iter(|| {
            let tenant = &names[i % names.len()];
            i += 1;
            new.received(black_box(tenant));
            new.delivered(black_box(tenant), latency);
            new.tls_outcome("opportunistic", "unauthenticated");
        })
    });

    let mut i = 0;
    group.bench_function("deferral/hand-written", |b| {
        b.iter(|| {
            let tenant = &names[i % names.len()];
            i += 1;
            old.deferred(black_box(tenant));
            old.tls_outcome("dane-required", "refused");
        })
    });
    let mut i = 0;
    group.bench_function("deferral/prometheus-client", |b| {
        b.iter(|| {
            let tenant = &names[i % names.len()];
            i += 1;
            new.deferred(black_box(tenant));
            new.deferral("dane-required", "policy");
            new.tls_outcome("dane-required", "refused");
        })
    });
    group.finish();

    let many = Metrics::new();
    let mut counts = Counts::default();
    for (n, tenant) in tenants(10_000).into_iter().enumerate() {
        many.received(&tenant);
        counts.by_tenant.insert(tenant, n as u64 % 13);
    }
    c.bench_function("metrics_scrape/10000_tenants", |b| {
        b.iter(|| black_box(many.render(&counts)).len())
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
