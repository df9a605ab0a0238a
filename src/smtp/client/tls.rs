//! What TLS a delivery needs and what a connection achieved.
//!
//! The delivery engine derives a [`TlsParams`] from the effective security
//! level and the DANE / MTA-STS plans; the client only follows it:
//!
//! - STARTTLS (RFC 3207) is attempted whenever the server offers it, except
//!   in the explicit [`TlsRequirement::Cleartext`] retry.
//! - A session below the minimum TLS version counts as "no TLS"
//!   (`RFC-NOTES.md`, security levels): opportunistic delivery then
//!   reconnects in cleartext, every required mode fails before MAIL.
//! - Under a required mode, nothing of the envelope or the message is ever
//!   written before TLS is up ([`plan_starttls`], [`check_negotiated`]).
//!
//! [`super::Achieved`] records the outcome so a pooled connection is reused
//! only for a message whose requirement it satisfies.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{InvalidDnsNameError, ServerName};
use rustls::ProtocolVersion;

use crate::policy::MinTlsVersion;
use crate::tls::Unauthenticated;

use super::super::ehlo::EhloCapabilities;

/// Why a connection runs without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleartextReason {
    /// The server did not advertise STARTTLS.
    NotOffered,
    /// TLS was negotiated below the minimum and the session was replaced by
    /// a cleartext one.
    BelowMinimum { negotiated: ProtocolVersion },
    /// The server answered STARTTLS with an error (e.g. `454`).
    StartTlsRefused,
    /// The caller asked for the cleartext retry after a failed handshake.
    Retry,
}

/// How a verifier authenticates the server, recorded in [`Achieved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsAuthentication {
    /// The certificate was not checked (opportunistic or `mandatory`).
    None,
    /// Matched against DNSSEC-validated TLSA records (RFC 7672).
    Dane,
    /// A WebPKI chain to a trusted root with the name checked (MTA-STS,
    /// RFC 8461 section 4.2).
    WebPki,
}

/// What the caller requires of the TLS session.
#[derive(Clone)]
pub enum TlsRequirement {
    /// STARTTLS when offered, any certificate; cleartext when not offered or
    /// below the minimum version. A failed handshake is an error whose
    /// `retry_cleartext_allowed` is true: the caller may reconnect with
    /// [`TlsParams::cleartext_retry`].
    Opportunistic,
    /// No STARTTLS at all. Only for the cleartext retry of an opportunistic
    /// delivery after a failed handshake.
    Cleartext,
    /// TLS at or above the minimum version, certificate not checked.
    RequireUnauthenticated,
    /// TLS at or above the minimum version, and `verifier` must accept the
    /// certificate; `kind` says what the verifier checks (DANE or WebPKI).
    RequireVerified {
        verifier: Arc<dyn ServerCertVerifier>,
        kind: TlsAuthentication,
    },
}

impl TlsRequirement {
    /// True for the modes that never send mail without TLS.
    pub(crate) fn requires_tls(&self) -> bool {
        matches!(
            self,
            TlsRequirement::RequireUnauthenticated | TlsRequirement::RequireVerified { .. }
        )
    }

    /// The authentication this requirement asks for.
    pub fn authentication(&self) -> TlsAuthentication {
        match self {
            TlsRequirement::RequireVerified { kind, .. } => *kind,
            _ => TlsAuthentication::None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            TlsRequirement::Opportunistic => "opportunistic",
            TlsRequirement::Cleartext => "cleartext",
            TlsRequirement::RequireUnauthenticated => "require-tls",
            TlsRequirement::RequireVerified {
                kind: TlsAuthentication::Dane,
                ..
            } => "require-dane",
            TlsRequirement::RequireVerified {
                kind: TlsAuthentication::WebPki,
                ..
            } => "require-webpki",
            TlsRequirement::RequireVerified { .. } => "require-verified",
        }
    }
}

impl fmt::Debug for TlsRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The TLS part of one delivery attempt to one MX host.
#[derive(Debug, Clone)]
pub struct TlsParams {
    pub requirement: TlsRequirement,
    pub min_version: MinTlsVersion,
    /// The MX host name, sent as SNI and checked by a WebPKI verifier.
    pub server_name: ServerName<'static>,
}

impl TlsParams {
    /// Parameters for `server_name` (a DNS name or an IP address).
    pub fn new(
        requirement: TlsRequirement,
        min_version: MinTlsVersion,
        server_name: &str,
    ) -> Result<TlsParams, InvalidDnsNameError> {
        let server_name = ServerName::try_from(server_name.trim_end_matches('.').to_string())?;
        Ok(TlsParams {
            requirement,
            min_version,
            server_name,
        })
    }

    /// The cleartext retry of the same MX, allowed only under
    /// [`TlsRequirement::Opportunistic`] (RFC-NOTES: "on a failed handshake
    /// retry the same MX in cleartext"); `None` for every other mode.
    pub fn cleartext_retry(&self) -> Option<TlsParams> {
        match self.requirement {
            TlsRequirement::Opportunistic => Some(TlsParams {
                requirement: TlsRequirement::Cleartext,
                ..self.clone()
            }),
            _ => None,
        }
    }
}

/// What to do after the EHLO reply on the cleartext connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartTlsPlan {
    /// Send STARTTLS.
    Start,
    /// Continue in cleartext (allowed by the requirement).
    Cleartext(CleartextReason),
    /// TLS is required and not offered: send QUIT and nothing else.
    RefuseNotOffered,
}

/// Decides STARTTLS from the requirement and the server's capabilities
/// (`None`: the server only answered HELO, so no extensions).
pub(crate) fn plan_starttls(params: &TlsParams, caps: Option<&EhloCapabilities>) -> StartTlsPlan {
    let offered = caps.is_some_and(|c| c.starttls);
    match (&params.requirement, offered) {
        (TlsRequirement::Cleartext, _) => StartTlsPlan::Cleartext(CleartextReason::Retry),
        (_, true) => StartTlsPlan::Start,
        (TlsRequirement::Opportunistic, false) => {
            StartTlsPlan::Cleartext(CleartextReason::NotOffered)
        }
        (_, false) => StartTlsPlan::RefuseNotOffered,
    }
}

/// What to do with a negotiated version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NegotiatedPlan {
    /// Use the TLS session.
    Proceed,
    /// Below the minimum under opportunistic: QUIT, reconnect without TLS.
    ReconnectCleartext,
    /// Below the minimum under a required mode: QUIT and fail.
    Refuse,
}

/// Checks the negotiated version against the minimum (a session below it
/// counts as no TLS).
pub(crate) fn check_negotiated(params: &TlsParams, negotiated: ProtocolVersion) -> NegotiatedPlan {
    if params.min_version.accepts(negotiated) {
        NegotiatedPlan::Proceed
    } else if params.requirement.requires_tls() {
        NegotiatedPlan::Refuse
    } else {
        NegotiatedPlan::ReconnectCleartext
    }
}

/// The rustls client config for `requirement`: TLS 1.2 and 1.3 are offered
/// and the minimum is checked after the handshake ([`check_negotiated`]),
/// so the log can say what the peer negotiated.
pub(crate) fn rustls_config(
    requirement: &TlsRequirement,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let verifier: Arc<dyn ServerCertVerifier> = match requirement {
        TlsRequirement::RequireVerified { verifier, .. } => verifier.clone(),
        // Opportunistic and `mandatory` TLS encrypt without authenticating
        // (RFC 7435), but the handshake signatures are still checked.
        _ => Arc::new(Unauthenticated::new()),
    };
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(MinTlsVersion::Any.rustls_versions())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests;
