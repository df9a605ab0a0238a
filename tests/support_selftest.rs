//! Checks that the shared test helpers produce what the other tests rely on.
mod support;

use rustls::client::danger::ServerCertVerifier;
use support::pki::{self, TestCa};

#[test]
fn test_ca_issues_a_leaf_that_webpki_accepts_for_its_name() {
    let ca = TestCa::new("sealpost test CA");
    let leaf = ca.issue(&["mx.example.test"]);
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(ca.roots()),
        pki::provider(),
    )
    .build()
    .expect("verifier");
    let name = rustls::pki_types::ServerName::try_from("mx.example.test").expect("name");
    let now = rustls::pki_types::UnixTime::now();
    verifier
        .verify_server_cert(&leaf.cert, &leaf.chain[1..], &name, &[], now)
        .expect("leaf verifies under its CA");
    let other = rustls::pki_types::ServerName::try_from("other.example.test").expect("name");
    assert!(verifier
        .verify_server_cert(&leaf.cert, &leaf.chain[1..], &other, &[], now)
        .is_err());
    let expired = ca.issue_expired(&["mx.example.test"]);
    assert!(verifier
        .verify_server_cert(&expired.cert, &expired.chain[1..], &name, &[], now)
        .is_err());
    let _ = pki::server_config(&leaf, pki::TLS13_ONLY);
}
