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

/// A port that bind(0) handed out and the test released can be taken by
/// any outgoing connection, or handed out again, before the server the test
/// starts binds it (seen: pebble's or sealpost's listener "Address already
/// in use" under load).
#[test]
fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("the kernel's ephemeral port range");
    let bounds: Vec<u16> = range
        .split_whitespace()
        .map(|n| n.parse().expect("port"))
        .collect();
    let ephemeral = bounds[0]..=bounds[1];
    let ports: Vec<u16> = (0..300).map(|_| support::sealpost::free_port()).collect();
    let distinct: std::collections::HashSet<&u16> = ports.iter().collect();
    assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
    let inside: Vec<&u16> = ports.iter().filter(|p| ephemeral.contains(p)).collect();
    assert!(
        inside.is_empty(),
        "ephemeral ports {ephemeral:?}: {inside:?}"
    );
}
