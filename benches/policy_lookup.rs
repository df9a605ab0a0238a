//! Policy resolution over a snapshot of 100,000 managed domains, each with a
//! few peer entries, along every lookup path: exact peer domain, wildcard
//! (deep name), exact IP, CIDR, domain default, global default (unknown
//! domain). Run with `cargo bench --bench policy_lookup`; in test mode
//! (`cargo test --all-targets`) the snapshot is scaled down to 1,000 domains.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use sealpost::policy::{
    Defaults, DirectionPolicy, ManagedDomain, MinTlsVersion, PeerEntry, PeerQuery, PolicyRule,
    PolicySnapshot, SecurityLevel, TenantName,
};

fn peer(pattern: &str, level: SecurityLevel) -> PeerEntry {
    PeerEntry {
        matcher: pattern.parse().expect("bench pattern"),
        rule: PolicyRule::new(level, MinTlsVersion::Tls12),
        enabled: true,
    }
}

fn snapshot(domains: u32) -> PolicySnapshot {
    let list = (0..domains)
        .map(|i| ManagedDomain {
            name: format!("customer{i}.example")
                .parse()
                .expect("bench domain"),
            tenant: TenantName::new(&format!("tenant{}", i / 10)),
            enabled: true,
            outbound: DirectionPolicy {
                default: Some(PolicyRule::new(
                    SecurityLevel::OpportunisticDane,
                    MinTlsVersion::Any,
                )),
                peers: vec![
                    peer(
                        &format!("partner{}.example", i % 1000),
                        SecurityLevel::Mandatory,
                    ),
                    peer(
                        &format!("*.bank{}.example", i % 100),
                        SecurityLevel::MandatoryDane,
                    ),
                    peer("gmail.com", SecurityLevel::MtaSts),
                ],
            },
            inbound: DirectionPolicy {
                default: None,
                peers: vec![
                    peer(
                        &format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff),
                        SecurityLevel::Mandatory,
                    ),
                    peer(
                        &format!("10.{}.0.0/16", (i >> 8) & 0xff),
                        SecurityLevel::Opportunistic,
                    ),
                    peer(&format!("192.0.2.{}", i % 250), SecurityLevel::Mandatory),
                    peer("*.partner.example", SecurityLevel::Mandatory),
                ],
            },
        })
        .collect();
    PolicySnapshot::build(Defaults::default(), list).expect("valid bench model")
}

fn bench(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let domains: u32 = if full { 100_000 } else { 1_000 };
    let snap = snapshot(domains);
    let managed = format!("customer{}.example", domains / 2);
    let i = domains / 2;
    let mut group = c.benchmark_group(format!("resolve_{domains}_domains"));
    group.bench_function("outbound_exact_domain", |b| {
        let to = format!("partner{}.example", i % 1000);
        b.iter(|| {
            snap.resolve(
                black_box(&managed),
                PeerQuery::Outbound {
                    recipient_domain: black_box(&to),
                },
            )
        })
    });
    group.bench_function("outbound_wildcard_4_labels_deep", |b| {
        let to = format!("a.b.mx.bank{}.example", i % 100);
        b.iter(|| {
            snap.resolve(
                black_box(&managed),
                PeerQuery::Outbound {
                    recipient_domain: black_box(&to),
                },
            )
        })
    });
    group.bench_function("outbound_domain_default", |b| {
        b.iter(|| {
            snap.resolve(
                black_box(&managed),
                PeerQuery::Outbound {
                    recipient_domain: black_box("Unlisted.Example."),
                },
            )
        })
    });
    group.bench_function("outbound_unknown_domain_global_default", |b| {
        b.iter(|| {
            snap.resolve(
                black_box("nobody.example"),
                PeerQuery::Outbound {
                    recipient_domain: black_box("gmail.com"),
                },
            )
        })
    });
    let inbound = |ip: IpAddr, sender: Option<&'static str>| PeerQuery::Inbound {
        ip: Some(ip),
        sender_domain: sender,
    };
    group.bench_function("inbound_exact_ip", |b| {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250) as u8));
        b.iter(|| snap.resolve(black_box(&managed), black_box(inbound(ip, None))))
    });
    group.bench_function("inbound_longest_cidr", |b| {
        let ip = IpAddr::V4(Ipv4Addr::new(
            10,
            ((i >> 8) & 0xff) as u8,
            (i & 0xff) as u8,
            7,
        ));
        b.iter(|| snap.resolve(black_box(&managed), black_box(inbound(ip, None))))
    });
    group.bench_function("inbound_wildcard_sender_after_ip_miss", |b| {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        b.iter(|| {
            snap.resolve(
                black_box(&managed),
                black_box(inbound(ip, Some("mx.partner.example"))),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
