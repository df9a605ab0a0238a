//! Every file in `examples/` parses and validates, and the embedded default
//! is `examples/default.toml` itself.

use std::path::Path;

use sealpost::config::{Config, EMBEDDED_DEFAULT};
use sealpost::policy::{PeerQuery, Reason, SecurityLevel};

#[test]
fn every_example_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable directory entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = Config::load(&path) {
                panic!("{} is invalid:\n{e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected default.toml and sealpost.toml, checked {checked}"
    );
}

#[test]
fn the_embedded_default_is_the_example_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default.toml");
    let on_disk = std::fs::read_to_string(path).expect("examples/default.toml");
    assert_eq!(EMBEDDED_DEFAULT, on_disk);
    let config = Config::embedded_default().expect("valid");
    assert!(config
        .listeners
        .iter()
        .all(|l| l.address.ip().is_loopback()));
    assert!(config.listeners.iter().all(|l| l.address.port() >= 1024));
    assert!(config.server.data_dir.is_relative());
}

#[test]
fn the_full_example_means_what_its_comments_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sealpost.toml");
    let config = Config::load(&path).expect("valid");
    let policy = &config.policy;
    let out = |from: &str, to: &'static str| {
        policy.resolve(
            from,
            PeerQuery::Outbound {
                recipient_domain: to,
            },
        )
    };
    assert_eq!(
        out("acme.example", "mx.bank.example").level,
        SecurityLevel::Mandatory
    );
    assert_eq!(
        out("acme.example", "bank.example").level,
        SecurityLevel::MandatoryDane
    );
    let legacy = out("acme.example", "legacy-partner.example");
    assert!(matches!(legacy.reason, Reason::PeerDisabled { .. }));
    assert_eq!(legacy.level, SecurityLevel::OpportunisticDane);
    // A disabled entry under an enabled wildcard: the domain default, not the wildcard.
    let old = out("acme.example", "old.bank.example");
    assert_eq!(old.level, SecurityLevel::OpportunisticDane);
    assert!(
        matches!(old.reason, Reason::PeerDisabled { ref entry, .. } if entry.peer.to_string() == "old.bank.example")
    );
    let suspended = out("initech.example", "gmail.com");
    assert!(matches!(suspended.reason, Reason::GlobalDefault { .. }));
    let inbound = policy.resolve(
        "acme.example",
        PeerQuery::Inbound {
            ip: Some("198.51.100.25".parse().expect("ip")),
            sender_domain: None,
        },
    );
    assert!(matches!(inbound.reason, Reason::PeerExactIp { .. }));
    // A disabled address inside an enabled CIDR block: the inbound default.
    let switched_off = policy.resolve(
        "acme.example",
        PeerQuery::Inbound {
            ip: Some("198.51.100.99".parse().expect("ip")),
            sender_domain: None,
        },
    );
    assert_eq!(switched_off.level, SecurityLevel::Opportunistic);
    assert!(matches!(switched_off.reason, Reason::PeerDisabled { .. }));
}
