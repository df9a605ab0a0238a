//! The per-host decisions as tables: before connecting (each level's
//! host TLS) and after (the verdict per hop TLS and event), the rows of
//! RFC 7672 sections 2.2 and 3 and RFC 8461 sections 2 and 4.

use super::*;
use crate::dane::{usability, NoDaneReason, Unusable};
use crate::dns::TlsaRecord;

fn rec(usage: u8, selector: u8, matching: u8) -> TlsaRecord {
    TlsaRecord {
        usage,
        selector,
        matching,
        data: vec![0xab; 32],
    }
}

fn authenticate() -> DanePlan {
    DanePlan::Authenticate {
        tlsa: vec![usability(&rec(3, 1, 1)).expect("usable")],
        reference_names: vec!["mx.example.test".into()],
        tlsa_name: "_25._tcp.mx.example.test".into(),
    }
}

fn encrypt() -> DanePlan {
    DanePlan::EncryptUnauthenticated {
        unusable: vec![(rec(0, 0, 1), Unusable::PkixTa)],
    }
}

fn no_dane() -> DanePlan {
    DanePlan::Opportunistic(NoDaneReason::MxInsecure)
}

fn policy(mode: &str, mx: &str) -> Policy {
    Policy::parse(&format!(
        "version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 3600\n"
    ))
    .expect("policy")
}

const MX: &str = "mx.example.test";

#[test]
fn each_level_gives_each_host_its_tls() {
    let enforce = policy("enforce", "*.example.test");
    let enforce_other = policy("enforce", "mx.other.test");
    let testing = policy("testing", "*.example.test");
    let dane_tls = dane_host(&authenticate()).expect("DANE hop");
    assert!(matches!(dane_tls, HopTls::Dane(_)));
    assert_eq!(dane_host(&encrypt()), Ok(HopTls::Unauthenticated));
    assert_eq!(dane_host(&no_dane()), Ok(HopTls::Opportunistic));
    assert_eq!(
        dane_host(&DanePlan::Skip(SkipReason::NoAddress)),
        Err(HostSkip::Dane(SkipReason::NoAddress))
    );
    assert_eq!(
        plain_host(SecurityLevel::Mandatory),
        HopTls::Unauthenticated
    );
    assert_eq!(
        plain_host(SecurityLevel::Opportunistic),
        HopTls::Opportunistic
    );
    // (what, DANE plan, policy, host TLS)
    type Row<'a> = (
        &'a str,
        DanePlan,
        Option<&'a Policy>,
        Result<HopTls, HostSkip>,
    );
    let rows: Vec<Row> = vec![
        (
            "usable TLSA: DANE governs whatever the policy",
            authenticate(),
            Some(&enforce_other),
            Ok(dane_tls.clone()),
        ),
        (
            "enforce, MX listed: WebPKI",
            no_dane(),
            Some(&enforce),
            Ok(HopTls::WebPki),
        ),
        (
            "enforce, MX not listed: not contacted",
            no_dane(),
            Some(&enforce_other),
            Err(HostSkip::MtaSts(MxFailure::NotInPolicy { mx: MX.into() })),
        ),
        (
            "testing: opportunistic",
            no_dane(),
            Some(&testing),
            Ok(HopTls::Opportunistic),
        ),
        (
            "no policy: opportunistic",
            no_dane(),
            None,
            Ok(HopTls::Opportunistic),
        ),
        (
            "no policy, secure TLSA all unusable: TLS still required",
            encrypt(),
            None,
            Ok(HopTls::Unauthenticated),
        ),
        (
            "enforce beats unusable TLSA",
            encrypt(),
            Some(&enforce),
            Ok(HopTls::WebPki),
        ),
        (
            "TLSA lookup failed: DANE says skip",
            DanePlan::Skip(SkipReason::NoAddress),
            Some(&testing),
            Err(HostSkip::Dane(SkipReason::NoAddress)),
        ),
    ];
    for (what, plan, policy, want) in rows {
        assert_eq!(mta_sts_host(&plan, policy, MX), want, "{what}");
    }
}

fn hop(tls: HopTls, min_tls: MinTlsVersion) -> Hop {
    Hop {
        host: MX.into(),
        addresses: Vec::new(),
        tls,
        min_tls,
    }
}

fn verdict(tls: &HopTls, min_tls: MinTlsVersion, event: ConnectionEvent) -> ConnectionVerdict {
    let hop = hop(tls.clone(), min_tls);
    let params = hop.params_for_verdict().expect("params");
    connection_verdict(&hop, &params, &event)
}

#[test]
fn the_connection_verdict_as_a_table() {
    use ConnectionEvent as E;
    use ConnectionVerdict as V;
    let dane = dane_host(&authenticate()).expect("DANE hop");
    let any = MinTlsVersion::Any;
    let mismatch = DaneFailure::NoMatch { records: 1 };
    let tls13 = |authenticated| E::Tls {
        version: ProtocolVersion::TLSv1_3,
        authenticated,
    };
    let sent = |authenticated| V::SendOverTls {
        version: ProtocolVersion::TLSv1_3,
        authenticated,
    };
    let handshake = |rejected| E::HandshakeFailed {
        rejected,
        detail: "protocol version".into(),
    };
    let failed = TlsProblem::Handshake {
        detail: "protocol version".into(),
    };
    let rows: Vec<(&str, &HopTls, MinTlsVersion, E, V)> = vec![
        (
            "DANE, no STARTTLS: never this host",
            &dane,
            any,
            E::StartTlsNotOffered,
            V::NotUsed(NotUsed::Dane(SkipReason::StartTlsNotOffered)),
        ),
        (
            "DANE, certificate does not match",
            &dane,
            any,
            handshake(Some(CertRejection::Dane(mismatch.clone()))),
            V::NotUsed(NotUsed::Dane(SkipReason::DaneAuthenticationFailed(
                mismatch,
            ))),
        ),
        (
            "DANE, handshake failed otherwise",
            &dane,
            any,
            handshake(None),
            V::NotUsed(NotUsed::Dane(SkipReason::TlsFailed {
                detail: failed.to_string(),
            })),
        ),
        (
            "DANE, authenticated",
            &dane,
            any,
            tls13(TlsAuthentication::Dane),
            sent(TlsAuthentication::Dane),
        ),
        (
            "DANE, a session its verifier did not authenticate",
            &dane,
            any,
            tls13(TlsAuthentication::None),
            V::NotUsed(NotUsed::Dane(SkipReason::TlsFailed {
                detail: "TLS handshake failed: the certificate was not authenticated by Dane"
                    .into(),
            })),
        ),
        (
            "unusable TLSA / mandatory, no STARTTLS",
            &HopTls::Unauthenticated,
            any,
            E::StartTlsNotOffered,
            V::NotUsed(NotUsed::TlsRequired(TlsProblem::NotOffered)),
        ),
        (
            "mandatory, handshake failed: no cleartext",
            &HopTls::Unauthenticated,
            any,
            handshake(None),
            V::NotUsed(NotUsed::TlsRequired(failed.clone())),
        ),
        (
            "mandatory, below the minimum",
            &HopTls::Unauthenticated,
            MinTlsVersion::Tls13,
            E::Tls {
                version: ProtocolVersion::TLSv1_2,
                authenticated: TlsAuthentication::None,
            },
            V::NotUsed(NotUsed::TlsRequired(TlsProblem::BelowMinimum {
                negotiated: ProtocolVersion::TLSv1_2,
                minimum: MinTlsVersion::Tls13,
            })),
        ),
        (
            "opportunistic, no STARTTLS: cleartext",
            &HopTls::Opportunistic,
            any,
            E::StartTlsNotOffered,
            V::SendCleartext(TlsProblem::NotOffered),
        ),
        (
            "opportunistic, handshake failed: reconnect in cleartext",
            &HopTls::Opportunistic,
            any,
            handshake(None),
            V::RetryCleartext(failed.clone()),
        ),
        (
            "opportunistic, below the minimum: reconnect in cleartext",
            &HopTls::Opportunistic,
            MinTlsVersion::Tls13,
            E::Tls {
                version: ProtocolVersion::TLSv1_2,
                authenticated: TlsAuthentication::None,
            },
            V::RetryCleartext(TlsProblem::BelowMinimum {
                negotiated: ProtocolVersion::TLSv1_2,
                minimum: MinTlsVersion::Tls13,
            }),
        ),
        (
            "opportunistic TLS",
            &HopTls::Opportunistic,
            any,
            tls13(TlsAuthentication::None),
            sent(TlsAuthentication::None),
        ),
        (
            "MTA-STS enforce, no STARTTLS",
            &HopTls::WebPki,
            any,
            E::StartTlsNotOffered,
            V::NotUsed(NotUsed::MtaSts(MxFailure::StartTlsNotOffered {
                mx: MX.into(),
            })),
        ),
        (
            "MTA-STS enforce, certificate invalid",
            &HopTls::WebPki,
            any,
            handshake(Some(CertRejection::WebPki(CertProblem::Expired))),
            V::NotUsed(NotUsed::MtaSts(MxFailure::Certificate {
                mx: MX.into(),
                problem: CertProblem::Expired,
            })),
        ),
        (
            "MTA-STS enforce, WebPKI valid",
            &HopTls::WebPki,
            any,
            tls13(TlsAuthentication::WebPki),
            sent(TlsAuthentication::WebPki),
        ),
        (
            "no SMTP session",
            &HopTls::Opportunistic,
            any,
            E::NoSession {
                detail: "connection refused".into(),
            },
            V::NotUsed(NotUsed::NoSession {
                detail: "connection refused".into(),
            }),
        ),
        (
            "STARTTLS injection, even opportunistic",
            &HopTls::Opportunistic,
            any,
            E::StartTlsInjection,
            V::NotUsed(NotUsed::TlsRequired(TlsProblem::Injection)),
        ),
    ];
    for (row, tls, min_tls, event, want) in rows {
        let got = verdict(tls, min_tls, event);
        assert_eq!(got, want, "row: {row}");
        assert!(!got.to_string().is_empty());
    }
}

#[test]
fn only_a_session_that_never_answered_leaves_the_policy_alone() {
    let no_session = NotUsed::NoSession {
        detail: "refused".into(),
    };
    assert!(!no_session.by_policy());
    assert!(NotUsed::TlsRequired(TlsProblem::NotOffered).by_policy());
    assert!(NotUsed::Dane(SkipReason::StartTlsNotOffered).by_policy());
}

#[test]
fn verdict_parameters_never_carry_mail_under_webpki() {
    let params = hop(HopTls::WebPki, MinTlsVersion::Any)
        .params_for_verdict()
        .expect("params");
    assert_eq!(
        params.requirement.authentication(),
        TlsAuthentication::WebPki
    );
    assert!(params.requirement.requires_tls());
    assert!(params.cleartext_retry().is_none());
}
