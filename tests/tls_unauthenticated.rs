//! The "encrypt, don't authenticate" verifier used by the opportunistic and
//! mandatory levels: any certificate is accepted, but the server must still
//! prove it holds the certificate's key, and the minimum version holds.
mod support;

use sealpost::policy::MinTlsVersion;
use sealpost::tls::unauthenticated_client_config;
use support::dane_tls::{handshake, stolen_certificate_config, TlsPeer};
use support::pki::{self, TestCa, ALL_VERSIONS, TLS12_ONLY, TLS13_ONLY};

fn client(min: MinTlsVersion) -> rustls::ClientConfig {
    unauthenticated_client_config(min).as_ref().clone()
}

#[tokio::test]
async fn any_certificate_is_accepted_when_the_server_holds_its_key() {
    let ca = TestCa::new("CA");
    for leaf in [
        pki::self_signed(&["mx.example.test"]),
        ca.issue_expired(&["mx.example.test"]),
        ca.issue(&["some.other.name"]),
    ] {
        let peer = TlsPeer::start(pki::server_config(&leaf, ALL_VERSIONS)).await;
        let version = handshake(peer.addr, client(MinTlsVersion::Any), "mx.example.test")
            .await
            .expect("handshake");
        assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    }
}

#[tokio::test]
async fn a_certificate_presented_without_its_key_fails() {
    let ca = TestCa::new("CA");
    let victim = ca.issue(&["mx.example.test"]);
    let thief = ca.issue(&["mx.example.test"]);
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let peer = TlsPeer::start(stolen_certificate_config(&victim, &thief, versions)).await;
        let result = handshake(peer.addr, client(MinTlsVersion::Any), "mx.example.test").await;
        let err = result.expect_err("a bad handshake signature must fail");
        assert!(err.tls().is_some(), "failed in rustls, not in I/O: {err}");
        assert!(err.to_string().contains("Signature"), "{err}");
    }
}

#[tokio::test]
async fn the_minimum_version_is_offered_and_enforced() {
    let leaf = pki::self_signed(&["mx.example.test"]);
    let old = TlsPeer::start(pki::server_config(&leaf, TLS12_ONLY)).await;
    assert!(
        handshake(old.addr, client(MinTlsVersion::Tls13), "mx.example.test")
            .await
            .is_err(),
        "a TLS 1.2-only server passed a 1.3 minimum"
    );
    let version = handshake(old.addr, client(MinTlsVersion::Tls12), "mx.example.test")
        .await
        .expect("1.2 allowed");
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
}
