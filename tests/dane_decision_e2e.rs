//! The RFC 7672 decision table end to end: a real validating resolver
//! against the in-process signed zone decides per MX host, then real
//! rustls handshakes against loopback servers decide whether the message
//! may go, for `opportunistic-dane` and `mandatory-dane`.
//!
//! The SMTP client does not exist yet, so the test plays its part: it
//! walks the MX hosts in order, connects straight into TLS (no SMTP
//! dialogue), and feeds the result to `connection_verdict`. The
//! "STARTTLS not offered" row is covered at the decision-function level
//! (`src/dane/decision_tests.rs`, `connection_table`).
mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_server::proto::rr::RecordType;
use rustls::pki_types::CertificateDer;
use sealpost::dane::{
    association_data, client_config, connection_verdict, dane_failure, resolve_destination,
    ConnectionEvent, ConnectionVerdict, DaneLevel, DanePlan, DestinationOutcome, Matching,
    Selector, Usage,
};
use sealpost::dns::Resolver;
use sealpost::policy::MinTlsVersion;
use support::dane_tls::{encrypt_only_client, handshake, TlsPeer};
use support::dns::TestDns;
use support::pki::{self, TestCa, ALL_VERSIONS};

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn digest(cert: &CertificateDer<'_>, selector: Selector, matching: Matching) -> Vec<u8> {
    association_data(cert, selector, matching).expect("association data")
}

/// What became of a message for a destination.
#[derive(Debug, PartialEq)]
enum Delivery {
    Authenticated {
        mx: String,
        usage: Usage,
        record: String,
    },
    Unauthenticated {
        mx: String,
    },
    Deferred(String),
    Failed(String),
}

/// The delivery engine's part: plan, then try the MX hosts in order.
async fn deliver(
    resolver: &Resolver,
    level: DaneLevel,
    domain: &str,
    peers: &HashMap<String, SocketAddr>,
) -> Delivery {
    let plan = resolve_destination(resolver, level, domain).await;
    match &plan.outcome {
        DestinationOutcome::Deliver => {}
        DestinationOutcome::Defer(why) => return Delivery::Deferred(why.to_string()),
        DestinationOutcome::Fail(why) => return Delivery::Failed(why.to_string()),
    }
    let mut skipped = Vec::new();
    for mx in &plan.mx {
        if let DanePlan::Skip(why) = &mx.plan {
            skipped.push(format!("{}: {why}", mx.host.exchange));
            continue;
        }
        let addr = *peers
            .get(&mx.host.exchange)
            .unwrap_or_else(|| panic!("no TLS peer for {}", mx.host.exchange));
        let event = match &mx.plan {
            DanePlan::Authenticate { .. } => {
                let verifier = Arc::new(mx.plan.verifier(&pki::provider()).expect("verifier"));
                let client = client_config(verifier.clone(), MinTlsVersion::Any).expect("client");
                let sni = mx.plan.sni().expect("SNI");
                assert!(mx.plan.requires_tls());
                match handshake(addr, client, sni).await {
                    Ok(_) => ConnectionEvent::TlsEstablished {
                        dane: verifier.outcome().and_then(Result::ok),
                    },
                    Err(err) => ConnectionEvent::HandshakeFailed {
                        dane: err.tls().and_then(dane_failure).cloned(),
                        detail: err.to_string(),
                    },
                }
            }
            _ => match handshake(addr, encrypt_only_client(), &mx.host.exchange).await {
                Ok(_) => ConnectionEvent::TlsEstablished { dane: None },
                Err(err) => ConnectionEvent::HandshakeFailed {
                    dane: None,
                    detail: err.to_string(),
                },
            },
        };
        match connection_verdict(&mx.plan, &event) {
            ConnectionVerdict::SendOverTls {
                authenticated: Some(matched),
            } => {
                return Delivery::Authenticated {
                    mx: mx.host.exchange.clone(),
                    usage: matched.usage,
                    record: matched.to_string(),
                }
            }
            ConnectionVerdict::SendOverTls {
                authenticated: None,
            } => {
                return Delivery::Unauthenticated {
                    mx: mx.host.exchange.clone(),
                }
            }
            ConnectionVerdict::NextMx(why) => skipped.push(format!("{}: {why}", mx.host.exchange)),
            other => panic!("no cleartext path in this test: {other:?}"),
        }
    }
    Delivery::Deferred(format!("all MX hosts failed: {}", skipped.join("; ")))
}

enum Expect {
    Auth(&'static str, Usage),
    Tls(&'static str),
    Defer(&'static str),
    Fail(&'static str),
}

fn check(row: &str, level: DaneLevel, got: &Delivery, want: &Expect) {
    let ok = match (got, want) {
        (Delivery::Authenticated { mx, usage, record }, Expect::Auth(want_mx, want_usage)) => {
            assert!(record.starts_with("DANE-verified via "), "{record}");
            mx == want_mx && usage == want_usage
        }
        (Delivery::Unauthenticated { mx }, Expect::Tls(want_mx)) => mx == want_mx,
        (Delivery::Deferred(why), Expect::Defer(part)) => why.contains(part),
        (Delivery::Failed(why), Expect::Fail(part)) => why.contains(part),
        _ => false,
    };
    assert!(ok, "row {row} ({level}): got {got:?}");
}

struct World {
    dns: TestDns,
    peers: HashMap<String, SocketAddr>,
    _servers: Vec<TlsPeer>,
}

async fn world() -> World {
    let ca = TestCa::new("DANE TA");
    let stranger = pki::self_signed(&["stranger.invalid"]);
    // Host name -> names on its certificate (DANE-TA leaves come from `ca`).
    let hosts: &[(&str, &str)] = &[
        ("mx.plain.test", "mx.plain.test"),
        ("mx.tlsainsecure.test", "mx.tlsainsecure.test"),
        ("mx.notlsa.test", "mx.notlsa.test"),
        ("mx.unusable.test", "mx.unusable.test"),
        ("mx.match.test", "mx.match.test"),
        ("mx.nomatch.test", "mx.nomatch.test"),
        ("mx.ta.test", "mx.ta.test"),
        ("mx.tanexthop.test", "ta-nexthop.test"),
        ("mx.tawrong.test", "elsewhere.test"),
        ("mx.alias.test", "real.alias.test"),
        ("mx.aliasfb.test", "mx.aliasfb.test"),
        ("implicit.test", "implicit.test"),
    ];
    let mut peers = HashMap::new();
    let mut servers = Vec::new();
    let mut leaves = HashMap::new();
    for (host, cert_name) in hosts {
        let leaf = ca.issue(&[cert_name]);
        let server = TlsPeer::start(pki::server_config(&leaf, ALL_VERSIONS)).await;
        peers.insert(host.to_string(), server.addr);
        servers.push(server);
        leaves.insert(*host, leaf);
    }
    let ee = |host: &str| digest(&leaves[host].cert, Selector::Spki, Matching::Sha256);
    let ta = digest(&ca.cert, Selector::Cert, Matching::Sha256);

    let dns = TestDns::builder()
        // MX lookup fails / is bogus.
        .mx("mxfail.test", 10, "mx.match.test")
        .servfail("mxfail.test")
        .bogus_zone("broken.test")
        .mx("broken.test", 10, "mx.broken.test")
        .a("mx.broken.test", LOCAL)
        // MX insecure.
        .insecure_zone("plain.test")
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", LOCAL)
        .tlsa("_25._tcp.mx.plain.test", 3, 1, 1, &ee("mx.plain.test"))
        // MX secure, host address insecure.
        .mx("addrinsecure.test", 10, "mx.plain.test")
        // MX secure, host address bogus / failing.
        .mx("badaddr.test", 10, "mx.badaddr.test")
        .a("mx.badaddr.test", LOCAL)
        .bad_signature("mx.badaddr.test", RecordType::A)
        .mx("addrfail.test", 10, "mx.addrfail.test")
        .a("mx.addrfail.test", LOCAL)
        .servfail("mx.addrfail.test")
        // TLSA insecure: the TLSA name is a CNAME into the unsigned zone.
        .mx("tlsainsecure.test", 10, "mx.tlsainsecure.test")
        .a("mx.tlsainsecure.test", LOCAL)
        .cname("_25._tcp.mx.tlsainsecure.test", "_25._tcp.mx.plain.test")
        // TLSA secure and empty.
        .mx("notlsa.test", 10, "mx.notlsa.test")
        .a("mx.notlsa.test", LOCAL)
        // TLSA lookup fails / is bogus.
        .mx("tlsafail.test", 10, "mx.tlsafail.test")
        .a("mx.tlsafail.test", LOCAL)
        .tlsa("_25._tcp.mx.tlsafail.test", 3, 1, 1, &[1; 32])
        .servfail("_25._tcp.mx.tlsafail.test")
        .mx("tlsaslow.test", 10, "mx.tlsaslow.test")
        .a("mx.tlsaslow.test", LOCAL)
        .tlsa("_25._tcp.mx.tlsaslow.test", 3, 1, 1, &[1; 32])
        .silent("_25._tcp.mx.tlsaslow.test")
        .mx("tlsabogus.test", 10, "mx.tlsabogus.test")
        .a("mx.tlsabogus.test", LOCAL)
        .tlsa("_25._tcp.mx.tlsabogus.test", 3, 1, 1, &[1; 32])
        .bad_signature("_25._tcp.mx.tlsabogus.test", RecordType::TLSA)
        // Every TLSA record unusable.
        .mx("unusable.test", 10, "mx.unusable.test")
        .a("mx.unusable.test", LOCAL)
        .tlsa("_25._tcp.mx.unusable.test", 0, 0, 1, &ta)
        .tlsa(
            "_25._tcp.mx.unusable.test",
            1,
            1,
            1,
            &ee("mx.unusable.test"),
        )
        .tlsa(
            "_25._tcp.mx.unusable.test",
            3,
            1,
            7,
            &ee("mx.unusable.test"),
        )
        .tlsa("_25._tcp.mx.unusable.test", 3, 1, 1, &[9; 31])
        // Usable and matching (DANE-EE), usable and not matching.
        .mx("match.test", 10, "mx.match.test")
        .a("mx.match.test", LOCAL)
        .tlsa("_25._tcp.mx.match.test", 3, 1, 1, &ee("mx.match.test"))
        .mx("nomatch.test", 10, "mx.nomatch.test")
        .a("mx.nomatch.test", LOCAL)
        .tlsa(
            "_25._tcp.mx.nomatch.test",
            3,
            1,
            1,
            &digest(&stranger.cert, Selector::Spki, Matching::Sha256),
        )
        // The first MX does not match, the second does.
        .mx("twomx.test", 10, "mx.nomatch.test")
        .mx("twomx.test", 20, "mx.match.test")
        // DANE-TA: right name, next-hop name, wrong name.
        .mx("ta.test", 10, "mx.ta.test")
        .a("mx.ta.test", LOCAL)
        .tlsa("_25._tcp.mx.ta.test", 2, 0, 1, &ta)
        .mx("ta-nexthop.test", 10, "mx.tanexthop.test")
        .a("mx.tanexthop.test", LOCAL)
        .tlsa("_25._tcp.mx.tanexthop.test", 2, 0, 1, &ta)
        .mx("tawrong.test", 10, "mx.tawrong.test")
        .a("mx.tawrong.test", LOCAL)
        .tlsa("_25._tcp.mx.tawrong.test", 2, 0, 1, &ta)
        // CNAME'd MX host: TLSA at the expanded name, which is the base
        // domain the DANE-TA certificate names (RFC 7672 2.2.3).
        .mx("alias.test", 10, "mx.alias.test")
        .cname("mx.alias.test", "real.alias.test")
        .a("real.alias.test", LOCAL)
        .tlsa("_25._tcp.real.alias.test", 2, 0, 1, &ta)
        // CNAME'd MX host without TLSA at the target: fall back to the
        // original name.
        .mx("aliasfb.test", 10, "mx.aliasfb.test")
        .cname("mx.aliasfb.test", "real.aliasfb.test")
        .a("real.aliasfb.test", LOCAL)
        .tlsa("_25._tcp.mx.aliasfb.test", 2, 0, 1, &ta)
        // A wildcard TLSA (`*._tcp.<host>` synthesizes `_25._tcp.<host>`):
        // hickory 0.26.3 judges synthesized answers bogus.
        .mx("wild.test", 10, "mx.wild.test")
        .a("mx.wild.test", LOCAL)
        .tlsa("*._tcp.mx.wild.test", 3, 1, 1, &[5; 32])
        // Null MX; implicit MX with TLSA.
        .null_mx("nullmx.test")
        .a("implicit.test", LOCAL)
        .tlsa("_25._tcp.implicit.test", 3, 1, 1, &ee("implicit.test"))
        .start()
        .await;
    World {
        dns,
        peers,
        _servers: servers,
    }
}

#[tokio::test]
async fn decision_table_end_to_end() {
    use DaneLevel::{Mandatory as M, Opportunistic as O};
    use Expect::*;
    let world = world().await;
    // (row, domain, opportunistic-dane, mandatory-dane)
    let rows: &[(&str, &str, Expect, Expect)] = &[
        (
            "MX lookup fails",
            "mxfail.test",
            Defer("MX lookup failed: SERVFAIL"),
            Defer("MX lookup failed: SERVFAIL"),
        ),
        (
            "MX bogus",
            "broken.test",
            Defer("MX lookup failed: DNSSEC bogus"),
            Defer("MX lookup failed: DNSSEC bogus"),
        ),
        (
            "MX insecure",
            "plain.test",
            Tls("mx.plain.test"),
            Defer("MX records are not DNSSEC-signed"),
        ),
        (
            "host address insecure",
            "addrinsecure.test",
            Tls("mx.plain.test"),
            Defer("host address records are not DNSSEC-signed"),
        ),
        (
            "host address bogus",
            "badaddr.test",
            Defer("address lookup failed: DNSSEC bogus"),
            Defer("address lookup failed: DNSSEC bogus"),
        ),
        (
            "host address lookup fails",
            "addrfail.test",
            Defer("address lookup failed: SERVFAIL"),
            Defer("address lookup failed: SERVFAIL"),
        ),
        (
            "TLSA insecure",
            "tlsainsecure.test",
            Tls("mx.tlsainsecure.test"),
            Defer("are not DNSSEC-signed"),
        ),
        (
            "TLSA secure, empty",
            "notlsa.test",
            Tls("mx.notlsa.test"),
            Defer("no TLSA records at _25._tcp.mx.notlsa.test (validated denial)"),
        ),
        (
            "TLSA lookup SERVFAIL",
            "tlsafail.test",
            Defer("failed: SERVFAIL"),
            Defer("failed: SERVFAIL"),
        ),
        (
            "TLSA lookup times out",
            "tlsaslow.test",
            Defer("failed: timeout"),
            Defer("failed: timeout"),
        ),
        (
            "TLSA bogus",
            "tlsabogus.test",
            Defer("failed: DNSSEC bogus"),
            Defer("failed: DNSSEC bogus"),
        ),
        (
            "all TLSA unusable",
            "unusable.test",
            Tls("mx.unusable.test"),
            Defer("all 4 TLSA records are unusable"),
        ),
        (
            "usable TLSA, match",
            "match.test",
            Auth("mx.match.test", Usage::DaneEe),
            Auth("mx.match.test", Usage::DaneEe),
        ),
        (
            "usable TLSA, no match",
            "nomatch.test",
            Defer("DANE authentication failed: no TLSA record matches"),
            Defer("DANE authentication failed: no TLSA record matches"),
        ),
        (
            "no match on the first MX, match on the second",
            "twomx.test",
            Auth("mx.match.test", Usage::DaneEe),
            Auth("mx.match.test", Usage::DaneEe),
        ),
        (
            "DANE-TA, MX host name",
            "ta.test",
            Auth("mx.ta.test", Usage::DaneTa),
            Auth("mx.ta.test", Usage::DaneTa),
        ),
        (
            "DANE-TA, next-hop domain name",
            "ta-nexthop.test",
            Auth("mx.tanexthop.test", Usage::DaneTa),
            Auth("mx.tanexthop.test", Usage::DaneTa),
        ),
        (
            "DANE-TA, wrong name",
            "tawrong.test",
            Defer("is not valid for any of"),
            Defer("is not valid for any of"),
        ),
        (
            "CNAME'd MX host, TLSA at the target",
            "alias.test",
            Auth("mx.alias.test", Usage::DaneTa),
            Auth("mx.alias.test", Usage::DaneTa),
        ),
        (
            "CNAME'd MX host, TLSA at the original name",
            "aliasfb.test",
            Auth("mx.aliasfb.test", Usage::DaneTa),
            Auth("mx.aliasfb.test", Usage::DaneTa),
        ),
        (
            "wildcard TLSA (judged bogus by hickory 0.26.3)",
            "wild.test",
            Defer("failed: DNSSEC bogus"),
            Defer("failed: DNSSEC bogus"),
        ),
        ("null MX", "nullmx.test", Fail("null MX"), Fail("null MX")),
        (
            "no such domain",
            "absent.test",
            Fail("does not exist"),
            Fail("does not exist"),
        ),
        (
            "implicit MX with TLSA",
            "implicit.test",
            Auth("implicit.test", Usage::DaneEe),
            Auth("implicit.test", Usage::DaneEe),
        ),
    ];
    // Half a second is plenty on loopback and bounds the timeout row.
    let mut settings = world.dns.settings();
    settings.timeout = std::time::Duration::from_millis(500);
    for level in [O, M] {
        let resolver = Resolver::new(&settings).expect("resolver");
        for (row, domain, opportunistic, mandatory) in rows {
            let want = if level == O { opportunistic } else { mandatory };
            let got = deliver(&resolver, level, domain, &world.peers).await;
            check(row, level, &got, want);
        }
    }
}
