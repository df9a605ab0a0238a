//! After connecting to an MX host: whether the message may be sent, from
//! the host's [`DanePlan`] and what the connection showed (RFC 7672
//! sections 2.2 and 3). With a secure TLSA RRset (usable or not) a host
//! that does not offer STARTTLS is never used for that message; a usable
//! TLSA set that does not match the certificate means that host is never
//! used, not even in cleartext; without DANE, a failed handshake means
//! retry the same host in cleartext (pre-DANE opportunistic TLS).

use super::decision::{DanePlan, SkipReason};
use super::verify::{DaneFailure, DaneMatch};

/// What happened when the SMTP client connected to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// The EHLO reply did not list STARTTLS.
    StartTlsNotOffered,
    /// The handshake failed; `dane` holds the verifier's reason if the
    /// certificate check was what failed (see [`super::dane_failure`]).
    HandshakeFailed {
        dane: Option<DaneFailure>,
        detail: String,
    },
    /// TLS is up; `dane` is the verifier's match under `Authenticate`.
    TlsEstablished { dane: Option<DaneMatch> },
}

/// What the SMTP client does next with this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionVerdict {
    /// Send the message in cleartext (opportunistic, no STARTTLS).
    SendCleartext,
    /// Send over the established TLS session.
    SendOverTls { authenticated: Option<DaneMatch> },
    /// Opportunistic: the handshake failed, reconnect to the same host
    /// and send without STARTTLS.
    RetryCleartext,
    /// Never send to this host for this message; try the next MX.
    NextMx(SkipReason),
}

/// The post-connection rows of the table (RFC 7672 sections 2.2 and 3).
pub fn connection_verdict(plan: &DanePlan, event: &ConnectionEvent) -> ConnectionVerdict {
    use ConnectionEvent as E;
    use ConnectionVerdict as V;
    match (plan, event) {
        (DanePlan::Skip(why), _) => V::NextMx(why.clone()),
        (DanePlan::Opportunistic(_), E::StartTlsNotOffered) => V::SendCleartext,
        (DanePlan::Opportunistic(_), E::HandshakeFailed { .. }) => V::RetryCleartext,
        (DanePlan::Opportunistic(_), E::TlsEstablished { .. }) => V::SendOverTls {
            authenticated: None,
        },
        (
            DanePlan::Authenticate { .. } | DanePlan::EncryptUnauthenticated { .. },
            E::StartTlsNotOffered,
        ) => V::NextMx(SkipReason::StartTlsNotOffered),
        (
            DanePlan::Authenticate { .. },
            E::HandshakeFailed {
                dane: Some(failure),
                ..
            },
        ) => V::NextMx(SkipReason::DaneAuthenticationFailed(failure.clone())),
        (
            DanePlan::Authenticate { .. } | DanePlan::EncryptUnauthenticated { .. },
            E::HandshakeFailed { detail, .. },
        ) => V::NextMx(SkipReason::TlsFailed {
            detail: detail.clone(),
        }),
        (
            DanePlan::Authenticate { .. },
            E::TlsEstablished {
                dane: Some(matched),
            },
        ) => V::SendOverTls {
            authenticated: Some(matched.clone()),
        },
        // A session without a DANE match under Authenticate means the
        // verifier was not used: never send.
        (DanePlan::Authenticate { tlsa, .. }, E::TlsEstablished { dane: None }) => {
            V::NextMx(SkipReason::DaneAuthenticationFailed(DaneFailure::NoMatch {
                records: tlsa.len(),
            }))
        }
        (DanePlan::EncryptUnauthenticated { .. }, E::TlsEstablished { .. }) => V::SendOverTls {
            authenticated: None,
        },
    }
}
