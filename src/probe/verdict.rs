//! What each security level would do with each MX address, and with the
//! destination as a whole, from the gathered [`ProbeFacts`]. Pure
//! functions over facts; the rules are those of the delivery engine's
//! building blocks, reused rather than restated:
//!
//! - `opportunistic`: TLS when STARTTLS is offered, cleartext otherwise; a
//!   failed handshake (or a session below the minimum TLS version) is
//!   retried in cleartext (RFC 7435, `RFC-NOTES.md`).
//! - `mandatory`: TLS at or above the minimum version, certificate not
//!   checked; otherwise that MX is not used.
//! - `opportunistic-dane` / `mandatory-dane`: the RFC 7672 plan of
//!   [`crate::dane::plan_destination`] and
//!   [`crate::dane::connection_verdict`] for what the session showed.
//! - `mta-sts`: DANE where usable TLSA records exist (RFC 8461 section 2,
//!   [`governing_mechanism`]), else [`plan_mx`] and [`decide_mx`]
//!   (RFC 8461 section 4) with the WebPKI result for the MX name.
//!
//! A level delivers to the destination when one address of one MX (in MX
//! order) would take the mail; otherwise it defers, with every address's
//! reason.

use std::fmt;
use std::net::SocketAddr;

use rustls::ProtocolVersion;
use serde::Serialize;

use super::facts::{version_name, HostFacts, ProbeFacts, SessionFacts, SessionOutcome};
use crate::dane::{
    connection_verdict, ConnectionEvent, ConnectionVerdict, DanePlan, DestinationOutcome,
    DestinationPlan, SkipReason,
};
use crate::dns::Lookup;
use crate::mta_sts::{
    decide_mx, governing_mechanism, plan_mx, CertOutcome, DaneSummary, Governing, Mode, MxFacts,
    MxPlan, MxVerdict,
};
use crate::policy::{MinTlsVersion, SecurityLevel};
use crate::smtp::client::Authentication;

/// What a level would do with one MX address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Send over the TLS session.
    DeliverTls,
    /// Send in cleartext on this session (STARTTLS not offered or refused).
    DeliverCleartext,
    /// Reconnect without STARTTLS and send in cleartext (the handshake
    /// failed, or TLS came up below the minimum version).
    RetryCleartext,
    /// Never send to this address under this level; the next one is tried,
    /// and when none is left the message waits.
    NotUsed,
}

impl Action {
    pub fn delivers(self) -> bool {
        self != Action::NotUsed
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::DeliverTls => "deliver over TLS",
            Action::DeliverCleartext => "deliver in cleartext",
            Action::RetryCleartext => "deliver in cleartext (reconnect without STARTTLS)",
            Action::NotUsed => "not used",
        })
    }
}

/// Why TLS did not come up as a level wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    NotOffered,
    Refused {
        reply: String,
    },
    Handshake {
        detail: String,
    },
    BelowMinimum {
        negotiated: ProtocolVersion,
        minimum: MinTlsVersion,
    },
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsProblem::NotOffered => f.write_str("STARTTLS not offered"),
            TlsProblem::Refused { reply } => write!(f, "STARTTLS refused: {reply}"),
            TlsProblem::Handshake { detail } => write!(f, "TLS handshake failed: {detail}"),
            TlsProblem::BelowMinimum {
                negotiated,
                minimum,
            } => write!(
                f,
                "{} negotiated, below the minimum {minimum} (counts as no TLS)",
                version_name(*negotiated)
            ),
        }
    }
}

/// Why a level decided as it did, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The MX host has no address to connect to.
    NoAddress { detail: String },
    /// No SMTP session could be had.
    SessionFailed { detail: String },
    /// TLS is up; the level does not authenticate the certificate.
    Tls {
        version: ProtocolVersion,
        cipher: Option<String>,
    },
    /// The level allows cleartext and TLS did not come up.
    Cleartext(TlsProblem),
    /// The level requires TLS and it did not come up.
    TlsRequired(TlsProblem),
    /// The RFC 7672 plan for the host and the verdict for the session;
    /// `precedence` when this decides for `mta-sts` (RFC 8461 section 2).
    Dane {
        plan: DanePlan,
        verdict: ConnectionVerdict,
        precedence: bool,
    },
    /// `mandatory-dane` decided for the whole destination before any host
    /// (e.g. the MX records are not DNSSEC-signed).
    DaneDestination(DestinationOutcome),
    /// The RFC 8461 verdict for the MX.
    MtaSts(MxVerdict),
}

impl Reason {
    /// A stable word for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoAddress { .. } => "no-address",
            Reason::SessionFailed { .. } => "session-failed",
            Reason::Tls { .. } => "tls",
            Reason::Cleartext(_) => "cleartext",
            Reason::TlsRequired(_) => "tls-required",
            Reason::Dane { .. } => "dane",
            Reason::DaneDestination(_) => "dane-destination",
            Reason::MtaSts(_) => "mta-sts",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoAddress { detail } => write!(f, "no address to connect to: {detail}"),
            Reason::SessionFailed { detail } => write!(f, "no SMTP session: {detail}"),
            Reason::Tls { version, cipher } => {
                write!(f, "STARTTLS, {}", version_name(*version))?;
                if let Some(cipher) = cipher {
                    write!(f, " {cipher}")?;
                }
                f.write_str(", certificate not checked")
            }
            Reason::Cleartext(problem) => write!(f, "{problem}; cleartext allowed"),
            Reason::TlsRequired(problem) => write!(f, "TLS required: {problem}"),
            Reason::Dane {
                plan,
                verdict,
                precedence,
            } => {
                if *precedence {
                    f.write_str("DANE takes precedence over MTA-STS (RFC 8461 section 2): ")?;
                }
                match verdict {
                    ConnectionVerdict::SendOverTls {
                        authenticated: Some(matched),
                    } => write!(f, "{matched}"),
                    ConnectionVerdict::NextMx(why) => write!(f, "{why}"),
                    _ => write!(f, "{plan}"),
                }
            }
            Reason::DaneDestination(outcome) => {
                write!(f, "decided for the whole destination: {outcome}")
            }
            Reason::MtaSts(verdict) => write!(f, "{verdict}"),
        }
    }
}

/// What a level would do with one MX address, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressVerdict {
    pub level: SecurityLevel,
    pub action: Action,
    /// What authenticated the server (DANE, WebPKI), when the level
    /// authenticates.
    pub authentication: Authentication,
    pub reason: Reason,
}

impl fmt::Display for AddressVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        match self.authentication {
            Authentication::None if self.action == Action::DeliverTls => {
                f.write_str(" (unauthenticated)")?
            }
            Authentication::None => {}
            Authentication::Dane => f.write_str(", authenticated by DANE")?,
            Authentication::WebPki => f.write_str(", authenticated by WebPKI")?,
        }
        write!(f, ": {}", self.reason)
    }
}

/// One address's verdict inside a deferral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub mx: String,
    /// `None` when the host had no address.
    pub addr: Option<SocketAddr>,
    pub reason: Reason,
}

/// What a level would do with the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelOutcome {
    /// The first address (in MX order) that would take the mail.
    Deliver {
        mx: String,
        addr: SocketAddr,
        action: Action,
        authentication: Authentication,
    },
    /// Decided before any host (`mandatory-dane` with unsigned MX records).
    DeferDestination(DestinationOutcome),
    /// No address would take the mail: the message waits for a retry.
    Defer(Vec<Attempt>),
}

impl fmt::Display for LevelOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelOutcome::Deliver {
                mx,
                addr,
                action,
                authentication,
            } => {
                write!(f, "{action} via {mx} at {addr}")?;
                match authentication {
                    Authentication::Dane => f.write_str(", authenticated by DANE"),
                    Authentication::WebPki => f.write_str(", authenticated by WebPKI"),
                    Authentication::None => Ok(()),
                }
            }
            LevelOutcome::DeferDestination(outcome) => write!(f, "would {outcome}"),
            LevelOutcome::Defer(attempts) => {
                f.write_str("would defer: no usable MX")?;
                for (i, attempt) in attempts.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    match attempt.addr {
                        Some(addr) => write!(f, "{} at {addr}: {}", attempt.mx, attempt.reason)?,
                        None => write!(f, "{}: {}", attempt.mx, attempt.reason)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// What `level` would do with one session's address of `host`.
pub fn address_verdict(
    level: SecurityLevel,
    min_tls: MinTlsVersion,
    facts: &ProbeFacts,
    host: &HostFacts,
    session: &SessionFacts,
) -> AddressVerdict {
    let outcome = &session.outcome;
    let (action, authentication, reason) = match level {
        SecurityLevel::Opportunistic => plain(false, min_tls, outcome),
        SecurityLevel::Mandatory => plain(true, min_tls, outcome),
        SecurityLevel::OpportunisticDane => {
            dane(&facts.dane_opportunistic, host, min_tls, outcome, false)
        }
        SecurityLevel::MandatoryDane => dane(&facts.dane_mandatory, host, min_tls, outcome, false),
        SecurityLevel::MtaSts => mta_sts(facts, host, min_tls, outcome),
    };
    AddressVerdict {
        level,
        action,
        authentication,
        reason,
    }
}

/// What `level` would do with the destination: the first address that
/// takes the mail, else a deferral with every address's reason.
pub fn level_outcome(
    level: SecurityLevel,
    min_tls: MinTlsVersion,
    facts: &ProbeFacts,
) -> LevelOutcome {
    if level == SecurityLevel::MandatoryDane && facts.dane_mandatory.mx.is_empty() {
        if let DestinationOutcome::Defer(_) | DestinationOutcome::Fail(_) =
            &facts.dane_mandatory.outcome
        {
            return LevelOutcome::DeferDestination(facts.dane_mandatory.outcome.clone());
        }
    }
    let mut attempts = Vec::new();
    for host in &facts.hosts {
        if host.sessions.is_empty() {
            attempts.push(Attempt {
                mx: host.host.exchange.clone(),
                addr: None,
                reason: Reason::NoAddress {
                    detail: address_problem(&host.addresses.lookup),
                },
            });
        }
        for session in &host.sessions {
            let verdict = address_verdict(level, min_tls, facts, host, session);
            if verdict.action.delivers() {
                return LevelOutcome::Deliver {
                    mx: host.host.exchange.clone(),
                    addr: session.addr,
                    action: verdict.action,
                    authentication: verdict.authentication,
                };
            }
            attempts.push(Attempt {
                mx: host.host.exchange.clone(),
                addr: Some(session.addr),
                reason: verdict.reason,
            });
        }
    }
    LevelOutcome::Defer(attempts)
}

fn address_problem(lookup: &Lookup<std::net::IpAddr>) -> String {
    match lookup {
        Lookup::Records { .. } => "addresses not probed".to_string(),
        Lookup::NoData { .. } => "no A or AAAA records".to_string(),
        Lookup::NxDomain { .. } => "the host name does not exist".to_string(),
        Lookup::Failed(failure) => format!("address lookup failed: {failure}"),
    }
}

type Decision = (Action, Authentication, Reason);

/// The address is not used, for `reason`.
fn not_used(reason: Reason) -> Decision {
    (Action::NotUsed, Authentication::None, reason)
}

/// The session to the address failed before TLS came into it.
fn session_failed(detail: &str) -> Decision {
    not_used(Reason::SessionFailed {
        detail: detail.to_string(),
    })
}

/// `opportunistic` (`required == false`) and `mandatory`.
fn plain(required: bool, min_tls: MinTlsVersion, outcome: &SessionOutcome) -> Decision {
    let problem = match outcome {
        SessionOutcome::Failed { detail } => return session_failed(detail),
        SessionOutcome::Tls {
            version, cipher, ..
        } if min_tls.accepts(*version) => {
            return (
                Action::DeliverTls,
                Authentication::None,
                Reason::Tls {
                    version: *version,
                    cipher: cipher.clone(),
                },
            )
        }
        SessionOutcome::Tls { version, .. } => TlsProblem::BelowMinimum {
            negotiated: *version,
            minimum: min_tls,
        },
        SessionOutcome::StartTlsNotOffered => TlsProblem::NotOffered,
        SessionOutcome::StartTlsRefused { reply } => TlsProblem::Refused {
            reply: reply.clone(),
        },
        SessionOutcome::HandshakeFailed { detail, .. } => TlsProblem::Handshake {
            detail: detail.clone(),
        },
    };
    cleartext_or_not(required, problem)
}

fn cleartext_or_not(required: bool, problem: TlsProblem) -> Decision {
    if required {
        return not_used(Reason::TlsRequired(problem));
    }
    let action = match problem {
        TlsProblem::Handshake { .. } | TlsProblem::BelowMinimum { .. } => Action::RetryCleartext,
        TlsProblem::NotOffered | TlsProblem::Refused { .. } => Action::DeliverCleartext,
    };
    (action, Authentication::None, Reason::Cleartext(problem))
}

/// The DANE levels (and `mta-sts` where DANE takes precedence).
fn dane(
    destination: &DestinationPlan,
    host: &HostFacts,
    min_tls: MinTlsVersion,
    outcome: &SessionOutcome,
    precedence: bool,
) -> Decision {
    let Some(plan) = host.dane_plan(destination) else {
        return not_used(Reason::DaneDestination(destination.outcome.clone()));
    };
    let reason = |verdict: ConnectionVerdict| Reason::Dane {
        plan: plan.clone(),
        verdict,
        precedence,
    };
    if let DanePlan::Skip(why) = plan {
        return not_used(reason(ConnectionVerdict::NextMx(why.clone())));
    }
    let event = match outcome {
        SessionOutcome::Failed { detail } => return session_failed(detail),
        SessionOutcome::Tls { version, .. } if !min_tls.accepts(*version) => {
            let problem = TlsProblem::BelowMinimum {
                negotiated: *version,
                minimum: min_tls,
            };
            return cleartext_or_not(plan.requires_tls(), problem);
        }
        SessionOutcome::StartTlsNotOffered | SessionOutcome::StartTlsRefused { .. } => {
            ConnectionEvent::StartTlsNotOffered
        }
        SessionOutcome::HandshakeFailed { detail, .. } => ConnectionEvent::HandshakeFailed {
            dane: None,
            detail: detail.clone(),
        },
        SessionOutcome::Tls { certificate, .. } => {
            let dane = certificate.as_ref().and_then(|c| c.dane.clone());
            match (plan, dane) {
                (DanePlan::Authenticate { .. }, Some(Err(failure))) => {
                    ConnectionEvent::HandshakeFailed {
                        detail: failure.to_string(),
                        dane: Some(failure),
                    }
                }
                (DanePlan::Authenticate { .. }, Some(Ok(matched))) => {
                    ConnectionEvent::TlsEstablished {
                        dane: Some(matched),
                    }
                }
                _ => ConnectionEvent::TlsEstablished { dane: None },
            }
        }
    };
    let verdict = connection_verdict(plan, &event);
    let (action, authentication) = match &verdict {
        ConnectionVerdict::SendCleartext => (Action::DeliverCleartext, Authentication::None),
        ConnectionVerdict::RetryCleartext => (Action::RetryCleartext, Authentication::None),
        ConnectionVerdict::SendOverTls {
            authenticated: Some(_),
        } => (Action::DeliverTls, Authentication::Dane),
        ConnectionVerdict::SendOverTls {
            authenticated: None,
        } => (Action::DeliverTls, Authentication::None),
        ConnectionVerdict::NextMx(_) => (Action::NotUsed, Authentication::None),
    };
    (action, authentication, reason(verdict))
}

/// What DANE says about the host, as far as MTA-STS precedence matters.
fn dane_summary(plan: Option<&DanePlan>, outcome: &SessionOutcome) -> DaneSummary {
    match plan {
        Some(DanePlan::Authenticate { .. }) => {
            match outcome.certificate().and_then(|c| c.dane.as_ref()) {
                Some(Ok(_)) => DaneSummary::Authenticated,
                _ => DaneSummary::Failed,
            }
        }
        Some(DanePlan::Skip(SkipReason::TlsaLookupFailed { .. })) => DaneSummary::Failed,
        _ => DaneSummary::NotApplicable,
    }
}

fn mta_sts(
    facts: &ProbeFacts,
    host: &HostFacts,
    min_tls: MinTlsVersion,
    outcome: &SessionOutcome,
) -> Decision {
    let dane_plan = host.dane_plan(&facts.dane_opportunistic);
    if governing_mechanism(dane_summary(dane_plan, outcome)) == Governing::Dane {
        return dane(&facts.dane_opportunistic, host, min_tls, outcome, true);
    }
    let policy = facts.mta_sts.policy();
    let mx = host.host.exchange.as_str();
    if let MxPlan::Skip(failure) = plan_mx(policy, mx) {
        return not_used(Reason::MtaSts(MxVerdict::Skip(failure)));
    }
    let certificate = match outcome {
        SessionOutcome::Failed { detail } => return session_failed(detail),
        SessionOutcome::StartTlsNotOffered | SessionOutcome::StartTlsRefused { .. } => None,
        SessionOutcome::HandshakeFailed { detail, .. } => {
            Some(CertOutcome::HandshakeFailed(detail.clone()))
        }
        SessionOutcome::Tls { certificate, .. } => Some(
            certificate
                .as_ref()
                .and_then(|c| c.webpki.clone())
                .unwrap_or_else(|| {
                    CertOutcome::HandshakeFailed("no certificate was checked".to_string())
                }),
        ),
    };
    let mx_facts = MxFacts {
        starttls_offered: !matches!(
            outcome,
            SessionOutcome::StartTlsNotOffered | SessionOutcome::StartTlsRefused { .. }
        ),
        certificate,
    };
    let verdict = decide_mx(policy, mx, &mx_facts);
    match &verdict {
        MxVerdict::DeliverWebPki { mode } => match outcome {
            SessionOutcome::Tls { version, .. } if !min_tls.accepts(*version) => {
                let problem = TlsProblem::BelowMinimum {
                    negotiated: *version,
                    minimum: min_tls,
                };
                cleartext_or_not(*mode == Mode::Enforce, problem)
            }
            _ => (
                Action::DeliverTls,
                Authentication::WebPki,
                Reason::MtaSts(verdict),
            ),
        },
        MxVerdict::Skip(_) => not_used(Reason::MtaSts(verdict)),
        MxVerdict::Opportunistic(_) => {
            let (action, authentication, _) = plain(false, min_tls, outcome);
            (action, authentication, Reason::MtaSts(verdict))
        }
    }
}

#[cfg(test)]
mod tests;
