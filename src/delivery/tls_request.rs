//! The sender's TLS request of a message (RFC 8689, stored with it as
//! [`TlsRequest`]) applied to its delivery, as pure functions (and
//! [`log_change`], the log line of what the request changed):
//!
//! - `REQUIRETLS` (section 4.2.1): the message goes only to a host whose
//!   TLS is authenticated: by DANE (RFC 7672), or by WebPKI under an
//!   MTA-STS policy in `enforce` mode (RFC 8461); and only if that host
//!   advertises REQUIRETLS after STARTTLS (checked by the SMTP client,
//!   which then puts `REQUIRETLS` on MAIL FROM). To find such hosts the
//!   destination is planned under `mta-sts` (DANE where usable TLSA
//!   records exist, else the MTA-STS policy) whatever the configured
//!   level, except `mandatory-dane`, which already authenticates every
//!   host and is kept. Inbound mail goes to its route's hosts, which are
//!   authenticated only under `route.authenticate = "webpki"`. A host the
//!   plan cannot authenticate (opportunistic or unauthenticated TLS, a
//!   route without `authenticate`) is never contacted ([`unfit`], status
//!   5.7.10). There is never a cleartext fallback.
//! - `TLS-Required: No` (section 3 and 4.2.2): the recipient's own policy
//!   is relaxed: `opportunistic-dane` and `mta-sts` are planned as
//!   `opportunistic` (STARTTLS when offered, certificate not checked), so
//!   a DANE or MTA-STS failure no longer holds the message back. A level
//!   the operator made mandatory for the peer (`mandatory`,
//!   `mandatory-dane`) is never relaxed.

use sealpost_queue::TlsRequest;
use tracing::info;

use super::decision::{Hop, HopTls};
use super::plan::Effective;
use super::reason::{status, LocalCause, Place, Reason};
use crate::policy::SecurityLevel;

/// What the sender's request did to the configured policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The configured level applies as it is.
    Kept,
    /// REQUIRETLS: planned under a level that authenticates, instead of
    /// `from`.
    Required { from: SecurityLevel },
    /// `TLS-Required: No`: the recipient's policy `from` relaxed to
    /// `opportunistic`.
    Relaxed { from: SecurityLevel },
    /// `TLS-Required: No` asked for, and the operator's mandatory `level`
    /// kept.
    MandatoryKept { level: SecurityLevel },
}

/// The policy a message is planned under, and how its request changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    pub effective: Effective,
    pub change: Change,
}

/// The policy to plan a message under: `effective` (the configured level
/// for its peer) as the sender's `request` changes it (module docs).
pub(crate) fn plan_under(effective: Effective, request: TlsRequest) -> Planned {
    let level = effective.level;
    let (to, change) = match (request, level) {
        (TlsRequest::RequireTls, SecurityLevel::MandatoryDane | SecurityLevel::MtaSts) => {
            (level, Change::Kept)
        }
        (TlsRequest::RequireTls, from) => (SecurityLevel::MtaSts, Change::Required { from }),
        (TlsRequest::TlsOptional, SecurityLevel::OpportunisticDane | SecurityLevel::MtaSts) => (
            SecurityLevel::Opportunistic,
            Change::Relaxed { from: level },
        ),
        (TlsRequest::TlsOptional, SecurityLevel::Mandatory | SecurityLevel::MandatoryDane) => {
            (level, Change::MandatoryKept { level })
        }
        (TlsRequest::TlsOptional | TlsRequest::None, _) => (level, Change::Kept),
    };
    Planned {
        effective: Effective {
            level: to,
            min_tls: effective.min_tls,
        },
        change,
    }
}

/// Whether a host's planned TLS authenticates the server, as REQUIRETLS
/// needs (RFC 8689 section 4.2.1, steps 2 and 4).
pub fn authenticated(tls: &HopTls) -> bool {
    match tls {
        HopTls::Dane(_) | HopTls::WebPki | HopTls::RouteWebPki => true,
        HopTls::Opportunistic | HopTls::Unauthenticated => false,
    }
}

/// Why a REQUIRETLS message does not go to `hop` (its TLS cannot be
/// authenticated): RFC 8689 section 4.2.1, "Unable to establish
/// TLS-protected SMTP session", 5.7.10.
pub(crate) fn unfit(hop: &Hop) -> Reason {
    Reason::Local {
        cause: LocalCause::RequireTls,
        status: status::REQUIRETLS_NO_AUTHENTICATED_TLS,
        place: Place::host(&hop.host),
        detail: format!(
            "REQUIRETLS: no authenticated TLS to this host (DANE, MTA-STS enforce, or a route with authenticate = \"webpki\"), the plan offers {}",
            hop.tls
        ),
    }
}

/// Logs what the sender's request changed in the policy of an attempt
/// to `destination` (the lines `docs/smtp.md` names).
pub(crate) fn log_change(destination: &str, change: Change) {
    match change {
        Change::Kept => {}
        Change::Required { from } => info!(
            destination,
            level = from.as_str(),
            planned = SecurityLevel::MtaSts.as_str(),
            "REQUIRETLS: only hosts authenticated by DANE or MTA-STS are used"
        ),
        Change::Relaxed { from } => info!(
            destination,
            level = from.as_str(),
            relaxed_to = SecurityLevel::Opportunistic.as_str(),
            "TLS-Required: No relaxes the recipient's TLS policy"
        ),
        Change::MandatoryKept { level } => info!(
            destination,
            level = level.as_str(),
            "TLS-Required: No does not relax a mandatory level"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MinTlsVersion;

    fn at(level: SecurityLevel) -> Effective {
        Effective {
            level,
            min_tls: MinTlsVersion::Tls12,
        }
    }

    #[test]
    fn the_request_and_the_configured_level_as_a_table() {
        use SecurityLevel::*;
        use TlsRequest::{None as NoRequest, RequireTls, TlsOptional};
        // (request, configured level, planned level, change)
        let table: &[(TlsRequest, SecurityLevel, SecurityLevel, Change)] = &[
            (NoRequest, Opportunistic, Opportunistic, Change::Kept),
            (NoRequest, MtaSts, MtaSts, Change::Kept),
            (NoRequest, MandatoryDane, MandatoryDane, Change::Kept),
            // REQUIRETLS looks for DANE or MTA-STS whatever the level ...
            (
                RequireTls,
                Opportunistic,
                MtaSts,
                Change::Required {
                    from: Opportunistic,
                },
            ),
            (
                RequireTls,
                Mandatory,
                MtaSts,
                Change::Required { from: Mandatory },
            ),
            (
                RequireTls,
                OpportunisticDane,
                MtaSts,
                Change::Required {
                    from: OpportunisticDane,
                },
            ),
            (RequireTls, MtaSts, MtaSts, Change::Kept),
            // ... and never weakens the operator's DANE requirement.
            (RequireTls, MandatoryDane, MandatoryDane, Change::Kept),
            // TLS-Required: No relaxes the recipient's policy ...
            (
                TlsOptional,
                OpportunisticDane,
                Opportunistic,
                Change::Relaxed {
                    from: OpportunisticDane,
                },
            ),
            (
                TlsOptional,
                MtaSts,
                Opportunistic,
                Change::Relaxed { from: MtaSts },
            ),
            (TlsOptional, Opportunistic, Opportunistic, Change::Kept),
            // ... never a mandatory level.
            (
                TlsOptional,
                Mandatory,
                Mandatory,
                Change::MandatoryKept { level: Mandatory },
            ),
            (
                TlsOptional,
                MandatoryDane,
                MandatoryDane,
                Change::MandatoryKept {
                    level: MandatoryDane,
                },
            ),
        ];
        for (request, level, planned, change) in table {
            let got = plan_under(at(*level), *request);
            assert_eq!(
                got,
                Planned {
                    effective: at(*planned),
                    change: *change
                },
                "{request:?} under {level:?}"
            );
        }
    }

    #[test]
    fn only_dane_and_webpki_hosts_can_carry_requiretls() {
        let hop = |tls| Hop {
            host: "mx.example.net".into(),
            addresses: vec![],
            tls,
            min_tls: MinTlsVersion::Any,
        };
        assert!(authenticated(&HopTls::WebPki));
        assert!(authenticated(&HopTls::RouteWebPki));
        let dane = HopTls::Dane(super::super::decision::DaneAuth {
            tlsa: vec![],
            reference_names: vec!["mx.example.net".into()],
            tlsa_name: "_25._tcp.mx.example.net".into(),
        });
        assert!(authenticated(&dane));
        for tls in [HopTls::Opportunistic, HopTls::Unauthenticated] {
            assert!(!authenticated(&tls), "{tls}");
            let reason = unfit(&hop(tls));
            assert_eq!(
                reason.status(),
                Some(status::REQUIRETLS_NO_AUTHENTICATED_TLS)
            );
            assert_eq!(reason.group().cause, "requiretls");
            assert!(reason.to_string().starts_with("mx.example.net: REQUIRETLS"));
        }
    }
}
