//! The per-level verdicts as a table over hand-made facts: DNS evidence
//! goes through the real (pure) DANE planner, sessions are described by
//! what they showed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rustls::ProtocolVersion;

use super::*;
use crate::dane::{plan_destination, DaneFailure, DaneLevel, DaneMatch, HostEvidence, Usage};
use crate::dns::{AddressLookup, DnssecStatus, MxHost, MxLookup, TlsaLookup, TlsaRecord};
use crate::mta_sts::{CertProblem, DiscoveryFailure, FetchError, Policy, StsTxtRecord, TxtProblem};
use crate::probe::capture::CertCheck;
use crate::probe::facts::StsFacts;

const DOMAIN: &str = "example.test";
const MX: &str = "mx.example.test";

fn record() -> TlsaRecord {
    TlsaRecord {
        usage: 3,
        selector: 1,
        matching: 1,
        data: vec![0xab; 32],
    }
}

/// The DNS side of a case.
#[derive(Clone, Copy)]
struct Dns {
    mx: DnssecStatus,
    /// `None`: secure NODATA at the TLSA name.
    tlsa: Option<DnssecStatus>,
    /// The TLSA record's usage (1, PKIX-EE, is unusable for SMTP).
    usage: u8,
}

const SIGNED: Dns = Dns {
    mx: DnssecStatus::Secure,
    tlsa: Some(DnssecStatus::Secure),
    usage: 3,
};
const UNSIGNED: Dns = Dns {
    mx: DnssecStatus::Insecure,
    tlsa: None,
    usage: 3,
};
/// Secure TLSA records, none usable (PKIX-EE, RFC 7672 section 3.1.3).
const SIGNED_UNUSABLE: Dns = Dns {
    mx: DnssecStatus::Secure,
    tlsa: Some(DnssecStatus::Secure),
    usage: 1,
};
const SIGNED_NO_TLSA: Dns = Dns {
    mx: DnssecStatus::Secure,
    tlsa: None,
    usage: 3,
};

fn sts(mode: Option<&str>, mx_pattern: &str) -> StsFacts {
    match mode {
        None => StsFacts {
            txt: Err(TxtProblem::Absent),
            policy: None,
            ignored_fields: vec![],
        },
        Some(mode) => StsFacts {
            txt: Ok(StsTxtRecord { id: "1".into() }),
            policy: Some(Ok(Policy::parse(&format!(
                "version: STSv1\nmode: {mode}\nmx: {mx_pattern}\nmax_age: 86400\n"
            ))
            .expect("policy"))),
            ignored_fields: vec![],
        },
    }
}

fn facts(dns: Dns, mta_sts: StsFacts, outcome: SessionOutcome) -> ProbeFacts {
    let host = MxHost {
        preference: 10,
        exchange: MX.into(),
    };
    let mx = MxLookup::Hosts {
        hosts: vec![host.clone()],
        dnssec: dns.mx,
    };
    let lookup = Lookup::Records {
        records: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dnssec: dns.mx,
    };
    let addresses = AddressLookup {
        host: MX.into(),
        canonical: MX.into(),
        resolved: lookup.clone(),
        lookup,
    };
    let tlsa = TlsaLookup {
        base_domain: MX.into(),
        tlsa_name: format!("_25._tcp.{MX}"),
        lookup: match dns.tlsa {
            Some(dnssec) => Lookup::Records {
                records: vec![TlsaRecord {
                    usage: dns.usage,
                    ..record()
                }],
                dnssec,
            },
            None => Lookup::NoData {
                dnssec: DnssecStatus::Secure,
            },
        },
    };
    let evidence = HostEvidence {
        host: host.clone(),
        addresses: addresses.clone(),
        tlsa: Some(tlsa.clone()),
    };
    let plan = |level| plan_destination(level, DOMAIN, &mx, std::slice::from_ref(&evidence));
    ProbeFacts {
        domain: DOMAIN.into(),
        dane_opportunistic: plan(DaneLevel::Opportunistic),
        dane_mandatory: plan(DaneLevel::Mandatory),
        mx,
        mta_sts,
        hosts: vec![HostFacts {
            host,
            addresses,
            tlsa,
            sessions: vec![SessionFacts {
                addr: SocketAddr::from(([127, 0, 0, 1], 25)),
                sni: MX.into(),
                outcome,
            }],
        }],
        smtp_port: 25,
    }
}

fn tls(webpki: CertOutcome, dane: Option<Result<DaneMatch, DaneFailure>>) -> SessionOutcome {
    SessionOutcome::Tls {
        version: ProtocolVersion::TLSv1_3,
        cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
        certificate: Some(CertCheck {
            chain: Vec::new(),
            webpki: Some(webpki),
            dane,
        }),
    }
}

fn matched() -> Option<Result<DaneMatch, DaneFailure>> {
    Some(Ok(DaneMatch {
        usage: Usage::DaneEe,
        record: record(),
        depth: 0,
        matched_name: None,
    }))
}

fn mismatch() -> Option<Result<DaneMatch, DaneFailure>> {
    Some(Err(DaneFailure::NoMatch { records: 1 }))
}

fn untrusted() -> CertOutcome {
    CertOutcome::Invalid(CertProblem::NotTrusted)
}

use Action::*;
use SecurityLevel::*;

#[test]
fn verdict_table() {
    let no_sts = || sts(None, "");
    let enforce = || sts(Some("enforce"), "*.example.test");
    let enforce_other = || sts(Some("enforce"), "mx.other.test");
    let testing = || sts(Some("testing"), "*.example.test");
    let tls12 = SessionOutcome::Tls {
        version: ProtocolVersion::TLSv1_2,
        cipher: None,
        certificate: None,
    };
    let handshake = SessionOutcome::HandshakeFailed {
        detail: "no common cipher".into(),
        certificate: None,
    };
    #[allow(clippy::type_complexity)]
    let table: Vec<(
        &str,
        ProbeFacts,
        SecurityLevel,
        MinTlsVersion,
        Action,
        TlsAuthentication,
        &str,
    )> = vec![
        // opportunistic / mandatory
        (
            "plain TLS",
            facts(UNSIGNED, no_sts(), tls(untrusted(), None)),
            Opportunistic,
            MinTlsVersion::Any,
            DeliverTls,
            TlsAuthentication::None,
            "certificate not checked",
        ),
        (
            "no STARTTLS, opportunistic",
            facts(UNSIGNED, no_sts(), SessionOutcome::StartTlsNotOffered),
            Opportunistic,
            MinTlsVersion::Any,
            DeliverCleartext,
            TlsAuthentication::None,
            "STARTTLS not offered",
        ),
        (
            "no STARTTLS, mandatory",
            facts(UNSIGNED, no_sts(), SessionOutcome::StartTlsNotOffered),
            Mandatory,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "TLS required: STARTTLS not offered",
        ),
        (
            "failed handshake, opportunistic",
            facts(UNSIGNED, no_sts(), handshake.clone()),
            Opportunistic,
            MinTlsVersion::Any,
            RetryCleartext,
            TlsAuthentication::None,
            "no common cipher",
        ),
        (
            "TLS 1.2 below 1.3, mandatory",
            facts(UNSIGNED, no_sts(), tls12.clone()),
            Mandatory,
            MinTlsVersion::Tls13,
            NotUsed,
            TlsAuthentication::None,
            "TLS 1.2 negotiated, below the minimum 1.3",
        ),
        (
            "TLS 1.2 below 1.3, opportunistic",
            facts(UNSIGNED, no_sts(), tls12.clone()),
            Opportunistic,
            MinTlsVersion::Tls13,
            RetryCleartext,
            TlsAuthentication::None,
            "below the minimum",
        ),
        (
            "unreachable",
            facts(
                UNSIGNED,
                no_sts(),
                SessionOutcome::Failed {
                    detail: "connection refused".into(),
                },
            ),
            Opportunistic,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "connection refused",
        ),
        // DANE
        (
            "TLSA matches",
            facts(SIGNED, no_sts(), tls(untrusted(), matched())),
            MandatoryDane,
            MinTlsVersion::Any,
            DeliverTls,
            TlsAuthentication::Dane,
            "DANE-verified via 3 1 1",
        ),
        (
            "TLSA matches, opportunistic-dane",
            facts(SIGNED, no_sts(), tls(untrusted(), matched())),
            OpportunisticDane,
            MinTlsVersion::Any,
            DeliverTls,
            TlsAuthentication::Dane,
            "DANE-verified",
        ),
        (
            "TLSA does not match",
            facts(SIGNED, no_sts(), tls(untrusted(), mismatch())),
            MandatoryDane,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "no TLSA record matches",
        ),
        (
            "TLSA does not match, opportunistic-dane: never cleartext either",
            facts(SIGNED, no_sts(), tls(untrusted(), mismatch())),
            OpportunisticDane,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "DANE authentication failed",
        ),
        (
            "TLSA exists, no STARTTLS",
            facts(SIGNED, no_sts(), SessionOutcome::StartTlsNotOffered),
            OpportunisticDane,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "STARTTLS not offered although secure TLSA",
        ),
        (
            "no TLSA, opportunistic-dane is opportunistic",
            facts(SIGNED_NO_TLSA, no_sts(), SessionOutcome::StartTlsNotOffered),
            OpportunisticDane,
            MinTlsVersion::Any,
            DeliverCleartext,
            TlsAuthentication::None,
            "",
        ),
        (
            "no TLSA, mandatory-dane skips the host",
            facts(SIGNED_NO_TLSA, no_sts(), tls(untrusted(), None)),
            MandatoryDane,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "DANE required but no TLSA records",
        ),
        (
            "unsigned MX, mandatory-dane defers the destination",
            facts(UNSIGNED, no_sts(), tls(untrusted(), None)),
            MandatoryDane,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "MX records are not DNSSEC-signed",
        ),
        // MTA-STS
        (
            "enforce, MX matches, WebPKI valid",
            facts(UNSIGNED, enforce(), tls(CertOutcome::Valid, None)),
            MtaSts,
            MinTlsVersion::Any,
            DeliverTls,
            TlsAuthentication::WebPki,
            "authenticated by WebPKI",
        ),
        (
            "enforce, untrusted certificate",
            facts(UNSIGNED, enforce(), tls(untrusted(), None)),
            MtaSts,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "not issued by a trusted CA",
        ),
        (
            "enforce, MX not in policy",
            facts(UNSIGNED, enforce_other(), tls(CertOutcome::Valid, None)),
            MtaSts,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "matches no mx pattern",
        ),
        (
            "enforce, no STARTTLS",
            facts(UNSIGNED, enforce(), SessionOutcome::StartTlsNotOffered),
            MtaSts,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "does not offer STARTTLS",
        ),
        (
            "testing, untrusted: opportunistic TLS",
            facts(UNSIGNED, testing(), tls(untrusted(), None)),
            MtaSts,
            MinTlsVersion::Any,
            DeliverTls,
            TlsAuthentication::None,
            "certificate not checked",
        ),
        (
            "no policy: opportunistic",
            facts(UNSIGNED, no_sts(), SessionOutcome::StartTlsNotOffered),
            MtaSts,
            MinTlsVersion::Any,
            DeliverCleartext,
            TlsAuthentication::None,
            "deliver in cleartext",
        ),
        (
            "no policy, secure TLSA all unusable: TLS required, as delivery does",
            facts(
                SIGNED_UNUSABLE,
                no_sts(),
                SessionOutcome::StartTlsNotOffered,
            ),
            MtaSts,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "TLS required: STARTTLS not offered",
        ),
        (
            "usable TLSA: DANE takes precedence over MTA-STS",
            facts(SIGNED, enforce(), tls(CertOutcome::Valid, mismatch())),
            MtaSts,
            MinTlsVersion::Any,
            NotUsed,
            TlsAuthentication::None,
            "DANE takes precedence",
        ),
    ];
    for (what, facts, level, min, action, authentication, text) in table {
        let host = &facts.hosts[0];
        let verdict = address_verdict(level, min, &facts, host, &host.sessions[0]);
        assert_eq!(
            (verdict.action, verdict.authentication),
            (action, authentication),
            "{what}: {verdict}"
        );
        assert!(
            verdict.to_string().contains(text),
            "{what}: {verdict:?} should mention {text:?}"
        );
    }
}

#[test]
fn destination_outcomes_name_the_reason() {
    let facts_mismatch = facts(SIGNED, sts(None, ""), tls(untrusted(), mismatch()));
    let outcome = level_outcome(MandatoryDane, MinTlsVersion::Any, &facts_mismatch);
    assert!(matches!(outcome, LevelOutcome::Defer(ref a) if a.len() == 1));
    let text = outcome.to_string();
    assert!(text.contains("would defer") && text.contains(MX), "{text}");
    assert!(text.contains("no TLSA record matches"), "{text}");

    let ok = level_outcome(
        MandatoryDane,
        MinTlsVersion::Any,
        &facts(SIGNED, sts(None, ""), tls(untrusted(), matched())),
    );
    assert!(
        matches!(
            ok,
            LevelOutcome::Deliver {
                authentication: TlsAuthentication::Dane,
                action: DeliverTls,
                ..
            }
        ),
        "{ok}"
    );

    let unsigned = facts(UNSIGNED, sts(None, ""), tls(untrusted(), None));
    let outcome = level_outcome(MandatoryDane, MinTlsVersion::Any, &unsigned);
    assert!(
        matches!(outcome, LevelOutcome::DeferDestination(_)),
        "{outcome}"
    );
    assert!(outcome.to_string().contains("not DNSSEC-signed"));
    // The other levels deliver over the same session.
    for level in [Opportunistic, Mandatory, OpportunisticDane, MtaSts] {
        let outcome = level_outcome(level, MinTlsVersion::Any, &unsigned);
        assert!(
            matches!(
                outcome,
                LevelOutcome::Deliver {
                    action: DeliverTls,
                    ..
                }
            ),
            "{level}: {outcome}"
        );
    }
}

#[test]
fn a_failed_policy_fetch_means_no_policy() {
    let mut facts = facts(UNSIGNED, sts(None, ""), tls(untrusted(), None));
    facts.mta_sts = StsFacts {
        txt: Ok(StsTxtRecord { id: "1".into() }),
        policy: Some(Err(DiscoveryFailure::Fetch(FetchError::Status {
            host: "mta-sts.example.test".into(),
            status: 404,
        }))),
        ignored_fields: vec![],
    };
    let host = &facts.hosts[0];
    let verdict = address_verdict(MtaSts, MinTlsVersion::Any, &facts, host, &host.sessions[0]);
    assert_eq!(verdict.action, DeliverTls);
    assert!(
        verdict.to_string().contains("(opportunistic TLS)"),
        "{verdict}"
    );
}

#[test]
fn a_host_without_address_is_reported() {
    let mut facts = facts(UNSIGNED, sts(None, ""), SessionOutcome::StartTlsNotOffered);
    facts.hosts[0].sessions.clear();
    facts.hosts[0].addresses.lookup = Lookup::NoData {
        dnssec: DnssecStatus::Insecure,
    };
    let outcome = level_outcome(Opportunistic, MinTlsVersion::Any, &facts);
    assert!(
        outcome.to_string().contains("no A or AAAA records"),
        "{outcome}"
    );
}

#[test]
fn the_first_mx_that_takes_the_mail_wins_in_preference_order() {
    let mut facts = facts(UNSIGNED, sts(None, ""), SessionOutcome::StartTlsNotOffered);
    let mut second = facts.hosts[0].clone();
    second.host = MxHost {
        preference: 20,
        exchange: "mx2.example.test".into(),
    };
    second.sessions[0].addr = SocketAddr::from(([127, 0, 0, 2], 25));
    second.sessions[0].outcome = tls(untrusted(), None);
    facts.hosts.push(second);
    // Opportunistic takes the first MX in cleartext, mandatory the second.
    let first = level_outcome(Opportunistic, MinTlsVersion::Any, &facts);
    assert!(
        matches!(&first, LevelOutcome::Deliver { mx, action: DeliverCleartext, .. } if mx == MX),
        "{first}"
    );
    let second = level_outcome(Mandatory, MinTlsVersion::Any, &facts);
    assert!(
        matches!(&second, LevelOutcome::Deliver { mx, action: DeliverTls, .. } if mx == "mx2.example.test"),
        "{second}"
    );
    // With TLS 1.3 required neither would do: both reasons are listed.
    facts.hosts[1].sessions[0].outcome = SessionOutcome::Tls {
        version: ProtocolVersion::TLSv1_2,
        cipher: None,
        certificate: None,
    };
    let none = level_outcome(Mandatory, MinTlsVersion::Tls13, &facts);
    let text = none.to_string();
    assert!(
        matches!(&none, LevelOutcome::Defer(a) if a.len() == 2),
        "{text}"
    );
    assert!(
        text.contains("STARTTLS not offered") && text.contains("below the minimum 1.3"),
        "{text}"
    );
}
