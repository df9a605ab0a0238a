use std::sync::Arc;

use super::*;
use crate::smtp::client::Stage;

fn peer() -> Peer {
    Peer {
        mx_host: "mx1.example.net".into(),
        addr: "192.0.2.25:25".parse().expect("addr"),
        local: None,
    }
}

fn handshake_failed(error: rustls::Error) -> ClientError {
    ClientError::TlsHandshakeFailed {
        peer: peer(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
        retry_cleartext_allowed: false,
    }
}

#[test]
fn remote_replies_keep_host_address_code_and_status() {
    let reply = Reply::new(550, (5, 1, 1), "no such user");
    let reason = remote(&peer(), &reply);
    assert_eq!(
        reason.to_string(),
        "mx1.example.net [192.0.2.25] said: 550 5.1.1 no such user"
    );
    assert_eq!(reason.status(), Some(Status(5, 1, 1)));
    assert_eq!(
        reason.remote(),
        Some((
            "mx1.example.net",
            550,
            Some(Status(5, 1, 1)),
            "no such user"
        ))
    );
}

#[test]
fn a_refused_tls_requirement_is_told_apart_from_an_unreachable_host() {
    let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    // (error, refused by policy, the reason's kind and cause)
    let table: Vec<(ClientError, bool, &str, &str)> = vec![
        (
            ClientError::TlsNotOffered { peer: peer() },
            true,
            "local",
            "tls-not-offered",
        ),
        (
            ClientError::TlsBelowMinimum {
                peer: peer(),
                negotiated: rustls::ProtocolVersion::TLSv1_2,
                minimum: "1.3",
            },
            true,
            "local",
            "tls-below-minimum",
        ),
        (
            handshake_failed(rustls::Error::DecryptError),
            true,
            "local",
            "tls-handshake-failed",
        ),
        (
            ClientError::StartTlsInjection { peer: peer() },
            true,
            "local",
            "starttls-injection",
        ),
        (
            ClientError::Rejected {
                peer: peer(),
                stage: Stage::StartTls,
                reply: Reply::new(454, (4, 7, 0), "TLS not available"),
            },
            true,
            "remote",
            "454 4.7.0",
        ),
        (
            ClientError::Connect {
                peer: peer(),
                source: io(),
            },
            false,
            "local",
            "connection-failed",
        ),
        (
            ClientError::Timeout {
                peer: peer(),
                stage: Stage::Greeting,
            },
            false,
            "local",
            "timeout",
        ),
        (
            ClientError::Rejected {
                peer: peer(),
                stage: Stage::Greeting,
                reply: Reply::new(554, (5, 3, 2), "not now"),
            },
            false,
            "remote",
            "554 5.3.2",
        ),
    ];
    // Whether the host answered and the policy refused its TLS, as the
    // attempt driver asks it: the verdict under a hop that requires TLS.
    let hop = crate::delivery::decision::Hop {
        host: "mx.example.net".into(),
        addresses: Vec::new(),
        tls: crate::delivery::decision::HopTls::Unauthenticated,
        min_tls: crate::policy::MinTlsVersion::Tls13,
    };
    let params = hop.params(None).expect("params");
    for (error, refused, kind, cause) in table {
        let event = crate::delivery::decision::ConnectionEvent::of_error(&error);
        let verdict = crate::delivery::decision::connection_verdict(&hop, &params, &event);
        let by_policy = matches!(
            verdict,
            crate::delivery::decision::ConnectionVerdict::NotUsed(ref why) if why.by_policy()
        );
        assert_eq!(by_policy, refused, "{error}");
        let group = connection_failure(false, &error).group();
        assert_eq!(
            (group.kind.as_str(), group.cause.as_str()),
            (kind, cause),
            "{error}"
        );
    }
}

#[test]
fn plan_deferrals_pause_everyone_only_under_the_mx_levels() {
    use SecurityLevel::*;
    for (level, everyone) in [
        (Opportunistic, true),
        (Mandatory, true),
        (OpportunisticDane, false),
        (MandatoryDane, false),
        (MtaSts, false),
    ] {
        let why = Reason::local(LocalCause::DnsFailure, status::DNS, "why");
        let health = plan_deferral_health(level, why);
        assert_eq!(
            matches!(health, Health::Unreachable(_)),
            everyone,
            "{level}"
        );
    }
}

#[test]
fn certificate_refusals_read_as_what_they_are() {
    use rustls::{CertificateError, OtherError};
    let failure = crate::dane::DaneFailure::NoMatch { records: 2 };
    let error = handshake_failed(rustls::Error::InvalidCertificate(CertificateError::Other(
        OtherError(Arc::new(failure)),
    )));
    let dane = connection_failure(false, &error);
    assert_eq!(
        dane.to_string(),
        "mx1.example.net [192.0.2.25]: DANE authentication failed: \
         no TLSA record matches the presented chain (2 usable records)"
    );
    assert!(matches!(
        dane,
        Reason::Dane {
            failure: TlsFailure::ValidationFailure,
            ..
        }
    ));
    let untrusted = handshake_failed(rustls::Error::InvalidCertificate(
        CertificateError::UnknownIssuer,
    ));
    let sts = connection_failure(true, &untrusted);
    assert_eq!(
        sts.to_string(),
        "mx1.example.net [192.0.2.25]: MTA-STS enforce: certificate not issued by a trusted CA"
    );
    assert!(matches!(
        sts,
        Reason::MtaSts {
            failure: TlsFailure::CertificateNotTrusted,
            ..
        }
    ));
    // Without an MTA-STS requirement the same error is a failed handshake.
    let plain = connection_failure(false, &untrusted);
    assert!(matches!(
        plain,
        Reason::Local {
            cause: LocalCause::TlsHandshakeFailed,
            ..
        }
    ));
}

#[test]
fn domains_without_mail_fail_with_their_dsn_status() {
    let table = [
        (FailReason::NullMx, Status(5, 1, 10)),
        (FailReason::NoMailDomain { nxdomain: true }, Status(5, 1, 2)),
        (
            FailReason::NoMailDomain { nxdomain: false },
            Status(5, 1, 2),
        ),
    ];
    for (why, want) in table {
        let reason = dane_failure("example.net", &why);
        assert!(reason.to_string().starts_with("example.net: "), "{reason}");
        assert_eq!(reason.status(), Some(want), "{reason}");
    }
}
