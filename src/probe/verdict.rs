//! What each security level would do with each MX address, and with the
//! destination as a whole, from the gathered [`ProbeFacts`]. Pure
//! functions over facts that call the delivery engine's own decisions
//! (`delivery::decision`), so the probe says what delivery does:
//!
//! - before connecting, each host's TLS under the level
//!   ([`plain_host`], [`dane_host`] over the RFC 7672 plan, [`mta_sts_host`]
//!   with DANE precedence, RFC 8461 section 2), or why the level skips it;
//! - after connecting, [`connection_verdict`] over what the session showed,
//!   read as the hop's verifier would have judged the certificate the
//!   probe recorded (the DANE matcher for DANE hops, WebPKI for MTA-STS
//!   enforce, none otherwise).
//!
//! A level delivers to the destination when one address of one MX (in MX
//! order) would take the mail; otherwise it defers, with every address's
//! reason.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use super::facts::{HostFacts, ProbeFacts, SessionFacts, SessionOutcome};
use crate::dane::{DaneFailure, DaneMatch, DestinationOutcome, DestinationPlan};
pub use crate::delivery::decision::TlsProblem;
use crate::delivery::decision::{
    connection_verdict, dane_host, mta_sts_host, plain_host, CertRejection, ConnectionEvent,
    ConnectionVerdict, Hop, HopTls, HostSkip, NotUsed,
};
use crate::dns::Lookup;
use crate::mta_sts::CertOutcome;
use crate::policy::{MinTlsVersion, SecurityLevel};
use crate::smtp::client::TlsAuthentication;

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

    fn of(verdict: &ConnectionVerdict) -> (Action, TlsAuthentication) {
        match verdict {
            ConnectionVerdict::SendOverTls { authenticated, .. } => {
                (Action::DeliverTls, *authenticated)
            }
            ConnectionVerdict::SendCleartext(_) => {
                (Action::DeliverCleartext, TlsAuthentication::None)
            }
            ConnectionVerdict::RetryCleartext(_) => {
                (Action::RetryCleartext, TlsAuthentication::None)
            }
            ConnectionVerdict::NotUsed(_) => (Action::NotUsed, TlsAuthentication::None),
        }
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

/// Why a level decided as it did, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The MX host has no address to connect to.
    NoAddress { detail: String },
    /// The level does not contact this host (its DANE plan or the MTA-STS
    /// policy rules it out).
    HostSkipped(HostSkip),
    /// `mandatory-dane` decided for the whole destination before any host
    /// (e.g. the MX records are not DNSSEC-signed).
    DaneDestination(DestinationOutcome),
    /// The TLS parameters of the hop cannot be built (e.g. a host name
    /// that is not a valid server name).
    Setup { detail: String },
    /// The delivery engine's verdict on the session under the hop's TLS;
    /// `dane`: the TLSA record that matched; `precedence` when DANE
    /// decides for `mta-sts` (RFC 8461 section 2).
    Connection {
        tls: HopTls,
        verdict: ConnectionVerdict,
        dane: Option<DaneMatch>,
        precedence: bool,
    },
}

impl Reason {
    /// A stable word for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoAddress { .. } => "no-address",
            Reason::HostSkipped(HostSkip::Dane(_)) => "dane",
            Reason::HostSkipped(HostSkip::MtaSts(_)) => "mta-sts",
            Reason::DaneDestination(_) => "dane-destination",
            Reason::Setup { .. } => "session-failed",
            Reason::Connection { tls, verdict, .. } => match (verdict, tls) {
                (ConnectionVerdict::NotUsed(NotUsed::NoSession { .. }), _) => "session-failed",
                (_, HopTls::Dane(_)) | (ConnectionVerdict::NotUsed(NotUsed::Dane(_)), _) => "dane",
                (_, HopTls::WebPki) | (ConnectionVerdict::NotUsed(NotUsed::MtaSts(_)), _) => {
                    "mta-sts"
                }
                (ConnectionVerdict::SendOverTls { .. }, _) => "tls",
                (ConnectionVerdict::NotUsed(_), _) => "tls-required",
                _ => "cleartext",
            },
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoAddress { detail } => write!(f, "no address to connect to: {detail}"),
            Reason::HostSkipped(why) => write!(f, "host not contacted: {why}"),
            Reason::DaneDestination(outcome) => {
                write!(f, "decided for the whole destination: {outcome}")
            }
            Reason::Setup { detail } => write!(f, "no TLS parameters: {detail}"),
            Reason::Connection {
                tls,
                verdict,
                dane,
                precedence,
            } => {
                if *precedence {
                    f.write_str("DANE takes precedence over MTA-STS (RFC 8461 section 2): ")?;
                }
                match (verdict, dane) {
                    (ConnectionVerdict::SendOverTls { .. }, Some(matched)) => {
                        write!(f, "{matched}")
                    }
                    _ => write!(f, "{verdict} ({tls})"),
                }
            }
        }
    }
}

/// What a level would do with one MX address, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressVerdict {
    pub level: SecurityLevel,
    pub action: Action,
    /// What authenticated the server (DANE, WebPKI), when the level
    /// authenticates.
    pub authentication: TlsAuthentication,
    pub reason: Reason,
}

impl fmt::Display for AddressVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        match self.authentication {
            TlsAuthentication::None if self.action == Action::DeliverTls => {
                f.write_str(" (unauthenticated)")?
            }
            TlsAuthentication::None => {}
            TlsAuthentication::Dane => f.write_str(", authenticated by DANE")?,
            TlsAuthentication::WebPki => f.write_str(", authenticated by WebPKI")?,
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
pub(crate) enum LevelOutcome {
    /// The first address (in MX order) that would take the mail.
    Deliver {
        mx: String,
        addr: SocketAddr,
        action: Action,
        authentication: TlsAuthentication,
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
                    TlsAuthentication::Dane => f.write_str(", authenticated by DANE"),
                    TlsAuthentication::WebPki => f.write_str(", authenticated by WebPKI"),
                    TlsAuthentication::None => Ok(()),
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
pub(crate) fn address_verdict(
    level: SecurityLevel,
    min_tls: MinTlsVersion,
    facts: &ProbeFacts,
    host: &HostFacts,
    session: &SessionFacts,
) -> AddressVerdict {
    let (action, authentication, reason) = decide(level, min_tls, facts, host, session);
    AddressVerdict {
        level,
        action,
        authentication,
        reason,
    }
}

/// What `level` would do with the destination: the first address that
/// takes the mail, else a deferral with every address's reason.
pub(crate) fn level_outcome(
    level: SecurityLevel,
    min_tls: MinTlsVersion,
    facts: &ProbeFacts,
) -> LevelOutcome {
    if let Some(plan) = dane_plan(level, facts) {
        if plan.mx.is_empty() {
            if let DestinationOutcome::Defer(_) | DestinationOutcome::Fail(_) = &plan.outcome {
                return LevelOutcome::DeferDestination(plan.outcome.clone());
            }
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

/// The RFC 7672 plan a level reads: the opportunistic one for
/// `opportunistic-dane` and `mta-sts`, the mandatory one for
/// `mandatory-dane`.
fn dane_plan(level: SecurityLevel, facts: &ProbeFacts) -> Option<&DestinationPlan> {
    match level {
        SecurityLevel::OpportunisticDane | SecurityLevel::MtaSts => Some(&facts.dane_opportunistic),
        SecurityLevel::MandatoryDane => Some(&facts.dane_mandatory),
        SecurityLevel::Opportunistic | SecurityLevel::Mandatory => None,
    }
}

type Decision = (Action, TlsAuthentication, Reason);

fn not_used(reason: Reason) -> Decision {
    (Action::NotUsed, TlsAuthentication::None, reason)
}

/// The host's TLS under `level` (the planner's functions), then the
/// engine's verdict on the session.
fn decide(
    level: SecurityLevel,
    min_tls: MinTlsVersion,
    facts: &ProbeFacts,
    host: &HostFacts,
    session: &SessionFacts,
) -> Decision {
    let mx = host.host.exchange.as_str();
    let tls = match dane_plan(level, facts) {
        None => Ok(plain_host(level)),
        Some(destination) => {
            let Some(plan) = host.dane_plan(destination) else {
                return not_used(Reason::DaneDestination(destination.outcome.clone()));
            };
            if level == SecurityLevel::MtaSts {
                mta_sts_host(plan, facts.mta_sts.policy(), mx)
            } else {
                dane_host(plan)
            }
        }
    };
    let tls = match tls {
        Ok(tls) => tls,
        Err(skip) => return not_used(Reason::HostSkipped(skip)),
    };
    let hop = Hop {
        host: mx.to_string(),
        addresses: vec![session.addr],
        tls,
        min_tls,
    };
    let params = match hop.params_for_verdict() {
        Ok(params) => params,
        Err(e) => {
            return not_used(Reason::Setup {
                detail: e.to_string(),
            })
        }
    };
    let event = event(&hop.tls, &session.outcome);
    let verdict = connection_verdict(&hop, &params, &event);
    let (action, authentication) = Action::of(&verdict);
    let dane = match (&hop.tls, session.outcome.certificate()) {
        (HopTls::Dane(_), Some(check)) => check.dane.clone().and_then(Result::ok),
        _ => None,
    };
    let precedence = level == SecurityLevel::MtaSts && matches!(hop.tls, HopTls::Dane(_));
    let reason = Reason::Connection {
        tls: hop.tls,
        verdict,
        dane,
        precedence,
    };
    (action, authentication, reason)
}

/// What the session would have shown under the hop's verifier: the probe
/// accepted every certificate and recorded what the DANE and WebPKI
/// verifiers said, so a DANE hop's handshake fails where the DANE check
/// failed, an MTA-STS enforce hop's where WebPKI did, and other hops
/// ignore both (they do not authenticate).
fn event(tls: &HopTls, outcome: &SessionOutcome) -> ConnectionEvent {
    match outcome {
        SessionOutcome::Failed { detail } => ConnectionEvent::NoSession {
            detail: detail.clone(),
        },
        SessionOutcome::StartTlsNotOffered => ConnectionEvent::StartTlsNotOffered,
        SessionOutcome::StartTlsRefused { reply } => ConnectionEvent::StartTlsRefused {
            reply: reply.clone(),
        },
        SessionOutcome::HandshakeFailed { detail, .. } => ConnectionEvent::HandshakeFailed {
            rejected: None,
            detail: detail.clone(),
        },
        SessionOutcome::Tls {
            version,
            certificate,
            ..
        } => {
            let established = |authenticated| ConnectionEvent::Tls {
                version: *version,
                authenticated,
            };
            let refused =
                |rejected: CertRejection, detail: String| ConnectionEvent::HandshakeFailed {
                    rejected: Some(rejected),
                    detail,
                };
            match tls {
                HopTls::Dane(_) => match certificate.as_ref().and_then(|c| c.dane.clone()) {
                    Some(Ok(_)) => established(TlsAuthentication::Dane),
                    Some(Err(failure)) => {
                        let detail = failure.to_string();
                        refused(CertRejection::Dane(failure), detail)
                    }
                    None => refused(
                        CertRejection::Dane(DaneFailure::NoCertificate),
                        "the DANE verifier saw no certificate".into(),
                    ),
                },
                HopTls::WebPki | HopTls::RouteWebPki => {
                    match certificate.as_ref().and_then(|c| c.webpki.clone()) {
                        Some(CertOutcome::Valid) => established(TlsAuthentication::WebPki),
                        Some(CertOutcome::Invalid(problem)) => {
                            let detail = problem.to_string();
                            refused(CertRejection::WebPki(problem), detail)
                        }
                        Some(CertOutcome::HandshakeFailed(detail)) => {
                            ConnectionEvent::HandshakeFailed {
                                rejected: None,
                                detail,
                            }
                        }
                        None => ConnectionEvent::HandshakeFailed {
                            rejected: None,
                            detail: "no certificate was checked".into(),
                        },
                    }
                }
                HopTls::Opportunistic | HopTls::Unauthenticated => {
                    established(TlsAuthentication::None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
