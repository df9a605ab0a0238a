//! Table tests for the RFC 7672 decision functions (one row per line of
//! the table in `decision.rs`, both levels).

use std::net::{IpAddr, Ipv4Addr};

use super::decision::*;
use super::verify::DaneMatch;
use super::Usage;
use crate::dns::{
    AddressLookup, DnssecStatus, Lookup, LookupFailure, MxHost, MxLookup, TlsaLookup, TlsaRecord,
};

use DaneLevel::{Mandatory as M, Opportunistic as O};
use DnssecStatus::{Insecure, Secure};

const DOMAIN: &str = "example.test";

fn host(name: &str) -> MxHost {
    MxHost {
        preference: 10,
        exchange: name.to_string(),
    }
}

fn addr(lookup: Lookup<IpAddr>) -> AddressLookup {
    AddressLookup {
        host: "mx.example.test".into(),
        canonical: "mx.example.test".into(),
        resolved: lookup.clone(),
        lookup,
    }
}

fn addresses(dnssec: DnssecStatus) -> AddressLookup {
    addr(Lookup::Records {
        records: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dnssec,
    })
}

fn rec(usage: u8, selector: u8, matching: u8) -> TlsaRecord {
    let len = match matching {
        1 => 32,
        2 => 64,
        _ => 40,
    };
    TlsaRecord {
        usage,
        selector,
        matching,
        data: vec![7; len],
    }
}

fn tlsa(lookup: Lookup<TlsaRecord>) -> Option<TlsaLookup> {
    Some(TlsaLookup {
        base_domain: "mx.example.test".into(),
        tlsa_name: "_25._tcp.mx.example.test".into(),
        lookup,
    })
}

fn evidence(addresses: AddressLookup, tlsa: Option<TlsaLookup>) -> HostEvidence {
    HostEvidence {
        host: host("mx.example.test"),
        addresses,
        tlsa,
    }
}

/// A short name for the plan's shape, so table rows stay readable.
fn shape(plan: &DanePlan) -> String {
    match plan {
        DanePlan::Authenticate { tlsa, .. } => format!("authenticate({})", tlsa.len()),
        DanePlan::EncryptUnauthenticated { .. } => "encrypt".into(),
        DanePlan::Opportunistic(why) => format!("opportunistic: {why}"),
        DanePlan::Skip(why) => format!("skip: {why}"),
    }
}

#[test]
fn host_table() {
    let tlsa_name = "_25._tcp.mx.example.test";
    let usable = Lookup::Records {
        records: vec![rec(3, 1, 1), rec(0, 0, 1)],
        dnssec: Secure,
    };
    let unusable = Lookup::Records {
        records: vec![rec(1, 1, 1), rec(3, 9, 1)],
        dnssec: Secure,
    };
    // Full data (matching 0) that is neither a certificate nor an SPKI:
    // malformed, so unusable (RFC 7672 3.1), never "authenticate".
    let garbage_full = Lookup::Records {
        records: vec![rec(3, 0, 0), rec(3, 1, 0), rec(2, 0, 0), rec(2, 1, 0)],
        dnssec: Secure,
    };
    // (row, level, mx secure, evidence, expected shape)
    let rows: Vec<(&str, DaneLevel, bool, HostEvidence, String)> = vec![
        (
            "address lookup failed",
            O,
            true,
            evidence(addr(Lookup::Failed(LookupFailure::ServFail)), None),
            "skip: address lookup failed: SERVFAIL".into(),
        ),
        (
            "address bogus",
            M,
            true,
            evidence(addr(Lookup::Failed(LookupFailure::Bogus)), None),
            "skip: address lookup failed: DNSSEC bogus".into(),
        ),
        (
            "no address",
            O,
            true,
            evidence(addr(Lookup::NxDomain { dnssec: Secure }), None),
            "skip: host has no address records".into(),
        ),
        (
            "MX insecure",
            O,
            false,
            evidence(addresses(Secure), None),
            "opportunistic: MX records are not DNSSEC-signed".into(),
        ),
        (
            "MX insecure, mandatory",
            M,
            false,
            evidence(addresses(Secure), None),
            "skip: DANE required but MX records are not DNSSEC-signed".into(),
        ),
        (
            "address insecure",
            O,
            true,
            evidence(addresses(Insecure), None),
            "opportunistic: host address records are not DNSSEC-signed".into(),
        ),
        (
            "address insecure, mandatory",
            M,
            true,
            evidence(addresses(Insecure), None),
            "skip: DANE required but host address records are not DNSSEC-signed".into(),
        ),
        (
            "TLSA servfail",
            O,
            true,
            evidence(addresses(Secure), tlsa(Lookup::Failed(LookupFailure::ServFail))),
            format!("skip: TLSA lookup at {tlsa_name} failed: SERVFAIL"),
        ),
        (
            "TLSA timeout",
            M,
            true,
            evidence(addresses(Secure), tlsa(Lookup::Failed(LookupFailure::Timeout))),
            format!("skip: TLSA lookup at {tlsa_name} failed: timeout"),
        ),
        (
            "TLSA bogus",
            O,
            true,
            evidence(addresses(Secure), tlsa(Lookup::Failed(LookupFailure::Bogus))),
            format!("skip: TLSA lookup at {tlsa_name} failed: DNSSEC bogus"),
        ),
        (
            "TLSA lookup not done",
            O,
            true,
            evidence(addresses(Secure), None),
            "skip: TLSA lookup at _25._tcp.mx.example.test failed: lookup error: TLSA lookup not performed".into(),
        ),
        (
            "TLSA insecure",
            O,
            true,
            evidence(
                addresses(Secure),
                tlsa(Lookup::Records {
                    records: vec![rec(3, 1, 1)],
                    dnssec: Insecure,
                }),
            ),
            format!("opportunistic: TLSA records at {tlsa_name} are not DNSSEC-signed"),
        ),
        (
            "TLSA insecure NODATA",
            O,
            true,
            evidence(addresses(Secure), tlsa(Lookup::NoData { dnssec: Insecure })),
            format!("opportunistic: TLSA records at {tlsa_name} are not DNSSEC-signed"),
        ),
        (
            "TLSA secure empty",
            O,
            true,
            evidence(addresses(Secure), tlsa(Lookup::NxDomain { dnssec: Secure })),
            format!("opportunistic: no TLSA records at {tlsa_name} (validated denial)"),
        ),
        (
            "TLSA secure empty, mandatory",
            M,
            true,
            evidence(addresses(Secure), tlsa(Lookup::NoData { dnssec: Secure })),
            format!("skip: DANE required but no TLSA records at {tlsa_name} (validated denial)"),
        ),
        (
            "all TLSA unusable",
            O,
            true,
            evidence(addresses(Secure), tlsa(unusable.clone())),
            "encrypt".into(),
        ),
        (
            "all TLSA unusable, mandatory",
            M,
            true,
            evidence(addresses(Secure), tlsa(unusable)),
            "skip: DANE required but all 2 TLSA records are unusable".into(),
        ),
        (
            "only full-data TLSA that does not parse",
            O,
            true,
            evidence(addresses(Secure), tlsa(garbage_full.clone())),
            "encrypt".into(),
        ),
        (
            "only full-data TLSA that does not parse, mandatory",
            M,
            true,
            evidence(addresses(Secure), tlsa(garbage_full)),
            "skip: DANE required but all 4 TLSA records are unusable".into(),
        ),
        (
            "usable TLSA",
            O,
            true,
            evidence(addresses(Secure), tlsa(usable.clone())),
            "authenticate(1)".into(),
        ),
        (
            "usable TLSA, mandatory",
            M,
            true,
            evidence(addresses(Secure), tlsa(usable)),
            "authenticate(1)".into(),
        ),
    ];
    for (row, level, mx_secure, evidence, expected) in rows {
        let plan = plan_host(level, DOMAIN, mx_secure, &evidence);
        assert_eq!(shape(&plan), expected, "row: {row} ({level})");
    }
}

#[test]
fn authenticate_plan_carries_reference_names() {
    let mut ev = evidence(
        addresses(Secure),
        tlsa(Lookup::Records {
            records: vec![rec(2, 0, 1)],
            dnssec: Secure,
        }),
    );
    ev.host = host("alias.example.test");
    if let Some(t) = ev.tlsa.as_mut() {
        t.base_domain = "mx.example.test".into();
    }
    match plan_host(O, "Example.TEST.", true, &ev) {
        DanePlan::Authenticate {
            reference_names, ..
        } => assert_eq!(
            reference_names,
            ["mx.example.test", "alias.example.test", "example.test"]
        ),
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

#[test]
fn mx_table() {
    let hosts = |dnssec| MxLookup::Hosts {
        hosts: vec![host("mx.example.test")],
        dnssec,
    };
    let defer = |why| Err(DestinationOutcome::Defer(why));
    let rows: Vec<(&str, DaneLevel, MxLookup, Result<bool, DestinationOutcome>)> = vec![
        (
            "MX servfail",
            O,
            MxLookup::Failed(LookupFailure::ServFail),
            defer(DeferReason::MxLookupFailed(LookupFailure::ServFail)),
        ),
        (
            "MX bogus",
            M,
            MxLookup::Failed(LookupFailure::Bogus),
            defer(DeferReason::MxLookupFailed(LookupFailure::Bogus)),
        ),
        (
            "null MX",
            O,
            MxLookup::NullMx { dnssec: Secure },
            Err(DestinationOutcome::Fail(FailReason::NullMx)),
        ),
        (
            "NXDOMAIN",
            M,
            MxLookup::NoMailDomain {
                nxdomain: true,
                dnssec: Insecure,
            },
            Err(DestinationOutcome::Fail(FailReason::NoMailDomain {
                nxdomain: true,
            })),
        ),
        ("MX insecure", O, hosts(Insecure), Ok(false)),
        (
            "MX insecure, mandatory",
            M,
            hosts(Insecure),
            defer(DeferReason::MxInsecure),
        ),
        ("MX secure", M, hosts(Secure), Ok(true)),
        (
            "implicit MX, secure denial",
            O,
            MxLookup::Implicit {
                host: host("example.test"),
                dnssec: Secure,
            },
            Ok(true),
        ),
    ];
    for (row, level, mx, expected) in rows {
        assert_eq!(mx_verdict(level, &mx), expected, "row: {row} ({level})");
    }
}

#[test]
fn destination_defers_when_every_mx_is_skipped() {
    let mx = MxLookup::Hosts {
        hosts: vec![host("mx.example.test")],
        dnssec: Secure,
    };
    let ev = evidence(
        addresses(Secure),
        tlsa(Lookup::Failed(LookupFailure::Bogus)),
    );
    let plan = plan_destination(O, DOMAIN, &mx, std::slice::from_ref(&ev));
    match &plan.outcome {
        DestinationOutcome::Defer(DeferReason::NoUsableMx(reasons)) => {
            assert_eq!(reasons.len(), 1);
            assert_eq!(reasons[0].0, "mx.example.test");
        }
        other => panic!("expected defer, got {other:?}"),
    }
    assert!(plan
        .outcome
        .to_string()
        .starts_with("defer: no usable MX host: mx.example.test: TLSA lookup"));
    // A second, usable MX makes the destination deliverable.
    let mx2 = MxLookup::Hosts {
        hosts: vec![host("mx.example.test"), host("mx2.example.test")],
        dnssec: Secure,
    };
    let mut ev2 = evidence(addresses(Insecure), None);
    ev2.host = host("mx2.example.test");
    let plan = plan_destination(O, DOMAIN, &mx2, &[ev, ev2]);
    assert_eq!(plan.outcome, DestinationOutcome::Deliver);
    assert!(matches!(plan.mx[0].plan, DanePlan::Skip(_)));
    assert!(matches!(plan.mx[1].plan, DanePlan::Opportunistic(_)));
    assert_eq!(plan.mx[1].addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
}

fn dane_match() -> DaneMatch {
    DaneMatch {
        usage: Usage::DaneEe,
        record: rec(3, 1, 1),
        depth: 0,
        matched_name: None,
    }
}

#[test]
fn reasons_read_well() {
    let m = dane_match();
    assert_eq!(
        m.to_string(),
        format!(
            "DANE-verified via 3 1 1 {} (DANE-EE at depth 0)",
            "07".repeat(32)
        )
    );
    let defer = DeferReason::NoUsableMx(vec![
        ("a.test".into(), SkipReason::NoAddress),
        ("b.test".into(), SkipReason::StartTlsNotOffered),
    ]);
    assert_eq!(
        defer.to_string(),
        "no usable MX host: a.test: host has no address records; b.test: STARTTLS not offered although secure TLSA records exist"
    );
    assert_eq!(
        SkipReason::StartTlsNotOffered.tlsrpt_result_type(),
        Some("starttls-not-supported")
    );
}

/// A host whose AAAA lookup failed (SERVFAIL) while its A records
/// resolved securely: DANE levels never use it (RFC 7672 section 2.2);
/// MTA-STS uses its IPv4 address unless DANE governs it there.
#[test]
fn a_host_with_one_failed_address_family() {
    let v4 = Lookup::Records {
        records: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dnssec: Secure,
    };
    let half = AddressLookup {
        host: "mx.example.test".into(),
        canonical: "mx.example.test".into(),
        lookup: Lookup::Failed(LookupFailure::ServFail),
        resolved: v4,
    };
    let usable = Lookup::Records {
        records: vec![rec(3, 1, 1)],
        dnssec: Secure,
    };
    let no_tlsa = Lookup::NoData { dnssec: Secure };
    let secure_mx = MxLookup::Hosts {
        hosts: vec![host("mx.example.test")],
        dnssec: Secure,
    };
    let insecure_mx = MxLookup::Hosts {
        hosts: vec![host("mx.example.test")],
        dnssec: Insecure,
    };
    use PartialAddresses::{Unusable as Strict, UsableUnlessDane as Sts};
    // (row, level, rule, MX, TLSA, expected shape)
    let rows = [
        (
            "DANE, no TLSA",
            O,
            Strict,
            &secure_mx,
            no_tlsa.clone(),
            "skip: address lookup failed: SERVFAIL",
        ),
        (
            "DANE, usable TLSA",
            O,
            Strict,
            &secure_mx,
            usable.clone(),
            "skip: address lookup failed: SERVFAIL",
        ),
        (
            "mandatory DANE",
            M,
            Strict,
            &secure_mx,
            usable.clone(),
            "skip: address lookup failed: SERVFAIL",
        ),
        (
            "MTA-STS, usable TLSA: DANE governs",
            O,
            Sts,
            &secure_mx,
            usable.clone(),
            "skip: address lookup failed: SERVFAIL",
        ),
        (
            "MTA-STS, validated no TLSA",
            O,
            Sts,
            &secure_mx,
            no_tlsa.clone(),
            "opportunistic: no TLSA records at _25._tcp.mx.example.test (validated denial)",
        ),
        (
            "MTA-STS, insecure MX",
            O,
            Sts,
            &insecure_mx,
            usable.clone(),
            "opportunistic: MX records are not DNSSEC-signed",
        ),
        (
            "MTA-STS, TLSA lookup failed",
            O,
            Sts,
            &secure_mx,
            Lookup::Failed(LookupFailure::Timeout),
            "skip: TLSA lookup at _25._tcp.mx.example.test failed: timeout",
        ),
    ];
    for (row, level, rule, mx, tlsa_lookup, want) in rows {
        let ev = evidence(half.clone(), tlsa(tlsa_lookup));
        let plan = plan_destination_for(level, DOMAIN, mx, std::slice::from_ref(&ev), rule);
        assert_eq!(shape(&plan.mx[0].plan), want, "{row}");
        let used = !matches!(plan.mx[0].plan, DanePlan::Skip(_));
        let addresses: &[IpAddr] = if used {
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            &[]
        };
        assert_eq!(plan.mx[0].addresses, addresses, "{row}");
    }
    // A bogus AAAA is no partial failure: the host is never used.
    let bogus = AddressLookup {
        lookup: Lookup::Failed(LookupFailure::Bogus),
        resolved: Lookup::Failed(LookupFailure::Bogus),
        ..half.clone()
    };
    let ev = evidence(bogus, None);
    let plan = plan_destination_for(O, DOMAIN, &secure_mx, &[ev], Sts);
    assert!(matches!(plan.mx[0].plan, DanePlan::Skip(_)));
}
