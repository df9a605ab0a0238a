//! MTA-STS hot paths: parsing a policy body and a TXT record, matching MX
//! names against a policy, and a cached policy lookup (sled + in-memory TXT,
//! no fetch).
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::future::BoxFuture;
use sealpost::mta_sts::txt::parse_txt_records;
use sealpost::mta_sts::{
    FetchError, ManualClock, Policy, PolicyCache, PolicyFetcher, PolicyStore, StsTxtSource,
    TxtLookupError,
};

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mx.example.net\r\nmx: backup.example.org\r\nmax_age: 604800\r\n";

struct OneTxt;
impl StsTxtSource for OneTxt {
    fn lookup_txt<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, TxtLookupError>> {
        Box::pin(async { Ok(vec!["v=STSv1; id=20261123".to_string()]) })
    }
}

struct OneBody;
impl PolicyFetcher for OneBody {
    fn fetch<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<String, FetchError>> {
        Box::pin(async { Ok(POLICY.to_string()) })
    }
}

fn parsers(c: &mut Criterion) {
    c.bench_function("mta_sts/policy_parse", |b| {
        b.iter(|| Policy::parse(black_box(POLICY)))
    });
    let records = vec![
        "v=spf1 -all".to_string(),
        "v=STSv1; id=20261123;".to_string(),
    ];
    c.bench_function("mta_sts/txt_parse", |b| {
        b.iter(|| parse_txt_records(black_box(&records)))
    });
    let policy = Policy::parse(POLICY).expect("policy");
    c.bench_function("mta_sts/mx_match", |b| {
        b.iter(|| {
            black_box(policy.mx_matches(black_box("a.mx.example.net.")))
                && !policy.mx_matches(black_box("mx.elsewhere.test"))
        })
    });
}

fn cached_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PolicyStore::open(&dir.path().join("sts")).expect("store");
    let cache = PolicyCache::new(
        Arc::new(OneTxt),
        Arc::new(OneBody),
        store,
        Arc::new(ManualClock::new(1_800_000_000)),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(cache.policy_for("example.com"));
    c.bench_function("mta_sts/cached_lookup", |b| {
        b.iter(|| runtime.block_on(cache.policy_for(black_box("example.com"))))
    });
}

criterion_group!(benches, parsers, cached_lookup);
criterion_main!(benches);
