//! Why a delivery attempt ended as it did: one typed [`Reason`] (defined
//! with the queue, which stores it), built here from what the engine saw:
//!
//! - a remote reply, kept with its host and address (RFC 3464
//!   `Remote-MTA`, `Diagnostic-Code`);
//! - a local cause with its RFC 3463 status (null MX, a DNS failure, a
//!   refused connection, TLS the policy requires and the host lacks);
//! - a certificate DANE refused (RFC 7672) or one an MTA-STS enforce
//!   policy refused (RFC 8461), in the RFC 8460 vocabulary;
//! - whether a failure means the destination is down for everyone or only
//!   refuses one policy's TLS ([`Health`]), which decides what its
//!   destination actor pauses.
//!
//! The DSN, the logs, the admin socket and the metrics render the value;
//! nothing parses it back from text.

use crate::dane::{DaneFailure, DeferReason, FailReason, SkipReason};
use crate::mta_sts::{CertOutcome, CertProblem, MxFailure};
use crate::policy::SecurityLevel;
use crate::smtp::client::{ClientError, Peer};
use crate::smtp::{EnhancedCode, Reply};

pub use sealpost_queue::{LocalCause, Place, Reason, ReasonGroup, Status, TlsFailure};

/// Whether the destination could be reached at all, for its backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Some server answered a transaction (whatever it said).
    Reached,
    /// No host could be used: none answered (connection refused or lost,
    /// timeouts, DNS failures). The destination is down for every policy.
    Unreachable(Reason),
    /// A server answered (or the plan was decided) but the message's
    /// policy refused what it offers: STARTTLS missing or refused, TLS
    /// below the minimum, a certificate that fails DANE or MTA-STS, no
    /// usable MX under DANE or an MTA-STS policy. Mail under another
    /// policy may still be delivered to this destination.
    Refused(Reason),
    /// The attempt did not get as far as the network (a queue error).
    NotTried,
}

/// RFC 3463 statuses the engine gives its own causes.
pub mod status {
    use super::Status;
    /// X.1.2: bad destination system address (no such domain, no MX).
    pub(crate) const NO_MAIL_DOMAIN: Status = Status(5, 1, 2);
    /// RFC 7505 section 4.1 (with RFC 7504): null MX.
    pub(crate) const NULL_MX: Status = Status(5, 1, 10);
    /// X.4.1: no answer from host.
    pub(crate) const NO_ANSWER: Status = Status(4, 4, 1);
    /// X.4.2: bad connection.
    pub(crate) const BAD_CONNECTION: Status = Status(4, 4, 2);
    /// X.4.3: directory server failure (DNS).
    pub const DNS: Status = Status(4, 4, 3);
    /// X.4.4: unable to route.
    pub(crate) const NO_ROUTE: Status = Status(4, 4, 4);
    /// X.5.0: other or undefined protocol status.
    pub(crate) const PROTOCOL: Status = Status(4, 5, 0);
    /// X.7.0: other or undefined security status.
    pub(crate) const SECURITY: Status = Status(4, 7, 0);
    /// X.7.5: cryptographic failure.
    pub(crate) const CRYPTO: Status = Status(4, 7, 5);
    /// X.7.10: encryption needed (RFC 5248 registry).
    pub(crate) const ENCRYPTION_NEEDED: Status = Status(4, 7, 10);
    /// X.3.5: system incorrectly configured.
    pub(crate) const BAD_POLICY: Status = Status(4, 3, 5);
    /// RFC 8689 section 4.2.1: REQUIRETLS and no TLS-protected session
    /// authenticated by DANE or MTA-STS can be had ("Unable to establish
    /// TLS-protected SMTP session"). Permanent: the message is returned.
    pub(crate) const REQUIRETLS_NO_AUTHENTICATED_TLS: Status = Status(5, 7, 10);
    /// X.1.3: bad destination mailbox address syntax.
    pub(crate) const BAD_ADDRESS: Status = Status(5, 1, 3);
}

/// The queue's status from the SMTP layer's.
pub(crate) fn status_of(code: EnhancedCode) -> Status {
    Status(code.0, code.1, code.2)
}

/// The SMTP layer's status from the queue's.
pub fn enhanced(status: Status) -> EnhancedCode {
    EnhancedCode(status.0, status.1, status.2)
}

/// A remote reply kept with its host: `host [ip] said: 550 5.1.1 text`.
pub fn remote(peer: &Peer, reply: &Reply) -> Reason {
    Reason::Remote {
        host: peer.mx_host.clone(),
        ip: peer.addr.ip(),
        code: reply.code,
        status: reply.enhanced.map(status_of),
        text: reply.lines.join(" "),
    }
}

fn place(peer: &Peer) -> Place {
    Place::at(&peer.mx_host, peer.addr.ip()).from_local(peer.local.map(|l| l.ip()))
}

fn local_at(peer: &Peer, cause: LocalCause, status: Status, detail: String) -> Reason {
    Reason::Local {
        cause,
        status,
        place: place(peer),
        detail,
    }
}

/// The destination's health after the plan deferred it: under
/// `opportunistic` and `mandatory` only DNS can defer a plan (the domain
/// is unreachable for everyone); under the DANE levels and `mta-sts` the
/// deferral is that policy's verdict (TLSA or MTA-STS policy trouble, no
/// MX the policy allows), which other policies do not share.
pub(crate) fn plan_deferral_health(level: SecurityLevel, reason: Reason) -> Health {
    match level {
        SecurityLevel::Opportunistic | SecurityLevel::Mandatory => Health::Unreachable(reason),
        SecurityLevel::OpportunisticDane | SecurityLevel::MandatoryDane | SecurityLevel::MtaSts => {
            Health::Refused(reason)
        }
    }
}

/// A connection failure as a reason a person can act on: a certificate
/// DANE refused says which TLSA check failed, one an MTA-STS enforce
/// policy (`webpki`: the hop required WebPKI) refused says why in the
/// RFC 8460 vocabulary; a server's rejection is its reply; everything
/// else a local cause with its status.
pub(crate) fn connection_failure(webpki: bool, e: &ClientError) -> Reason {
    let peer = e.peer();
    match e {
        ClientError::Connect { source, .. } => local_at(
            peer,
            LocalCause::ConnectionFailed,
            status::NO_ANSWER,
            format!("connect failed: {source}"),
        ),
        ClientError::Timeout { stage, .. } => local_at(
            peer,
            LocalCause::Timeout,
            status::BAD_CONNECTION,
            format!("timed out at {stage}"),
        ),
        ClientError::Io { stage, source, .. } => local_at(
            peer,
            LocalCause::ConnectionFailed,
            status::BAD_CONNECTION,
            format!("I/O error at {stage}: {source}"),
        ),
        ClientError::Closed { stage, .. } => local_at(
            peer,
            LocalCause::ConnectionFailed,
            status::BAD_CONNECTION,
            format!("connection closed by the server at {stage}"),
        ),
        ClientError::NotUsable { .. } => local_at(
            peer,
            LocalCause::ConnectionFailed,
            status::BAD_CONNECTION,
            "connection is no longer usable".into(),
        ),
        ClientError::BadReply { stage, source, .. } => local_at(
            peer,
            LocalCause::ProtocolError,
            status::PROTOCOL,
            format!("malformed reply at {stage}: {source}"),
        ),
        ClientError::Rejected { reply, .. } => remote(peer, reply),
        ClientError::TlsNotOffered { .. } => local_at(
            peer,
            LocalCause::TlsNotOffered,
            status::ENCRYPTION_NEEDED,
            "TLS required and STARTTLS not offered".into(),
        ),
        ClientError::TlsBelowMinimum {
            negotiated,
            minimum,
            ..
        } => local_at(
            peer,
            LocalCause::TlsBelowMinimum,
            status::ENCRYPTION_NEEDED,
            format!("TLS {negotiated:?} is below the required minimum {minimum}"),
        ),
        ClientError::StartTlsInjection { .. } => local_at(
            peer,
            LocalCause::StartTlsInjection,
            status::SECURITY,
            "bytes after the STARTTLS reply before the handshake (response injection)".into(),
        ),
        ClientError::TlsConfig { source, .. } => local_at(
            peer,
            LocalCause::TlsSetup,
            status::CRYPTO,
            format!("invalid TLS configuration: {source}"),
        ),
        ClientError::TlsHandshakeFailed { source, .. } => {
            let tls = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            if let Some(tls) = tls {
                if let Some(failure) = crate::dane::dane_failure(tls) {
                    return Reason::Dane {
                        failure: dane_result(failure),
                        place: place(peer),
                        detail: failure.to_string(),
                    };
                }
                if webpki {
                    if let CertOutcome::Invalid(problem) = crate::mta_sts::verify::classify(tls) {
                        return Reason::MtaSts {
                            failure: cert_result(&problem),
                            place: place(peer),
                            detail: problem.to_string(),
                        };
                    }
                }
            }
            local_at(
                peer,
                LocalCause::TlsHandshakeFailed,
                status::CRYPTO,
                format!("TLS handshake failed: {source}"),
            )
        }
        // `ClientError` is non-exhaustive: a new variant reads as a
        // failed connection until it is given its own cause.
        #[allow(unreachable_patterns)]
        other => local_at(
            peer,
            LocalCause::ConnectionFailed,
            status::BAD_CONNECTION,
            other.to_string(),
        ),
    }
}

/// RFC 8460 section 4.3 for a DANE verifier's failure.
pub(crate) fn dane_result(failure: &DaneFailure) -> TlsFailure {
    match failure {
        DaneFailure::NoUsableRecords => TlsFailure::TlsaInvalid,
        DaneFailure::NoCertificate | DaneFailure::NoMatch { .. } => TlsFailure::ValidationFailure,
        DaneFailure::TaChainInvalid { .. } => TlsFailure::CertificateNotTrusted,
        DaneFailure::NameMismatch { .. } => TlsFailure::CertificateHostMismatch,
    }
}

/// RFC 8460 section 4.3 for a certificate MTA-STS refused.
pub(crate) fn cert_result(problem: &CertProblem) -> TlsFailure {
    match problem {
        CertProblem::HostMismatch => TlsFailure::CertificateHostMismatch,
        CertProblem::Expired => TlsFailure::CertificateExpired,
        CertProblem::NotTrusted => TlsFailure::CertificateNotTrusted,
        CertProblem::Other(_) => TlsFailure::ValidationFailure,
    }
}

/// RFC 8460 section 4.3 for an MX an MTA-STS policy refused.
pub(crate) fn mx_result(failure: &MxFailure) -> TlsFailure {
    match failure {
        MxFailure::NotInPolicy { .. } | MxFailure::Handshake { .. } => {
            TlsFailure::ValidationFailure
        }
        MxFailure::StartTlsNotOffered { .. } => TlsFailure::StarttlsNotSupported,
        MxFailure::Certificate { problem, .. } => cert_result(problem),
    }
}

/// The reason one MX host may not be used under DANE.
pub(crate) fn dane_skip(host: &str, why: &SkipReason) -> Reason {
    let dane = |failure| Reason::Dane {
        failure,
        place: Place::host(host),
        detail: why.to_string(),
    };
    match why {
        SkipReason::AddressLookupFailed(_) => Reason::Local {
            cause: LocalCause::DnsFailure,
            status: status::DNS,
            place: Place::host(host),
            detail: why.to_string(),
        },
        SkipReason::NoAddress => Reason::Local {
            cause: LocalCause::NoAddress,
            status: status::NO_ROUTE,
            place: Place::host(host),
            detail: why.to_string(),
        },
        SkipReason::TlsaLookupFailed { .. } => dane(TlsFailure::DnssecInvalid),
        // RFC 8460 section 4.3: DANE is required for every MX host and
        // this one has no DNSSEC-validated TLSA records (unsigned, or a
        // validated denial).
        SkipReason::DaneRequired(_) => dane(TlsFailure::DaneRequired),
        SkipReason::AllTlsaUnusable { .. } => dane(TlsFailure::TlsaInvalid),
        SkipReason::StartTlsNotOffered => dane(TlsFailure::StarttlsNotSupported),
        SkipReason::DaneAuthenticationFailed(failure) => dane(dane_result(failure)),
        SkipReason::TlsFailed { .. } => dane(TlsFailure::ValidationFailure),
    }
}

/// The reason the DANE planner deferred a whole destination: a failed MX
/// lookup, an insecure MX RRset under `mandatory-dane`, or no usable MX
/// (grouped by the last host's cause; the detail lists every host).
pub(crate) fn dane_deferral(domain: &str, why: &DeferReason) -> Reason {
    let detail = format!("{domain}: {why}");
    match why {
        DeferReason::MxLookupFailed(_) => {
            Reason::local(LocalCause::DnsFailure, status::DNS, detail)
        }
        // Under `mandatory-dane` an MX RRset that is not DNSSEC-validated
        // leaves no MX host with validated TLSA records: RFC 8460 section
        // 4.3's `dane-required`, as for one such host (`dane_skip`).
        DeferReason::MxInsecure => Reason::Dane {
            failure: TlsFailure::DaneRequired,
            place: Place::none(),
            detail,
        },
        DeferReason::NoUsableMx(hosts) => match hosts.last() {
            Some((host, skip)) => match dane_skip(host, skip) {
                Reason::Local { cause, status, .. } => Reason::Local {
                    cause,
                    status,
                    place: Place::none(),
                    detail,
                },
                Reason::Dane { failure, .. } => Reason::Dane {
                    failure,
                    place: Place::none(),
                    detail,
                },
                other => other,
            },
            None => Reason::local(LocalCause::NoAddress, status::NO_ROUTE, detail),
        },
    }
}

/// A permanent failure the DANE planner found: null MX, no mail domain.
pub fn dane_failure(domain: &str, why: &FailReason) -> Reason {
    let (cause, status) = match why {
        FailReason::NullMx => (LocalCause::NullMx, status::NULL_MX),
        FailReason::NoMailDomain { .. } => (LocalCause::NoMailDomain, status::NO_MAIL_DOMAIN),
    };
    Reason::local(cause, status, format!("{domain}: {why}"))
}

#[cfg(test)]
mod tests;
