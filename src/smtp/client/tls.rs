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
//! [`Achieved`] records the outcome so a pooled connection is reused only
//! for a message whose requirement it satisfies ([`Achieved::reuse_for`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, ProtocolVersion, SignatureScheme};

use crate::policy::MinTlsVersion;

use super::super::ehlo::EhloCapabilities;

/// How a verifier authenticates the server, recorded in [`Achieved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Authentication {
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
        kind: Authentication,
    },
}

impl TlsRequirement {
    /// True for the modes that never send mail without TLS.
    pub fn requires_tls(&self) -> bool {
        matches!(
            self,
            TlsRequirement::RequireUnauthenticated | TlsRequirement::RequireVerified { .. }
        )
    }

    /// The authentication this requirement asks for.
    pub fn authentication(&self) -> Authentication {
        match self {
            TlsRequirement::RequireVerified { kind, .. } => *kind,
            _ => Authentication::None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            TlsRequirement::Opportunistic => "opportunistic",
            TlsRequirement::Cleartext => "cleartext",
            TlsRequirement::RequireUnauthenticated => "require-tls",
            TlsRequirement::RequireVerified {
                kind: Authentication::Dane,
                ..
            } => "require-dane",
            TlsRequirement::RequireVerified {
                kind: Authentication::WebPki,
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

/// What a connection achieved, for logs, the attempt record and the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Achieved {
    pub mx_host: String,
    pub peer: SocketAddr,
    /// The server name used for SNI and verification.
    pub server_name: String,
    pub tls_version: Option<ProtocolVersion>,
    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    pub authentication: Authentication,
    /// Set when `tls_version` is `None`.
    pub cleartext_reason: Option<CleartextReason>,
}

/// Why a pooled connection cannot carry a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReuseRefusal {
    #[error("connection to {mx_host} has no TLS, the message requires it")]
    NoTls { mx_host: String },
    #[error("connection to {mx_host} runs {negotiated:?}, below the minimum {minimum}")]
    BelowMinimum {
        mx_host: String,
        negotiated: ProtocolVersion,
        minimum: &'static str,
    },
    #[error("connection to {mx_host} is authenticated by {achieved:?}, the message requires {required:?}")]
    Authentication {
        mx_host: String,
        achieved: Authentication,
        required: Authentication,
    },
    #[error("connection to {mx_host} verified name {achieved}, the message requires {required}")]
    ServerName {
        mx_host: String,
        achieved: String,
        required: String,
    },
}

impl Achieved {
    /// Whether this connection may carry a message with `params`: TLS
    /// present and at or above the minimum when required, the same kind of
    /// authentication for the same server name when verified. Opportunistic
    /// and cleartext messages may use any connection.
    pub fn reuse_for(&self, params: &TlsParams) -> Result<(), ReuseRefusal> {
        if !params.requirement.requires_tls() {
            return Ok(());
        }
        let mx_host = self.mx_host.clone();
        let Some(negotiated) = self.tls_version else {
            return Err(ReuseRefusal::NoTls { mx_host });
        };
        if !params.min_version.accepts(negotiated) {
            return Err(ReuseRefusal::BelowMinimum {
                mx_host,
                negotiated,
                minimum: params.min_version.as_str(),
            });
        }
        let required = params.requirement.authentication();
        if required != Authentication::None {
            if self.authentication != required {
                return Err(ReuseRefusal::Authentication {
                    mx_host,
                    achieved: self.authentication,
                    required,
                });
            }
            let wanted = server_name_text(&params.server_name);
            if !self.server_name.eq_ignore_ascii_case(&wanted) {
                return Err(ReuseRefusal::ServerName {
                    mx_host,
                    achieved: self.server_name.clone(),
                    required: wanted,
                });
            }
        }
        Ok(())
    }

    /// `reuse_for(params).is_ok()`.
    pub fn satisfies(&self, params: &TlsParams) -> bool {
        self.reuse_for(params).is_ok()
    }
}

pub(crate) fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// What to do after the EHLO reply on the cleartext connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTlsPlan {
    /// Send STARTTLS.
    Start,
    /// Continue in cleartext (allowed by the requirement).
    Cleartext(CleartextReason),
    /// TLS is required and not offered: send QUIT and nothing else.
    RefuseNotOffered,
}

/// Decides STARTTLS from the requirement and the server's capabilities
/// (`None`: the server only answered HELO, so no extensions).
pub fn plan_starttls(params: &TlsParams, caps: Option<&EhloCapabilities>) -> StartTlsPlan {
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
pub enum NegotiatedPlan {
    /// Use the TLS session.
    Proceed,
    /// Below the minimum under opportunistic: QUIT, reconnect without TLS.
    ReconnectCleartext,
    /// Below the minimum under a required mode: QUIT and fail.
    Refuse,
}

/// Checks the negotiated version against the minimum (a session below it
/// counts as no TLS).
pub fn check_negotiated(params: &TlsParams, negotiated: ProtocolVersion) -> NegotiatedPlan {
    if params.min_version.accepts(negotiated) {
        NegotiatedPlan::Proceed
    } else if params.requirement.requires_tls() {
        NegotiatedPlan::Refuse
    } else {
        NegotiatedPlan::ReconnectCleartext
    }
}

/// Accepts any certificate (opportunistic and `mandatory` TLS do not
/// authenticate, RFC 7435) but still checks the handshake signatures, so
/// the session key belongs to the certificate presented.
#[derive(Debug)]
struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls client config for `requirement`: TLS 1.2 and 1.3 are offered
/// and the minimum is checked after the handshake ([`check_negotiated`]),
/// so the log can say what the peer negotiated.
pub fn rustls_config(requirement: &TlsRequirement) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match requirement {
        TlsRequirement::RequireVerified { verifier, .. } => verifier.clone(),
        _ => Arc::new(AcceptAnyCert {
            algorithms: provider.signature_verification_algorithms,
        }),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(MinTlsVersion::Any.rustls_versions())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Never;
    impl ServerCertVerifier for Never {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Err(rustls::Error::General("test".into()))
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("test".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("test".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            Vec::new()
        }
    }

    fn verified(kind: Authentication) -> TlsRequirement {
        TlsRequirement::RequireVerified {
            verifier: Arc::new(Never),
            kind,
        }
    }

    fn params(req: TlsRequirement, min: MinTlsVersion, name: &str) -> TlsParams {
        TlsParams::new(req, min, name).expect("valid name")
    }

    fn achieved(tls: Option<ProtocolVersion>, auth: Authentication) -> Achieved {
        Achieved {
            mx_host: "mx.test".into(),
            peer: "127.0.0.1:25".parse().expect("addr"),
            server_name: "mx.test".into(),
            tls_version: tls,
            cipher: None,
            authentication: auth,
            cleartext_reason: tls.is_none().then_some(CleartextReason::NotOffered),
        }
    }

    type ReuseRow = (
        Option<ProtocolVersion>,
        Authentication,
        TlsRequirement,
        MinTlsVersion,
        &'static str,
        bool,
    );

    #[test]
    fn reuse_table() {
        use Authentication as A;
        use MinTlsVersion as M;
        use ProtocolVersion::{TLSv1_2 as V12, TLSv1_3 as V13};
        let none: Option<ProtocolVersion> = None;
        // (connection tls, connection auth, requirement, min, name, reusable)
        let table: Vec<ReuseRow> = vec![
            (
                none,
                A::None,
                TlsRequirement::Opportunistic,
                M::Tls13,
                "mx.test",
                true,
            ),
            (
                none,
                A::None,
                TlsRequirement::Cleartext,
                M::Any,
                "mx.test",
                true,
            ),
            (
                Some(V12),
                A::None,
                TlsRequirement::Opportunistic,
                M::Tls13,
                "mx.test",
                true,
            ),
            (
                none,
                A::None,
                TlsRequirement::RequireUnauthenticated,
                M::Any,
                "mx.test",
                false,
            ),
            (
                Some(V12),
                A::None,
                TlsRequirement::RequireUnauthenticated,
                M::Any,
                "mx.test",
                true,
            ),
            (
                Some(V12),
                A::None,
                TlsRequirement::RequireUnauthenticated,
                M::Tls12,
                "mx.test",
                true,
            ),
            (
                Some(V12),
                A::None,
                TlsRequirement::RequireUnauthenticated,
                M::Tls13,
                "mx.test",
                false,
            ),
            (
                Some(V13),
                A::None,
                TlsRequirement::RequireUnauthenticated,
                M::Tls13,
                "mx.test",
                true,
            ),
            (
                Some(V13),
                A::Dane,
                TlsRequirement::RequireUnauthenticated,
                M::Any,
                "mx.test",
                true,
            ),
            (
                Some(V13),
                A::None,
                verified(A::Dane),
                M::Any,
                "mx.test",
                false,
            ),
            (
                Some(V13),
                A::WebPki,
                verified(A::Dane),
                M::Any,
                "mx.test",
                false,
            ),
            (
                Some(V13),
                A::Dane,
                verified(A::Dane),
                M::Any,
                "mx.test",
                true,
            ),
            (
                Some(V13),
                A::Dane,
                verified(A::Dane),
                M::Any,
                "MX.TEST",
                true,
            ),
            (
                Some(V13),
                A::Dane,
                verified(A::Dane),
                M::Any,
                "mx2.test",
                false,
            ),
            (
                Some(V12),
                A::Dane,
                verified(A::Dane),
                M::Tls13,
                "mx.test",
                false,
            ),
            (
                Some(V13),
                A::WebPki,
                verified(A::WebPki),
                M::Tls12,
                "mx.test",
                true,
            ),
            (none, A::None, verified(A::WebPki), M::Any, "mx.test", false),
        ];
        for (i, (tls, auth, req, min, name, expect)) in table.into_iter().enumerate() {
            let p = params(req, min, name);
            let got = achieved(tls, auth).reuse_for(&p);
            assert_eq!(got.is_ok(), expect, "row {i}: {got:?}");
        }
    }

    #[test]
    fn starttls_plan_table() {
        let offered = EhloCapabilities {
            starttls: true,
            ..EhloCapabilities::default()
        };
        let not_offered = EhloCapabilities::default();
        use StartTlsPlan::*;
        let table: Vec<(TlsRequirement, Option<&EhloCapabilities>, StartTlsPlan)> = vec![
            (TlsRequirement::Opportunistic, Some(&offered), Start),
            (
                TlsRequirement::Opportunistic,
                Some(&not_offered),
                Cleartext(CleartextReason::NotOffered),
            ),
            (
                TlsRequirement::Opportunistic,
                None,
                Cleartext(CleartextReason::NotOffered),
            ),
            (
                TlsRequirement::Cleartext,
                Some(&offered),
                Cleartext(CleartextReason::Retry),
            ),
            (
                TlsRequirement::RequireUnauthenticated,
                Some(&offered),
                Start,
            ),
            (
                TlsRequirement::RequireUnauthenticated,
                Some(&not_offered),
                RefuseNotOffered,
            ),
            (
                TlsRequirement::RequireUnauthenticated,
                None,
                RefuseNotOffered,
            ),
            (verified(Authentication::Dane), Some(&offered), Start),
            (
                verified(Authentication::Dane),
                Some(&not_offered),
                RefuseNotOffered,
            ),
            (verified(Authentication::WebPki), None, RefuseNotOffered),
        ];
        for (i, (req, caps, expect)) in table.into_iter().enumerate() {
            let p = params(req, MinTlsVersion::Any, "mx.test");
            assert_eq!(plan_starttls(&p, caps), expect, "row {i}");
        }
    }

    #[test]
    fn negotiated_table() {
        use MinTlsVersion as M;
        use NegotiatedPlan::*;
        use ProtocolVersion::{TLSv1_2 as V12, TLSv1_3 as V13};
        let table = [
            (
                TlsRequirement::Opportunistic,
                M::Tls13,
                V12,
                ReconnectCleartext,
            ),
            (TlsRequirement::Opportunistic, M::Tls13, V13, Proceed),
            (TlsRequirement::Opportunistic, M::Any, V12, Proceed),
            (
                TlsRequirement::RequireUnauthenticated,
                M::Tls13,
                V12,
                Refuse,
            ),
            (
                TlsRequirement::RequireUnauthenticated,
                M::Tls12,
                V12,
                Proceed,
            ),
            (verified(Authentication::Dane), M::Tls13, V12, Refuse),
        ];
        for (i, (req, min, v, expect)) in table.into_iter().enumerate() {
            let p = params(req, min, "mx.test");
            assert_eq!(check_negotiated(&p, v), expect, "row {i}");
        }
    }

    #[test]
    fn cleartext_retry_only_for_opportunistic() {
        let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any, "mx.test");
        assert!(matches!(
            p.cleartext_retry().map(|r| r.requirement),
            Some(TlsRequirement::Cleartext)
        ));
        for req in [
            TlsRequirement::RequireUnauthenticated,
            verified(Authentication::Dane),
            TlsRequirement::Cleartext,
        ] {
            assert!(params(req, MinTlsVersion::Any, "mx.test")
                .cleartext_retry()
                .is_none());
        }
    }
}
