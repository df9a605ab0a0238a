//! Table-driven tests of every resolution rule: enabled/disabled domain,
//! enabled/disabled peer, both defaults, each level, each minimum version,
//! precedence (exact IP > longest CIDR > exact domain > longest wildcard),
//! case and trailing dot.

use std::net::IpAddr;

use super::*;
use MinTlsVersion::{Any, Tls12, Tls13};
use SecurityLevel::{Mandatory, MandatoryDane, MtaSts, Opportunistic, OpportunisticDane};

fn rule(level: SecurityLevel, min_tls: MinTlsVersion) -> PolicyRule {
    PolicyRule::new(level, min_tls)
}

fn peer(pattern: &str, level: SecurityLevel, min_tls: MinTlsVersion, enabled: bool) -> PeerEntry {
    PeerEntry {
        matcher: pattern.parse().expect("test pattern"),
        rule: rule(level, min_tls),
        enabled,
    }
}

fn domain(name: &str, tenant: &str, enabled: bool) -> ManagedDomain {
    ManagedDomain {
        name: name.parse().expect("test domain"),
        tenant: TenantName::new(tenant),
        enabled,
        outbound: DirectionPolicy::default(),
        inbound: DirectionPolicy::default(),
    }
}

fn dn(s: &str) -> DomainName {
    s.parse().expect("test domain")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn disabled(pattern: &str, level: SecurityLevel, min_tls: MinTlsVersion) -> DisabledPeer {
    DisabledPeer::from(&peer(pattern, level, min_tls, false))
}

fn snapshot() -> PolicySnapshot {
    let defaults = Defaults {
        outbound: rule(Opportunistic, Any),
        inbound: rule(Opportunistic, Tls12),
    };
    let mut main = domain("Example.com.", "acme", true);
    main.outbound.default = Some(rule(Mandatory, Tls12));
    main.outbound.peers = vec![
        peer("gmail.com", MtaSts, Any, true),
        peer("*.bank.example", MandatoryDane, Tls13, true),
        peer("*.eu.bank.example", OpportunisticDane, Tls12, true),
        peer("bank.example", Mandatory, Tls13, true),
        peer("old.example", Mandatory, Tls13, false),
        peer("*.partner.example", Opportunistic, Tls13, true),
        peer("x.partner.example", MandatoryDane, Tls13, false),
        peer("*.old.partner.example", MandatoryDane, Tls13, false),
        peer("*.bücher.example", MandatoryDane, Tls12, true),
        peer("xn--mnchen-3ya.example", Mandatory, Tls13, true),
    ];
    main.inbound.default = Some(rule(Mandatory, Any));
    main.inbound.peers = vec![
        peer("192.0.2.10", Mandatory, Tls13, true),
        peer("192.0.2.0/24", Mandatory, Tls12, true),
        peer("192.0.0.0/16", Opportunistic, Any, true),
        peer("198.51.100.0/24", Mandatory, Tls13, false),
        peer("2001:db8::1", Mandatory, Tls13, true),
        peer("2001:db8::/32", Mandatory, Tls12, true),
        peer("partner.example", Mandatory, Tls12, true),
        peer("*.partner.example", Mandatory, Any, true),
        peer("203.0.113.5", Opportunistic, Any, false),
        peer("203.0.113.0/24", Mandatory, Tls12, true),
        peer("198.51.100.25", Opportunistic, Tls13, false),
        peer("off.partner.example", Opportunistic, Any, false),
    ];
    let mut no_default = domain("nodefault.example", "beta", true);
    no_default.outbound.peers = vec![
        peer("x.example", Opportunistic, Tls13, true),
        peer("off.example", Mandatory, Tls13, false),
    ];
    let mut off = domain("disabled.example", "gamma", false);
    off.outbound.default = Some(rule(MandatoryDane, Tls13));
    off.outbound.peers = vec![peer("gmail.com", Mandatory, Tls13, true)];
    let mut idn = domain("café.example", "delta", true);
    idn.outbound.default = Some(rule(Mandatory, Tls13));
    PolicySnapshot::build(defaults, vec![main, no_default, off, idn]).expect("valid model")
}

fn out(recipient_domain: &str) -> PeerQuery<'_> {
    PeerQuery::Outbound { recipient_domain }
}

fn inb<'a>(addr: Option<&str>, sender_domain: Option<&'a str>) -> PeerQuery<'a> {
    PeerQuery::Inbound {
        ip: addr.map(ip),
        sender_domain,
    }
}

#[test]
fn every_rule_resolves_as_documented() {
    let snap = snapshot();
    let domain_default = |source| Reason::DomainDefault { source };
    let disabled_default = |pattern, level, min_tls, source| Reason::PeerDisabled {
        entry: disabled(pattern, level, min_tls),
        source,
    };
    #[rustfmt::skip]
    let table: Vec<(&str, PeerQuery<'_>, SecurityLevel, MinTlsVersion, Reason)> = vec![
        // Unknown and disabled managed domains: global default, both directions.
        ("unknown.example", out("gmail.com"), Opportunistic, Any,
            Reason::GlobalDefault { cause: GlobalDefaultCause::UnknownDomain }),
        ("unknown.example", inb(Some("192.0.2.10"), None), Opportunistic, Tls12,
            Reason::GlobalDefault { cause: GlobalDefaultCause::UnknownDomain }),
        ("disabled.example", out("gmail.com"), Opportunistic, Any,
            Reason::GlobalDefault { cause: GlobalDefaultCause::DisabledDomain }),
        ("disabled.example", inb(None, Some("gmail.com")), Opportunistic, Tls12,
            Reason::GlobalDefault { cause: GlobalDefaultCause::DisabledDomain }),
        // Outbound peers: exact domain, each level, case and trailing dot.
        ("example.com", out("gmail.com"), MtaSts, Any, Reason::PeerDomain { domain: dn("gmail.com") }),
        ("EXAMPLE.com.", out("GMail.Com."), MtaSts, Any, Reason::PeerDomain { domain: dn("gmail.com") }),
        ("example.com", out("bank.example"), Mandatory, Tls13, Reason::PeerDomain { domain: dn("bank.example") }),
        // Wildcards: any depth, longest suffix wins, never the apex.
        ("example.com", out("mx.bank.example"), MandatoryDane, Tls13, Reason::PeerWildcard { suffix: dn("bank.example") }),
        ("example.com", out("a.b.bank.example"), MandatoryDane, Tls13, Reason::PeerWildcard { suffix: dn("bank.example") }),
        ("example.com", out("fr.eu.bank.example"), OpportunisticDane, Tls12, Reason::PeerWildcard { suffix: dn("eu.bank.example") }),
        ("example.com", out("eu.bank.example"), MandatoryDane, Tls13, Reason::PeerWildcard { suffix: dn("bank.example") }),
        ("example.com", out("partner.example"), Mandatory, Tls12, domain_default(DefaultSource::Domain)),
        // A disabled entry that is the most specific match sends the peer to
        // the domain's default for unspecified peers, never to a wider entry.
        ("example.com", out("old.example"), Mandatory, Tls12,
            disabled_default("old.example", Mandatory, Tls13, DefaultSource::Domain)),
        ("example.com", out("x.partner.example"), Mandatory, Tls12,
            disabled_default("x.partner.example", MandatoryDane, Tls13, DefaultSource::Domain)),
        ("example.com", out("a.old.partner.example"), Mandatory, Tls12,
            disabled_default("*.old.partner.example", MandatoryDane, Tls13, DefaultSource::Domain)),
        ("example.com", out("y.partner.example"), Opportunistic, Tls13, Reason::PeerWildcard { suffix: dn("partner.example") }),
        ("nodefault.example", out("off.example"), Opportunistic, Any,
            disabled_default("off.example", Mandatory, Tls13, DefaultSource::GlobalFallback)),
        // International names: configured in U-labels or A-labels, looked up
        // in either form, compared as A-labels.
        ("example.com", out("mx.xn--bcher-kva.example"), MandatoryDane, Tls12, Reason::PeerWildcard { suffix: dn("xn--bcher-kva.example") }),
        ("example.com", out("MX.Bücher.example."), MandatoryDane, Tls12, Reason::PeerWildcard { suffix: dn("xn--bcher-kva.example") }),
        ("example.com", out("münchen.example"), Mandatory, Tls13, Reason::PeerDomain { domain: dn("xn--mnchen-3ya.example") }),
        ("example.com", out("xn--mnchen-3ya.example"), Mandatory, Tls13, Reason::PeerDomain { domain: dn("münchen.example") }),
        ("xn--caf-dma.example", out("x.example"), Mandatory, Tls13, domain_default(DefaultSource::Domain)),
        ("Café.example", out("x.example"), Mandatory, Tls13, domain_default(DefaultSource::Domain)),
        // Unmatched peer: the domain's own default, else the global one.
        ("example.com", out("other.example"), Mandatory, Tls12, domain_default(DefaultSource::Domain)),
        ("nodefault.example", out("x.example"), Opportunistic, Tls13, Reason::PeerDomain { domain: dn("x.example") }),
        ("nodefault.example", out("y.example"), Opportunistic, Any, domain_default(DefaultSource::GlobalFallback)),
        ("nodefault.example", inb(Some("192.0.2.10"), None), Opportunistic, Tls12, domain_default(DefaultSource::GlobalFallback)),
        // Inbound precedence: exact IP > longest CIDR > exact domain > wildcard.
        ("example.com", inb(Some("192.0.2.10"), Some("partner.example")), Mandatory, Tls13, Reason::PeerExactIp { ip: ip("192.0.2.10") }),
        ("example.com", inb(Some("::ffff:192.0.2.10"), None), Mandatory, Tls13, Reason::PeerExactIp { ip: ip("192.0.2.10") }),
        ("example.com", inb(Some("192.0.2.11"), Some("partner.example")), Mandatory, Tls12, Reason::PeerCidr { network: "192.0.2.0/24".parse().expect("net") }),
        ("example.com", inb(Some("192.0.9.1"), Some("partner.example")), Opportunistic, Any, Reason::PeerCidr { network: "192.0.0.0/16".parse().expect("net") }),
        ("example.com", inb(Some("2001:db8::1"), None), Mandatory, Tls13, Reason::PeerExactIp { ip: ip("2001:db8::1") }),
        ("example.com", inb(Some("2001:db8:ffff::2"), None), Mandatory, Tls12, Reason::PeerCidr { network: "2001:db8::/32".parse().expect("net") }),
        ("example.com", inb(Some("10.0.0.1"), Some("Partner.Example.")), Mandatory, Tls12, Reason::PeerDomain { domain: dn("partner.example") }),
        ("example.com", inb(Some("10.0.0.1"), Some("mx.partner.example")), Mandatory, Any, Reason::PeerWildcard { suffix: dn("partner.example") }),
        ("example.com", inb(None, Some("mx.partner.example")), Mandatory, Any, Reason::PeerWildcard { suffix: dn("partner.example") }),
        ("example.com", inb(Some("10.0.0.1"), None), Mandatory, Any, domain_default(DefaultSource::Domain)),
        ("example.com", inb(None, None), Mandatory, Any, domain_default(DefaultSource::Domain)),
        // Disabled inbound entries decide like enabled ones: exact IP over its
        // enabled CIDR, CIDR over an enabled sender domain; the default applies.
        ("example.com", inb(Some("203.0.113.5"), None), Mandatory, Any,
            disabled_default("203.0.113.5", Opportunistic, Any, DefaultSource::Domain)),
        ("example.com", inb(Some("203.0.113.6"), None), Mandatory, Tls12, Reason::PeerCidr {
            network: "203.0.113.0/24".parse().expect("net") }),
        ("example.com", inb(Some("198.51.100.7"), None), Mandatory, Any,
            disabled_default("198.51.100.0/24", Mandatory, Tls13, DefaultSource::Domain)),
        ("example.com", inb(Some("198.51.100.7"), Some("partner.example")), Mandatory, Any,
            disabled_default("198.51.100.0/24", Mandatory, Tls13, DefaultSource::Domain)),
        ("example.com", inb(Some("198.51.100.25"), None), Mandatory, Any,
            disabled_default("198.51.100.25", Opportunistic, Tls13, DefaultSource::Domain)),
        ("example.com", inb(Some("10.0.0.1"), Some("off.partner.example")), Mandatory, Any,
            disabled_default("off.partner.example", Opportunistic, Any, DefaultSource::Domain)),
    ];
    for (managed, query, level, min_tls, reason) in table {
        let got = snap.resolve(managed, query);
        assert_eq!(
            (got.level, got.min_tls, &got.reason),
            (level, min_tls, &reason),
            "resolve({managed:?}, {query:?}) = {got}"
        );
        assert_eq!(got.direction, query.direction());
    }
}

#[test]
fn resolution_names_the_domain_and_tenant() {
    let snap = snapshot();
    let r = snap.resolve("example.com", out("gmail.com"));
    assert_eq!(r.managed_domain, Some(dn("example.com")));
    assert_eq!(r.tenant.as_ref().map(TenantName::as_str), Some("acme"));
    let text = r.to_string();
    assert!(text.contains("peer entry for domain gmail.com"), "{text}");
    assert!(text.contains("tenant acme"), "{text}");
    let off = snap.resolve("disabled.example", out("gmail.com"));
    assert_eq!(off.tenant.as_ref().map(TenantName::as_str), Some("gamma"));
    assert!(off.to_string().contains("is disabled"));
    let off = snap
        .resolve("example.com", out("x.partner.example"))
        .to_string();
    assert!(
        off.contains(
            "peer entry x.partner.example matches but is disabled (it would be mandatory-dane, minimum TLS 1.3): default for unspecified peers of managed domain example.com"
        ),
        "{off}"
    );
    let fallback = snap
        .resolve("nodefault.example", out("off.example"))
        .to_string();
    assert!(
        fallback.contains("matches but is disabled") && fallback.contains("global default applies"),
        "{fallback}"
    );
}

#[test]
fn resolution_serializes_its_reason_as_data() {
    let snap = snapshot();
    let r = snap.resolve("example.com", inb(Some("203.0.113.5"), None));
    let json = serde_json::to_value(&r).expect("serializable");
    assert_eq!(json["level"], "mandatory");
    assert_eq!(json["min_tls"], "any");
    assert_eq!(json["direction"], "inbound");
    assert_eq!(json["reason"]["rule"], "peer-disabled");
    assert_eq!(json["reason"]["entry"]["peer"], "203.0.113.5");
    assert_eq!(json["reason"]["entry"]["level"], "opportunistic");
    assert_eq!(json["reason"]["source"], "domain");
    let cidr = serde_json::to_value(snap.resolve("example.com", inb(Some("203.0.113.6"), None)))
        .expect("json");
    assert_eq!(cidr["reason"]["rule"], "peer-cidr");
    assert_eq!(cidr["reason"]["network"], "203.0.113.0/24");
    let g = serde_json::to_value(snap.resolve("nope.example", out("a.b"))).expect("json");
    assert_eq!(g["reason"]["rule"], "global-default");
    assert_eq!(g["reason"]["cause"], "unknown-domain");
}

#[test]
fn build_reports_every_invalid_model_error() {
    let mut a = domain("a.example", "t", true);
    a.inbound.default = Some(rule(OpportunisticDane, Any));
    a.inbound.peers = vec![
        peer("192.0.2.1", MtaSts, Any, true),
        peer("192.0.2.1", Mandatory, Any, true),
    ];
    a.outbound.peers = vec![peer("192.0.2.0/24", Mandatory, Any, true)];
    let b = domain("A.example.", "t", true);
    let defaults = Defaults {
        outbound: rule(Opportunistic, Any),
        inbound: rule(MandatoryDane, Any),
    };
    let errors = PolicySnapshot::build(defaults, vec![a, b]).expect_err("invalid");
    let inbound = Direction::Inbound;
    assert!(errors.contains(&BuildError::LevelNotAllowed {
        domain: None,
        direction: inbound,
        peer: None,
        rule: rule(MandatoryDane, Any)
    }));
    assert!(errors.contains(&BuildError::LevelNotAllowed {
        domain: Some(0),
        direction: inbound,
        peer: None,
        rule: rule(OpportunisticDane, Any)
    }));
    assert!(errors.contains(&BuildError::LevelNotAllowed {
        domain: Some(0),
        direction: inbound,
        peer: Some(0),
        rule: rule(MtaSts, Any)
    }));
    assert!(errors.iter().any(|e| matches!(
        e,
        BuildError::DuplicatePeer {
            domain: 0,
            first: 0,
            second: 1,
            ..
        }
    )));
    assert!(errors.iter().any(|e| matches!(
        e,
        BuildError::AddressPeerOutbound {
            domain: 0,
            peer_index: 0,
            ..
        }
    )));
    assert!(errors.iter().any(|e| matches!(
        e,
        BuildError::DuplicateDomain {
            first: 0,
            second: 1,
            ..
        }
    )));
    assert_eq!(errors.len(), 6, "{errors:?}");
}

proptest::proptest! {
    #[test]
    fn resolution_never_panics(managed in "\\PC{0,40}", peer_name in "\\PC{0,80}", v4 in proptest::num::u32::ANY, v6 in proptest::num::u128::ANY, use_v6 in proptest::bool::ANY) {
        let snap = snapshot();
        let addr = if use_v6 { IpAddr::from(v6.to_be_bytes()) } else { IpAddr::from(v4.to_be_bytes()) };
        for m in [managed.as_str(), "example.com"] {
            let r = snap.resolve(m, PeerQuery::Outbound { recipient_domain: &peer_name });
            proptest::prop_assert_eq!(r.direction, Direction::Outbound);
            let r = snap.resolve(m, PeerQuery::Inbound { ip: Some(addr), sender_domain: Some(&peer_name) });
            proptest::prop_assert!(!r.to_string().is_empty());
        }
    }
}

/// A short peer list is scanned, a long one hashed: both give the same
/// entry for every kind of query, and both refuse the same duplicates.
#[test]
fn scanned_and_indexed_peer_lists_agree() {
    let entries = [
        peer("192.0.2.7", Mandatory, Tls12, true),
        peer("192.0.2.0/24", Mandatory, Tls13, true),
        peer("192.0.0.0/16", Opportunistic, Any, false),
        peer("2001:db8::/32", Mandatory, Any, true),
        peer("partner.example", Mandatory, Tls13, true),
        peer("*.partner.example", Mandatory, Tls12, true),
        peer("*.deep.partner.example", Opportunistic, Tls12, true),
    ];
    let filler = (0..LINEAR_MAX).map(|i| peer(&format!("filler{i}.invalid"), Mandatory, Any, true));
    let mut short = domain("short.example", "t", true);
    short.inbound.peers = entries.to_vec();
    let mut long = domain("long.example", "t", true);
    long.inbound.peers = entries.iter().cloned().chain(filler).collect();
    assert!(short.inbound.peers.len() <= LINEAR_MAX && long.inbound.peers.len() > LINEAR_MAX);
    let snapshot = PolicySnapshot::build(Defaults::default(), vec![short, long]).expect("valid");
    let queries = [
        (Some("192.0.2.7"), None),
        (Some("::ffff:192.0.2.7"), None),
        (Some("192.0.2.8"), Some("partner.example")),
        (Some("192.0.3.1"), None),
        (Some("2001:db8::5"), None),
        (Some("198.51.100.1"), Some("PARTNER.example.")),
        (None, Some("mx.partner.example")),
        (None, Some("a.deep.partner.example")),
        (None, Some("deep.partner.example")),
        (None, Some("xpartner.example")),
        (None, Some("example")),
        (None, None),
    ];
    for (address, sender) in queries {
        let query = PeerQuery::Inbound {
            ip: address.map(ip),
            sender_domain: sender,
        };
        let a = snapshot.resolve("short.example", query);
        let b = snapshot.resolve("long.example", query);
        assert_eq!(
            (a.level, a.min_tls, a.reason),
            (b.level, b.min_tls, b.reason),
            "{address:?} {sender:?}"
        );
    }
    for duplicate in [
        "192.0.2.7",
        "::ffff:192.0.2.7",
        "192.0.2.0/24",
        "Partner.Example",
        "*.partner.example",
    ] {
        let mut d = domain("dup.example", "t", true);
        d.inbound.peers = vec![
            peer(duplicate, Mandatory, Any, true),
            peer("other.example", Mandatory, Any, true),
            peer(duplicate, Opportunistic, Any, true),
        ];
        let errors = PolicySnapshot::build(Defaults::default(), vec![d]).expect_err(duplicate);
        assert!(
            matches!(
                errors[..],
                [BuildError::DuplicatePeer {
                    first: 0,
                    second: 2,
                    ..
                }]
            ),
            "{duplicate}: {errors:?}"
        );
    }
}
