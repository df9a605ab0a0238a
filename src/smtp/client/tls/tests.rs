use super::*;
use crate::smtp::client::achieved::Achieved;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::{DigitallySignedStruct, ProtocolVersion, SignatureScheme};

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

fn verified(kind: TlsAuthentication) -> TlsRequirement {
    TlsRequirement::RequireVerified {
        verifier: Arc::new(Never),
        kind,
    }
}

fn params(req: TlsRequirement, min: MinTlsVersion, name: &str) -> TlsParams {
    TlsParams::new(req, min, name).expect("valid name")
}

fn achieved(tls: Option<ProtocolVersion>, auth: TlsAuthentication) -> Achieved {
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
    TlsAuthentication,
    TlsRequirement,
    MinTlsVersion,
    &'static str,
    bool,
);

#[test]
fn reuse_table() {
    use MinTlsVersion as M;
    use ProtocolVersion::{TLSv1_2 as V12, TLSv1_3 as V13};
    use TlsAuthentication as A;
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
        (verified(TlsAuthentication::Dane), Some(&offered), Start),
        (
            verified(TlsAuthentication::Dane),
            Some(&not_offered),
            RefuseNotOffered,
        ),
        (verified(TlsAuthentication::WebPki), None, RefuseNotOffered),
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
        (verified(TlsAuthentication::Dane), M::Tls13, V12, Refuse),
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
        verified(TlsAuthentication::Dane),
        TlsRequirement::Cleartext,
    ] {
        assert!(params(req, MinTlsVersion::Any, "mx.test")
            .cleartext_retry()
            .is_none());
    }
}
