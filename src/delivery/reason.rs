//! Why a delivery attempt ended as it did, as text a person can act on
//! and as the classification the engine acts on:
//!
//! - a remote reply kept with its host (`host [ip] said: 550 5.1.1 ...`)
//!   and a local permanent failure kept with its RFC 3463 status, both
//!   read back for the DSN (RFC 3464 `Remote-MTA`, `Diagnostic-Code`,
//!   `Status`);
//! - a failed connection described by what refused it (DANE, MTA-STS
//!   enforce in the RFC 8460 vocabulary, or the client's own error);
//! - whether a failure means the destination is down for everyone or only
//!   refuses one policy's TLS ([`Health`]), which decides what its
//!   destination actor pauses.

use super::attempt::Health;
use super::plan::{Hop, HopTls};
use crate::mta_sts::CertOutcome;
use crate::policy::SecurityLevel;
use crate::smtp::client::{ClientError, Peer, Stage};
use crate::smtp::{EnhancedCode, Reply};

/// How a remote reply is kept as a reason: `host [ip] said: 550 5.1.1 text`.
pub fn remote_reason(peer: &Peer, reply: &Reply) -> String {
    format!("{} [{}] said: {reply}", peer.mx_host, peer.addr.ip())
}

/// The host and reply back from a [`remote_reason`] (for the DSN).
pub fn parse_remote_reason(reason: &str) -> Option<(String, Reply)> {
    let (host, reply) = reason.split_once(" said: ")?;
    let host = host.split(" [").next()?.to_string();
    let reply = crate::smtp::reply::parse_reply(format!("{reply}\r\n").as_bytes())?.ok()?;
    Some((host, reply))
}

/// How a local permanent failure keeps its RFC 3463 status for the DSN:
/// `<why> (status 5.3.4)`.
pub fn local_reason(why: &str, status: EnhancedCode) -> String {
    format!("{why} (status {status})")
}

/// The status back from a [`local_reason`] (for the DSN).
pub fn parse_local_status(reason: &str) -> Option<EnhancedCode> {
    let (_, code) = reason.strip_suffix(')')?.rsplit_once(" (status ")?;
    let mut parts = code.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && matches!(class, 2 | 4 | 5))
        .then_some(EnhancedCode(class, subject, detail))
}

/// The destination's health after the plan deferred it: under
/// `opportunistic` and `mandatory` only DNS can defer a plan (the domain
/// is unreachable for everyone); under the DANE levels and `mta-sts` the
/// deferral is that policy's verdict (TLSA or MTA-STS policy trouble, no
/// MX the policy allows), which other policies do not share.
pub(crate) fn plan_deferral_health(level: SecurityLevel, reason: String) -> Health {
    match level {
        SecurityLevel::Opportunistic | SecurityLevel::Mandatory => Health::Unreachable(reason),
        SecurityLevel::OpportunisticDane | SecurityLevel::MandatoryDane | SecurityLevel::MtaSts => {
            Health::Refused(reason)
        }
    }
}

/// Whether a failed connection was the server declining what the
/// message's TLS requirement asks (it answered: the host is up), as
/// opposed to the host being unreachable or broken.
pub(crate) fn refused_by_policy(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::TlsNotOffered { .. }
            | ClientError::TlsBelowMinimum { .. }
            | ClientError::TlsHandshakeFailed { .. }
            | ClientError::StartTlsInjection { .. }
            | ClientError::Rejected {
                stage: Stage::StartTls,
                ..
            }
    )
}

/// A connection failure as a reason a person can act on: a certificate
/// DANE refused says which TLSA check failed (rustls would print the
/// wrapped error with `Debug`), one an MTA-STS enforce policy refused says
/// why in the RFC 8460 vocabulary; everything else as the client reports
/// it.
pub(crate) fn describe_failure(hop: &Hop, e: &ClientError) -> String {
    if let ClientError::TlsHandshakeFailed { peer, source, .. } = e {
        let tls = source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let Some(tls) = tls {
            if let Some(failure) = crate::dane::dane_failure(tls) {
                return format!("{peer}: DANE authentication failed: {failure}");
            }
            if matches!(hop.tls, HopTls::WebPki) {
                if let CertOutcome::Invalid(problem) = crate::mta_sts::verify::classify(tls) {
                    return format!("{peer}: MTA-STS enforce: {problem}");
                }
            }
        }
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::MinTlsVersion;

    #[test]
    fn remote_reasons_round_trip_for_the_dsn() {
        let peer = Peer {
            mx_host: "mx1.example.net".into(),
            addr: "192.0.2.25:25".parse().expect("addr"),
        };
        let reply = Reply::new(550, (5, 1, 1), "no such user");
        let reason = remote_reason(&peer, &reply);
        assert_eq!(
            reason,
            "mx1.example.net [192.0.2.25] said: 550 5.1.1 no such user"
        );
        let (host, back) = parse_remote_reason(&reason).expect("parses");
        assert_eq!(host, "mx1.example.net");
        assert_eq!(back, reply);
        assert_eq!(parse_remote_reason("mandatory: TLS not offered"), None);
    }

    #[test]
    fn local_reasons_keep_their_status_for_the_dsn() {
        let reason = local_reason(
            "mandatory: mx1.example.net [192.0.2.25]: message is 900 octets, the server accepts at most 100",
            EnhancedCode(5, 3, 4),
        );
        assert!(reason.ends_with(" (status 5.3.4)"), "{reason}");
        assert_eq!(parse_local_status(&reason), Some(EnhancedCode(5, 3, 4)));
        for text in [
            "mandatory: TLS not offered",
            "x (status 5.3)",
            "x (status 9.1.1)",
            "x (status 5.1.1.1)",
            "x (status a.b.c)",
        ] {
            assert_eq!(parse_local_status(text), None, "{text}");
        }
    }

    fn peer() -> Peer {
        Peer {
            mx_host: "mx1.example.net".into(),
            addr: "192.0.2.25:25".parse().expect("addr"),
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
    fn a_refused_tls_requirement_is_told_apart_from_an_unreachable_host() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let table: Vec<(ClientError, bool)> = vec![
            (ClientError::TlsNotOffered { peer: peer() }, true),
            (
                ClientError::TlsBelowMinimum {
                    peer: peer(),
                    negotiated: rustls::ProtocolVersion::TLSv1_2,
                    minimum: "1.3",
                },
                true,
            ),
            (handshake_failed(rustls::Error::DecryptError), true),
            (ClientError::StartTlsInjection { peer: peer() }, true),
            (
                ClientError::Rejected {
                    peer: peer(),
                    stage: Stage::StartTls,
                    reply: Reply::new(454, (4, 7, 0), "TLS not available"),
                },
                true,
            ),
            (
                ClientError::Connect {
                    peer: peer(),
                    source: io(),
                },
                false,
            ),
            (
                ClientError::Timeout {
                    peer: peer(),
                    stage: Stage::Greeting,
                },
                false,
            ),
            (
                ClientError::Rejected {
                    peer: peer(),
                    stage: Stage::Greeting,
                    reply: Reply::new(554, (5, 3, 2), "not now"),
                },
                false,
            ),
        ];
        for (error, refused) in table {
            assert_eq!(refused_by_policy(&error), refused, "{error}");
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
            let health = plan_deferral_health(level, "why".into());
            assert_eq!(
                matches!(health, Health::Unreachable(_)),
                everyone,
                "{level}"
            );
        }
    }

    fn hop(tls: HopTls) -> Hop {
        Hop {
            host: "mx1.example.net".into(),
            addresses: vec!["192.0.2.25:25".parse().expect("addr")],
            tls,
            min_tls: MinTlsVersion::Any,
        }
    }

    #[test]
    fn certificate_refusals_read_as_what_they_are() {
        use rustls::{CertificateError, OtherError};
        let failure = crate::dane::DaneFailure::NoMatch { records: 2 };
        let error = handshake_failed(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(failure)),
        )));
        assert_eq!(
            describe_failure(&hop(HopTls::Unauthenticated), &error),
            "mx1.example.net [192.0.2.25:25]: DANE authentication failed: \
             no TLSA record matches the presented chain (2 usable records)"
        );
        let untrusted = handshake_failed(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            describe_failure(&hop(HopTls::WebPki), &untrusted),
            "mx1.example.net [192.0.2.25:25]: MTA-STS enforce: certificate not issued by a trusted CA"
        );
        let other = handshake_failed(rustls::Error::DecryptError);
        assert_eq!(
            describe_failure(&hop(HopTls::WebPki), &other),
            other.to_string()
        );
        assert_eq!(
            describe_failure(&hop(HopTls::Opportunistic), &untrusted),
            untrusted.to_string()
        );
    }
}
