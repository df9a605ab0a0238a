//! The RFC 7672 decision table end to end through the functions the
//! delivery engine runs, for `opportunistic-dane` and `mandatory-dane`:
//! a real validating resolver against the in-process signed zone
//! (`dane::resolve_destination`), the engine's plan from it
//! (`delivery::plan::dane_plan`, each host's TLS from
//! `delivery::decision::dane_host`), sealpost's SMTP client connecting
//! with each hop's parameters (`Hop::params`: the DANE verifier, the
//! TLSA base domain as SNI) to STARTTLS SMTP servers on their own
//! loopback addresses, and the engine's `connection_verdict` on what the
//! connection showed, MX hosts and addresses in order as the attempt
//! driver walks them. The "STARTTLS not offered" row is in
//! `tests/dane_smtp.rs`.
mod support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_server::proto::rr::RecordType;
use rustls::pki_types::CertificateDer;
use sealpost::dane::{association_data, resolve_destination, DaneLevel, Matching, Selector, Usage};
use sealpost::delivery::decision::{
    connection_verdict, ConnectionEvent, ConnectionVerdict, HopTls,
};
use sealpost::delivery::plan::{dane_plan, Plan};
use sealpost::dns::Resolver;
use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{Connection, Peer, TlsAuthentication};
use support::dns::TestDns;
use support::outbound::{loopback, Mx};
use support::pki::{self, TestCa, ALL_VERSIONS};
use support::smtp::accept_all;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn digest(cert: &CertificateDer<'_>, selector: Selector, matching: Matching) -> Vec<u8> {
    association_data(cert, selector, matching).expect("association data")
}

/// What became of a message for a destination.
#[derive(Debug, PartialEq)]
enum Delivery {
    Authenticated { mx: String, usage: Usage },
    Unauthenticated { mx: String },
    Deferred(String),
    Failed(String),
}

/// The delivery engine's part: plan, then try the MX hosts and their
/// addresses in order, each judged by the engine's verdict.
async fn deliver(resolver: &Resolver, level: DaneLevel, domain: &str, port: u16) -> Delivery {
    let destination = resolve_destination(resolver, level, domain).await;
    let hops = match dane_plan(domain, destination, MinTlsVersion::Any, port) {
        Plan::Hops { hops, .. } => hops,
        Plan::Defer(reason) => return Delivery::Deferred(reason.to_string()),
        Plan::Fail(reason) => return Delivery::Failed(reason.to_string()),
    };
    let mut refused = Vec::new();
    for hop in &hops {
        for addr in &hop.addresses {
            let params = hop.params(None).expect("params");
            let peer = Peer {
                mx_host: hop.host.clone(),
                addr: *addr,
                local: None,
            };
            let client = support::client::config();
            let (event, conn) = match Connection::connect(peer, &params, client).await {
                Ok(conn) => (ConnectionEvent::of_session(conn.achieved()), Some(conn)),
                Err(e) => (ConnectionEvent::of_error(&e), None),
            };
            let verdict = connection_verdict(hop, &params, &event);
            let record = conn.as_ref().map(|c| c.achieved().clone());
            if let Some(conn) = conn {
                conn.quit().await;
            }
            match verdict {
                ConnectionVerdict::SendOverTls {
                    authenticated: TlsAuthentication::Dane,
                    ..
                } => {
                    let HopTls::Dane(auth) = &hop.tls else {
                        panic!("authenticated by DANE without a DANE hop")
                    };
                    assert!(record.is_some_and(|r| r.authentication == TlsAuthentication::Dane));
                    return Delivery::Authenticated {
                        mx: hop.host.clone(),
                        usage: usage_of(auth),
                    };
                }
                ConnectionVerdict::SendOverTls { .. } => {
                    return Delivery::Unauthenticated {
                        mx: hop.host.clone(),
                    }
                }
                ConnectionVerdict::NotUsed(why) => refused.push(format!("{}: {why}", hop.host)),
                other => panic!("no cleartext path in this test: {other:?}"),
            }
        }
    }
    Delivery::Deferred(format!("all MX hosts failed: {}", refused.join("; ")))
}

/// The usage of the hop's TLSA records (one usage per host here).
fn usage_of(auth: &sealpost::delivery::decision::DaneAuth) -> Usage {
    auth.tlsa.first().expect("a usable record").usage
}

enum Expect {
    Auth(&'static str, Usage),
    Tls(&'static str),
    Defer(&'static str),
    Fail(&'static str),
}

fn check(row: &str, level: DaneLevel, got: &Delivery, want: &Expect) {
    let ok = match (got, want) {
        (Delivery::Authenticated { mx, usage }, Expect::Auth(want_mx, want_usage)) => {
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
    /// The SMTP port of every MX host (each on its own loopback address).
    port: u16,
    _servers: Vec<Mx>,
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
    let port = support::sealpost::free_port();
    let mut ips = HashMap::new();
    let mut servers = Vec::new();
    let mut leaves = HashMap::new();
    for (i, (host, cert_name)) in hosts.iter().enumerate() {
        let leaf = ca.issue(&[cert_name]);
        let ip = loopback(20 + i as u8);
        let tls = Some(pki::server_config(&leaf, ALL_VERSIONS));
        servers.push(Mx::start(ip, port, host, tls, Arc::new(accept_all)).await);
        ips.insert(*host, ip);
        leaves.insert(*host, leaf);
    }
    let ip = |host: &str| ips[host];
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
        .a("mx.plain.test", ip("mx.plain.test"))
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
        .a("mx.tlsainsecure.test", ip("mx.tlsainsecure.test"))
        .cname("_25._tcp.mx.tlsainsecure.test", "_25._tcp.mx.plain.test")
        // TLSA secure and empty.
        .mx("notlsa.test", 10, "mx.notlsa.test")
        .a("mx.notlsa.test", ip("mx.notlsa.test"))
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
        .a("mx.unusable.test", ip("mx.unusable.test"))
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
        .a("mx.match.test", ip("mx.match.test"))
        .tlsa("_25._tcp.mx.match.test", 3, 1, 1, &ee("mx.match.test"))
        .mx("nomatch.test", 10, "mx.nomatch.test")
        .a("mx.nomatch.test", ip("mx.nomatch.test"))
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
        .a("mx.ta.test", ip("mx.ta.test"))
        .tlsa("_25._tcp.mx.ta.test", 2, 0, 1, &ta)
        .mx("ta-nexthop.test", 10, "mx.tanexthop.test")
        .a("mx.tanexthop.test", ip("mx.tanexthop.test"))
        .tlsa("_25._tcp.mx.tanexthop.test", 2, 0, 1, &ta)
        .mx("tawrong.test", 10, "mx.tawrong.test")
        .a("mx.tawrong.test", ip("mx.tawrong.test"))
        .tlsa("_25._tcp.mx.tawrong.test", 2, 0, 1, &ta)
        // CNAME'd MX host: TLSA at the expanded name, which is the base
        // domain the DANE-TA certificate names (RFC 7672 2.2.3).
        .mx("alias.test", 10, "mx.alias.test")
        .cname("mx.alias.test", "real.alias.test")
        .a("real.alias.test", ip("mx.alias.test"))
        .tlsa("_25._tcp.real.alias.test", 2, 0, 1, &ta)
        // CNAME'd MX host without TLSA at the target: fall back to the
        // original name.
        .mx("aliasfb.test", 10, "mx.aliasfb.test")
        .cname("mx.aliasfb.test", "real.aliasfb.test")
        .a("real.aliasfb.test", ip("mx.aliasfb.test"))
        .tlsa("_25._tcp.mx.aliasfb.test", 2, 0, 1, &ta)
        // A wildcard TLSA (`*._tcp.<host>` synthesizes `_25._tcp.<host>`):
        // hickory 0.26.3 judges synthesized answers bogus.
        .mx("wild.test", 10, "mx.wild.test")
        .a("mx.wild.test", LOCAL)
        .tlsa("*._tcp.mx.wild.test", 3, 1, 1, &[5; 32])
        // Null MX; implicit MX with TLSA.
        .null_mx("nullmx.test")
        .a("implicit.test", ip("implicit.test"))
        .tlsa("_25._tcp.implicit.test", 3, 1, 1, &ee("implicit.test"))
        .start()
        .await;
    World {
        dns,
        port,
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
            let got = deliver(&resolver, level, domain, world.port).await;
            check(row, level, &got, want);
        }
    }
}
