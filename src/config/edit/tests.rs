//! Changes to a tenant file: comments, style and matching kept.
use super::*;

const FILE: &str = "# Acme's settings\n[[tenants]]\nname = \"acme\"\n\n# the main domain\n[[domains]]\nname = \"acme.example\"\ntenant = \"acme\"\n\n# the bank wants DANE\n[[domains.outbound.peers]]\npeer = \"bank.example\"\nlevel = \"mandatory-dane\" # since May\n\n[[domains]]\nname = \"b.example\"\ntenant = \"acme\"\ninbound.peers = [{ peer = \"192.0.2.1\", level = \"mandatory\" }]\n";

fn apply_ok(change: Change) -> Applied {
    apply(FILE, "acme", &change).expect("applies")
}

#[test]
fn adding_a_peer_keeps_comments_and_style() {
    let out = apply_ok(Change::AddPeer {
        domain: "ACME.example".into(),
        direction: Direction::Outbound,
        peer: "partner.example".into(),
        rule: RuleText {
            level: "mandatory".into(),
            min_tls: Some("1.3".into()),
        },
        enabled: true,
    });
    assert!(
        out.text
            .starts_with(&FILE[..FILE.find("\n[[domains]]\nname = \"b.").expect("b")]),
        "{}",
        out.text
    );
    assert!(out.text.contains("level = \"mandatory-dane\" # since May\n\n[[domains.outbound.peers]]\npeer = \"partner.example\"\nlevel = \"mandatory\"\nmin_tls = \"1.3\"\n"), "{}", out.text);
    assert!(out
        .before
        .as_deref()
        .is_some_and(|b| !b.contains("partner")));
    assert!(out
        .after
        .as_deref()
        .is_some_and(|a| a.contains("partner.example")));
    // An inline list stays inline.
    let out = apply_ok(Change::AddPeer {
        domain: "b.example".into(),
        direction: Direction::Inbound,
        peer: "198.51.100.0/24".into(),
        rule: RuleText {
            level: "opportunistic".into(),
            min_tls: None,
        },
        enabled: false,
    });
    assert!(out.text.contains("inbound.peers = [{ peer = \"192.0.2.1\", level = \"mandatory\" }, { peer = \"198.51.100.0/24\", level = \"opportunistic\", enabled = false }]"), "{}", out.text);
}

#[test]
fn peers_are_found_as_the_policy_compares_them() {
    let out = apply_ok(Change::EditPeer {
        domain: "acme.example".into(),
        direction: Direction::Outbound,
        peer: "BANK.example.".into(),
        level: Some("mandatory".into()),
        min_tls: None,
        enabled: Some(false),
    });
    assert!(
        out.text.contains(
            "peer = \"bank.example\"\nlevel = \"mandatory\" # since May\nenabled = false\n"
        ),
        "{}",
        out.text
    );
    let out = apply_ok(Change::RemovePeer {
        domain: "acme.example".into(),
        direction: Direction::Outbound,
        peer: "bank.example".into(),
    });
    assert!(!out.text.contains("bank.example"), "{}", out.text);
    assert_eq!(
        apply(
            FILE,
            "acme",
            &Change::RemovePeer {
                domain: "acme.example".into(),
                direction: Direction::Inbound,
                peer: "bank.example".into(),
            }
        ),
        Err(EditError::NoPeer {
            domain: "acme.example".into(),
            direction: Direction::Inbound,
            peer: "bank.example".into()
        })
    );
}

#[test]
fn domains_are_added_disabled_defaulted_and_removed() {
    let out = apply_ok(Change::AddDomain {
        domain: "new.example".into(),
        enabled: false,
    });
    assert!(
        out.text
            .ends_with("[[domains]]\nname = \"new.example\"\ntenant = \"acme\"\nenabled = false\n"),
        "{}",
        out.text
    );
    assert_eq!(out.before, None);
    assert!(matches!(
        apply(
            FILE,
            "acme",
            &Change::AddDomain {
                domain: "Acme.Example".into(),
                enabled: true
            }
        ),
        Err(EditError::DomainExists { .. })
    ));
    let out = apply_ok(Change::SetDefault {
        domain: "acme.example".into(),
        direction: Direction::Inbound,
        rule: Some(RuleText {
            level: "mandatory".into(),
            min_tls: None,
        }),
    });
    assert!(
        out.text
            .contains("[domains.inbound]\ndefault = { level = \"mandatory\" }\n"),
        "{}",
        out.text
    );
    let out = apply_ok(Change::SetDomainEnabled {
        domain: "b.example".into(),
        enabled: false,
    });
    assert!(
        out.text
            .ends_with("level = \"mandatory\" }]\nenabled = false\n"),
        "{}",
        out.text
    );
    let out = apply_ok(Change::RemoveDomain {
        domain: "acme.example".into(),
    });
    assert!(
        !out.text.contains("acme.example") && out.text.contains("b.example"),
        "{}",
        out.text
    );
    assert_eq!(out.after, None);
}

#[test]
fn field_paths_name_the_key_at_a_position() {
    assert_eq!(
        field_path(FILE, 13, 9).as_deref(),
        Some("domains[0].outbound.peers[0].level")
    );
    assert_eq!(field_path(FILE, 7, 1).as_deref(), Some("domains[0].name"));
    assert_eq!(
        field_path(FILE, 18, 30).as_deref(),
        Some("domains[1].inbound.peers[0].peer")
    );
}
