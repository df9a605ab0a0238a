//! What delivery does with one MX host, decided in one place for the
//! engine and for `sealpost probe`:
//!
//! - before connecting, [`dane_host`], [`mta_sts_host`] and [`plain_host`]
//!   turn the level's evidence (the RFC 7672 [`DanePlan`], the RFC 8461
//!   policy) into the host's [`HopTls`], or say why the host is not
//!   contacted ([`HostSkip`]);
//! - after connecting, [`connection_verdict`] says, from what the
//!   connection showed ([`ConnectionEvent`]), whether the message goes over
//!   this session, in cleartext, after a cleartext reconnection, or not to
//!   this address at all. Its rows use the SMTP client's own STARTTLS and
//!   minimum-version rules ([`plan_starttls`], [`check_negotiated`],
//!   [`TlsParams::cleartext_retry`]).
//!
//! The planner ([`super::plan`]) and the attempt driver ([`super::attempt`])
//! call these with what DNS and the client returned; the probe calls them
//! with what it gathered and what its recording verifier saw, so a probe
//! predicts what delivery does by running the same code.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::ProtocolVersion;

use super::reason::{dane_skip, mx_result, status, LocalCause, Place, Reason};
use crate::dane::{DaneFailure, DanePlan, SkipReason, UsableTlsa};
use crate::mta_sts::{self, CertProblem, Mode, MxFailure, Policy, StsCertVerifier, StsMxPlan};
use crate::policy::{MinTlsVersion, SecurityLevel};
use crate::smtp::client::{
    check_negotiated, plan_starttls, Achieved, CleartextReason, ClientError, NegotiatedPlan, Stage,
    StartTlsPlan, TlsAuthentication, TlsParams, TlsRequirement,
};
use crate::smtp::ehlo::EhloCapabilities;

/// The TLS a hop requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopTls {
    /// STARTTLS when offered, cleartext otherwise.
    Opportunistic,
    /// TLS required, certificate not authenticated.
    Unauthenticated,
    /// TLS required, certificate authenticated by these TLSA records.
    Dane(DaneAuth),
    /// TLS required, certificate valid under WebPKI for the host name
    /// (MTA-STS enforce).
    WebPki,
    /// TLS required, certificate valid under WebPKI for the host as a
    /// route names it (`route.authenticate = "webpki"`).
    RouteWebPki,
}

impl fmt::Display for HopTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HopTls::Opportunistic => f.write_str("opportunistic TLS"),
            HopTls::Unauthenticated => f.write_str("TLS required, unauthenticated"),
            HopTls::Dane(auth) => write!(
                f,
                "DANE authentication with {} usable TLSA records at {}",
                auth.tlsa.len(),
                auth.tlsa_name
            ),
            HopTls::WebPki => f.write_str("TLS required, WebPKI-valid certificate (MTA-STS)"),
            HopTls::RouteWebPki => {
                f.write_str("TLS required, WebPKI-valid certificate for the route's host")
            }
        }
    }
}

/// What DANE authenticates a host with (RFC 7672 section 3): only an
/// `Authenticate` plan becomes one, so a hop under DANE always has a
/// verifier to build (never a quiet fall back to unauthenticated TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneAuth {
    pub tlsa: Vec<UsableTlsa>,
    /// Names a DANE-TA leaf may be valid for; the first is the SNI.
    pub reference_names: Vec<String>,
    pub tlsa_name: String,
}

/// One host to try, with every address in order.
#[derive(Debug, Clone)]
pub struct Hop {
    pub host: String,
    pub addresses: Vec<std::net::SocketAddr>,
    pub tls: HopTls,
    pub min_tls: MinTlsVersion,
}

/// Why a [`Hop`]'s TLS parameters could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("`{host}` is not a valid TLS server name")]
    BadName { host: String },
    #[error("no WebPKI roots are available (MTA-STS, authenticated routes)")]
    NoWebPki,
}

impl Hop {
    /// The client's TLS parameters for one connection attempt (a DANE or
    /// MTA-STS verifier records its outcome, so each attempt gets its own).
    pub fn params(
        &self,
        webpki: Option<&Arc<WebPkiServerVerifier>>,
    ) -> Result<TlsParams, HopError> {
        let mut name = self.host.as_str();
        let requirement = match &self.tls {
            HopTls::Opportunistic => TlsRequirement::Opportunistic,
            HopTls::Unauthenticated => TlsRequirement::RequireUnauthenticated,
            HopTls::Dane(auth) => {
                if let Some(sni) = auth.reference_names.first() {
                    name = sni;
                }
                let verifier = crate::dane::DaneVerifier::new(
                    auth.tlsa.clone(),
                    auth.reference_names.clone(),
                    &crate::tls::provider(),
                );
                TlsRequirement::RequireVerified {
                    verifier: Arc::new(verifier),
                    kind: TlsAuthentication::Dane,
                }
            }
            HopTls::WebPki | HopTls::RouteWebPki => {
                let inner = webpki.ok_or(HopError::NoWebPki)?;
                TlsRequirement::RequireVerified {
                    verifier: StsCertVerifier::new(inner.clone(), Mode::Enforce),
                    kind: TlsAuthentication::WebPki,
                }
            }
        };
        TlsParams::new(requirement, self.min_tls, name).map_err(|_| HopError::BadName {
            host: self.host.clone(),
        })
    }
}

impl Hop {
    /// The parameters [`connection_verdict`] reads (requirement, minimum
    /// version, server name) for a caller that judges a session it already
    /// had (the probe), without the WebPKI roots: an MTA-STS hop's verifier
    /// is then one that refuses every certificate, so these parameters can
    /// never carry mail.
    pub(crate) fn params_for_verdict(&self) -> Result<TlsParams, HopError> {
        let mut params = match &self.tls {
            HopTls::WebPki | HopTls::RouteWebPki => Hop {
                tls: HopTls::Unauthenticated,
                ..self.clone()
            }
            .params(None)?,
            _ => return self.params(None),
        };
        params.requirement = TlsRequirement::RequireVerified {
            verifier: Arc::new(crate::dane::DaneVerifier::new(
                Vec::new(),
                Vec::new(),
                &crate::tls::provider(),
            )),
            kind: TlsAuthentication::WebPki,
        };
        Ok(params)
    }
}

/// Why a host is not contacted at all under a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSkip {
    /// The RFC 7672 plan skips it (lookup failure, DANE required...).
    Dane(SkipReason),
    /// The MTA-STS enforce policy does not list it (RFC 8461 section 4.1).
    MtaSts(MxFailure),
}

impl fmt::Display for HostSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSkip::Dane(why) => write!(f, "{why}"),
            HostSkip::MtaSts(failure) => write!(f, "{failure}"),
        }
    }
}

/// `opportunistic` and `mandatory` (and a route's level): no DANE, no
/// MTA-STS; TLS required only under `mandatory`.
pub(crate) fn plain_host(level: SecurityLevel) -> HopTls {
    match level {
        SecurityLevel::Mandatory => HopTls::Unauthenticated,
        _ => HopTls::Opportunistic,
    }
}

/// `opportunistic-dane` / `mandatory-dane`: the host's RFC 7672 plan.
pub fn dane_host(plan: &DanePlan) -> Result<HopTls, HostSkip> {
    match plan {
        DanePlan::Authenticate {
            tlsa,
            reference_names,
            tlsa_name,
        } => Ok(HopTls::Dane(DaneAuth {
            tlsa: tlsa.clone(),
            reference_names: reference_names.clone(),
            tlsa_name: tlsa_name.clone(),
        })),
        DanePlan::EncryptUnauthenticated { .. } => Ok(HopTls::Unauthenticated),
        DanePlan::Opportunistic(_) => Ok(HopTls::Opportunistic),
        DanePlan::Skip(why) => Err(HostSkip::Dane(why.clone())),
    }
}

/// `mta-sts`: DANE governs where usable TLSA records exist, pass or fail
/// (RFC 8461 section 2: a policy never overrides a failing DANE
/// validation); otherwise the policy's rule for the MX name (section 4):
/// enforce requires WebPKI and skips a name it does not list; testing,
/// `none` and no policy are opportunistic, except that secure TLSA
/// records with none usable still require TLS (RFC 7672 section 3.1.3).
pub fn mta_sts_host(
    dane: &DanePlan,
    policy: Option<&Policy>,
    mx: &str,
) -> Result<HopTls, HostSkip> {
    match (dane, mta_sts::plan_mx(policy, mx)) {
        (DanePlan::Authenticate { .. }, _) => dane_host(dane),
        (_, StsMxPlan::Skip(failure)) => Err(HostSkip::MtaSts(failure)),
        (DanePlan::Skip(why), _) => Err(HostSkip::Dane(why.clone())),
        (_, StsMxPlan::RequireWebPki) => Ok(HopTls::WebPki),
        (DanePlan::EncryptUnauthenticated { .. }, _) => Ok(HopTls::Unauthenticated),
        (_, StsMxPlan::TestWebPki { .. } | StsMxPlan::Opportunistic) => Ok(HopTls::Opportunistic),
    }
}

/// Why a certificate was refused by the hop's verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRejection {
    /// The DANE verifier found no matching TLSA record (or a bad chain).
    Dane(DaneFailure),
    /// The WebPKI check for the MX name failed (MTA-STS enforce).
    WebPki(CertProblem),
}

/// What a connection to one address showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// No SMTP session: connection refused, timeout, a refused greeting
    /// or EHLO.
    NoSession { detail: String },
    /// The EHLO reply did not list STARTTLS.
    StartTlsNotOffered,
    /// STARTTLS was answered with an error.
    StartTlsRefused { reply: String },
    /// Bytes followed the STARTTLS reply before the handshake (response
    /// injection): the host is not used, whatever the level.
    StartTlsInjection,
    /// The handshake failed; `rejected` when the hop's verifier refused
    /// the certificate.
    HandshakeFailed {
        rejected: Option<CertRejection>,
        detail: String,
    },
    /// TLS is up at `version`, the certificate accepted as `authenticated`.
    Tls {
        version: ProtocolVersion,
        authenticated: TlsAuthentication,
    },
    /// The client runs the session in cleartext, for this reason.
    Cleartext(CleartextReason),
}

impl ConnectionEvent {
    /// What a failed connection attempt of the SMTP client showed.
    pub fn of_error(error: &ClientError) -> ConnectionEvent {
        match error {
            ClientError::TlsNotOffered { .. } => ConnectionEvent::StartTlsNotOffered,
            ClientError::Rejected {
                stage: Stage::StartTls,
                reply,
                ..
            } => ConnectionEvent::StartTlsRefused {
                reply: reply.to_string(),
            },
            ClientError::StartTlsInjection { .. } => ConnectionEvent::StartTlsInjection,
            ClientError::TlsHandshakeFailed { source, .. } => ConnectionEvent::HandshakeFailed {
                rejected: rejection(source),
                detail: source.to_string(),
            },
            ClientError::TlsBelowMinimum { negotiated, .. } => ConnectionEvent::Tls {
                version: *negotiated,
                authenticated: TlsAuthentication::None,
            },
            other => ConnectionEvent::NoSession {
                detail: other.to_string(),
            },
        }
    }

    /// What a connection the SMTP client set up achieved.
    pub fn of_session(achieved: &Achieved) -> ConnectionEvent {
        match achieved.tls_version {
            Some(version) => ConnectionEvent::Tls {
                version,
                authenticated: achieved.authentication,
            },
            None => ConnectionEvent::Cleartext(
                achieved
                    .cleartext_reason
                    .unwrap_or(CleartextReason::NotOffered),
            ),
        }
    }
}

/// The DANE or WebPKI refusal inside a failed handshake, if that was it.
fn rejection(source: &std::io::Error) -> Option<CertRejection> {
    let tls = source.get_ref()?.downcast_ref::<rustls::Error>()?;
    if let Some(failure) = crate::dane::dane_failure(tls) {
        return Some(CertRejection::Dane(failure.clone()));
    }
    match crate::mta_sts::verify::classify(tls) {
        crate::mta_sts::CertOutcome::Invalid(problem) => Some(CertRejection::WebPki(problem)),
        _ => None,
    }
}

/// Why TLS did not come up as the hop wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    NotOffered,
    Refused {
        reply: String,
    },
    Injection,
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
            TlsProblem::Injection => {
                f.write_str("bytes after the STARTTLS reply before the handshake (injection)")
            }
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

/// `TLS 1.3` for rustls' `TLSv1_3`.
pub(crate) fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLS 1.3".to_string(),
        ProtocolVersion::TLSv1_2 => "TLS 1.2".to_string(),
        ProtocolVersion::TLSv1_1 => "TLS 1.1".to_string(),
        ProtocolVersion::TLSv1_0 => "TLS 1.0".to_string(),
        other => format!("{other:?}"),
    }
}

/// Why an address is not used for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotUsed {
    /// No SMTP session could be had.
    NoSession { detail: String },
    /// The hop requires TLS and it did not come up.
    TlsRequired(TlsProblem),
    /// DANE refuses the host (RFC 7672 sections 2.2 and 3).
    Dane(SkipReason),
    /// MTA-STS enforce refuses the host (RFC 8461 section 4).
    MtaSts(MxFailure),
}

impl NotUsed {
    /// Whether the host answered and the policy refused its TLS (it is
    /// up): the attempt then pauses only this policy, not the destination.
    pub(crate) fn by_policy(&self) -> bool {
        !matches!(self, NotUsed::NoSession { .. })
    }
}

impl NotUsed {
    /// The typed reason the attempt records for it.
    pub fn reason(&self, host: &str, ip: std::net::IpAddr) -> Reason {
        let place = Place::at(host, ip);
        let local = |cause, status, detail: String| Reason::Local {
            cause,
            status,
            place: place.clone(),
            detail,
        };
        match self {
            NotUsed::NoSession { detail } => local(
                LocalCause::ConnectionFailed,
                status::BAD_CONNECTION,
                detail.clone(),
            ),
            NotUsed::TlsRequired(
                problem @ (TlsProblem::NotOffered | TlsProblem::Refused { .. }),
            ) => local(
                LocalCause::TlsNotOffered,
                status::ENCRYPTION_NEEDED,
                problem.to_string(),
            ),
            NotUsed::TlsRequired(problem @ TlsProblem::BelowMinimum { .. }) => local(
                LocalCause::TlsBelowMinimum,
                status::ENCRYPTION_NEEDED,
                problem.to_string(),
            ),
            NotUsed::TlsRequired(problem) => local(
                LocalCause::TlsHandshakeFailed,
                status::CRYPTO,
                problem.to_string(),
            ),
            NotUsed::Dane(why) => dane_skip(host, why),
            NotUsed::MtaSts(failure) => Reason::MtaSts {
                failure: mx_result(failure),
                place,
                detail: failure.to_string(),
            },
        }
    }
}

impl fmt::Display for NotUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotUsed::NoSession { detail } => write!(f, "no SMTP session: {detail}"),
            NotUsed::TlsRequired(problem) => write!(f, "TLS required: {problem}"),
            NotUsed::Dane(why) => write!(f, "{why}"),
            NotUsed::MtaSts(failure) => write!(f, "MTA-STS enforce: {failure}"),
        }
    }
}

/// What the client does with the message on this address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionVerdict {
    /// Send over the TLS session, authenticated as said.
    SendOverTls {
        version: ProtocolVersion,
        authenticated: TlsAuthentication,
    },
    /// Send in cleartext on this session (allowed by the hop's TLS).
    SendCleartext(TlsProblem),
    /// Reconnect to the same address without STARTTLS and send there
    /// (opportunistic only).
    RetryCleartext(TlsProblem),
    /// Never send to this address for this message; the next is tried.
    NotUsed(NotUsed),
}

impl fmt::Display for ConnectionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionVerdict::SendOverTls {
                version,
                authenticated,
            } => {
                write!(f, "deliver over {}", version_name(*version))?;
                match authenticated {
                    TlsAuthentication::None => f.write_str(", certificate not checked"),
                    TlsAuthentication::Dane => f.write_str(", authenticated by DANE"),
                    TlsAuthentication::WebPki => f.write_str(", authenticated by WebPKI"),
                }
            }
            ConnectionVerdict::SendCleartext(problem) => {
                write!(f, "{problem}; deliver in cleartext")
            }
            ConnectionVerdict::RetryCleartext(problem) => {
                write!(f, "{problem}; reconnect and deliver in cleartext")
            }
            ConnectionVerdict::NotUsed(why) => write!(f, "not used: {why}"),
        }
    }
}

/// The verdict for one address of `hop`, connected with `params` (the
/// hop's, or its cleartext retry), from what the connection showed.
pub fn connection_verdict(
    hop: &Hop,
    params: &TlsParams,
    event: &ConnectionEvent,
) -> ConnectionVerdict {
    use ConnectionEvent as E;
    let refuse = |problem: TlsProblem| ConnectionVerdict::NotUsed(required(hop, problem));
    match event {
        E::NoSession { detail } => ConnectionVerdict::NotUsed(NotUsed::NoSession {
            detail: detail.clone(),
        }),
        E::StartTlsInjection => refuse(TlsProblem::Injection),
        E::StartTlsNotOffered | E::StartTlsRefused { .. } | E::Cleartext(_) => {
            let problem = match event {
                E::StartTlsRefused { reply } => TlsProblem::Refused {
                    reply: reply.clone(),
                },
                E::Cleartext(CleartextReason::StartTlsRefused) => TlsProblem::Refused {
                    reply: String::new(),
                },
                E::Cleartext(CleartextReason::Retry) => TlsProblem::Handshake {
                    detail: "reconnected without STARTTLS after a failed handshake".into(),
                },
                E::Cleartext(CleartextReason::BelowMinimum { negotiated }) => {
                    TlsProblem::BelowMinimum {
                        negotiated: *negotiated,
                        minimum: params.min_version,
                    }
                }
                _ => TlsProblem::NotOffered,
            };
            // The client's own rule: a server without STARTTLS.
            match plan_starttls(params, Some(&EhloCapabilities::default())) {
                StartTlsPlan::Cleartext(_) => ConnectionVerdict::SendCleartext(problem),
                StartTlsPlan::Start | StartTlsPlan::RefuseNotOffered => refuse(problem),
            }
        }
        E::HandshakeFailed { rejected, detail } => {
            let problem = TlsProblem::Handshake {
                detail: detail.clone(),
            };
            if params.cleartext_retry().is_some() {
                return ConnectionVerdict::RetryCleartext(problem);
            }
            match (rejected, &hop.tls) {
                (Some(CertRejection::Dane(failure)), HopTls::Dane(_)) => {
                    ConnectionVerdict::NotUsed(NotUsed::Dane(SkipReason::DaneAuthenticationFailed(
                        failure.clone(),
                    )))
                }
                (Some(CertRejection::WebPki(problem)), HopTls::WebPki) => {
                    ConnectionVerdict::NotUsed(NotUsed::MtaSts(MxFailure::Certificate {
                        mx: hop.host.clone(),
                        problem: problem.clone(),
                    }))
                }
                _ => refuse(problem),
            }
        }
        E::Tls {
            version,
            authenticated,
        } => match check_negotiated(params, *version) {
            NegotiatedPlan::ReconnectCleartext => {
                ConnectionVerdict::RetryCleartext(TlsProblem::BelowMinimum {
                    negotiated: *version,
                    minimum: params.min_version,
                })
            }
            NegotiatedPlan::Refuse => refuse(TlsProblem::BelowMinimum {
                negotiated: *version,
                minimum: params.min_version,
            }),
            NegotiatedPlan::Proceed => {
                let wanted = params.requirement.authentication();
                if wanted != TlsAuthentication::None && *authenticated != wanted {
                    // A session the hop's verifier did not authenticate.
                    return refuse(TlsProblem::Handshake {
                        detail: format!("the certificate was not authenticated by {wanted:?}"),
                    });
                }
                ConnectionVerdict::SendOverTls {
                    version: *version,
                    authenticated: *authenticated,
                }
            }
        },
    }
}

/// Whether the message may go over a session the client set up (a new
/// one, or one from the pool), by [`connection_verdict`]: the client
/// already refuses what the hop's TLS forbids, so for a new connection
/// this confirms it; a pooled session the verdict would not use (e.g. TLS
/// below this message's minimum) is turned away.
pub(crate) fn session_verdict(
    hop: &Hop,
    params: &TlsParams,
    achieved: &Achieved,
) -> Result<(), NotUsed> {
    match connection_verdict(hop, params, &ConnectionEvent::of_session(achieved)) {
        ConnectionVerdict::SendOverTls { .. } | ConnectionVerdict::SendCleartext(_) => Ok(()),
        ConnectionVerdict::RetryCleartext(problem) => Err(NotUsed::TlsRequired(problem)),
        ConnectionVerdict::NotUsed(why) => Err(why),
    }
}

/// Whether an error came after the body was (partly) sent, so the server
/// may have accepted the message.
pub(crate) fn body_was_sent(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Timeout {
            stage: Stage::Body,
            ..
        } | ClientError::Io {
            stage: Stage::Body,
            ..
        } | ClientError::Closed {
            stage: Stage::Body,
            ..
        } | ClientError::BadReply {
            stage: Stage::Body,
            ..
        }
    )
}

/// Why a hop that requires TLS does not use an address, in the words of
/// the mechanism that requires it.
fn required(hop: &Hop, problem: TlsProblem) -> NotUsed {
    match (&hop.tls, problem) {
        (HopTls::Dane(_), TlsProblem::NotOffered | TlsProblem::Refused { .. }) => {
            NotUsed::Dane(SkipReason::StartTlsNotOffered)
        }
        (HopTls::Dane(_), problem) => NotUsed::Dane(SkipReason::TlsFailed {
            detail: problem.to_string(),
        }),
        (HopTls::WebPki, TlsProblem::NotOffered | TlsProblem::Refused { .. }) => {
            NotUsed::MtaSts(MxFailure::StartTlsNotOffered {
                mx: hop.host.clone(),
            })
        }
        (HopTls::WebPki, problem) => NotUsed::MtaSts(MxFailure::Handshake {
            mx: hop.host.clone(),
            reason: problem.to_string(),
        }),
        (_, problem) => NotUsed::TlsRequired(problem),
    }
}

#[cfg(test)]
mod tests;
