//! The real `sealpost` binary: `config check` on good and bad files and
//! `policy explain` in text and JSON.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sealpost");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the sealpost binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `policy explain --json` for a session from `ip`, `from` -> `to`: the
/// answer, after checking the command succeeded.
fn explain_json(config: &str, from: &str, to: &str, ip: &str) -> serde_json::Value {
    let out = run(&[
        "--config", config, "policy", "explain", "--from", from, "--to", to, "--ip", ip, "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/sealpost.toml")
        .display()
        .to_string()
}

#[test]
fn config_check_summarizes_a_good_file() {
    let out = run(&["--config", &example(), "config", "check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stdout.contains("managed domains: 4 (1 disabled) of 3 tenants"),
        "{stdout}"
    );
    assert!(
        stdout.contains("recipient lists: 1 (3 addresses)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hosted MTA-STS:  1 of 1 configured served on 0.0.0.0:443, [::]:443"),
        "{stdout}"
    );
    let out = run(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("<embedded default>"));
}

/// Inbound sender-domain entries are claims: one weaker than the domain's
/// inbound default is a warning naming file:line; IP/CIDR entries, equal or
/// stronger ones and disabled ones are not.
#[test]
fn config_check_warns_about_weak_sender_domain_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weak.toml");
    std::fs::write(
        &path,
        "[defaults]\ninbound = { level = \"mandatory\", min_tls = \"1.2\" }\n\
         [[domains]]\nname = \"a.example\"\ntenant = \"t\"\n\
         inbound.default = { level = \"mandatory\" }\n\
         [[domains.inbound.peers]]\npeer = \"partner.example\"\nlevel = \"opportunistic\"\n\
         [[domains.inbound.peers]]\npeer = \"198.51.100.0/24\"\nlevel = \"opportunistic\"\n\
         [[domains.inbound.peers]]\npeer = \"*.strong.example\"\nlevel = \"mandatory\"\nmin_tls = \"1.3\"\n\
         [[domains.inbound.peers]]\npeer = \"off.example\"\nlevel = \"opportunistic\"\nenabled = false\n\
         [[domains]]\nname = \"b.example\"\ntenant = \"t\"\n\
         inbound.peers = [{ peer = \"*.old.example\", level = \"mandatory\" }]\n",
    )
    .expect("write config");
    let file = path.display().to_string();
    let out = run(&["--config", &file, "config", "check"]);
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("warnings:        2 (on stderr)"),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("{file}:8:"))
            && lines[0].contains("warning: inbound peer partner.example of a.example is a sender domain with opportunistic (minimum TLS any), weaker than the inbound default mandatory (minimum TLS any)"),
        "{stderr}"
    );
    // b.example has no inbound default: the global one (min TLS 1.2) counts.
    assert!(
        lines[1].starts_with(&format!("{file}:24:")) && lines[1].contains("*.old.example"),
        "{stderr}"
    );
}

#[test]
fn config_check_prints_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[domains]]\nname = \"a.example\"\ntenant = \"t\"\n\
         inbound.peers = [{ peer = \"10.0.0.0/33\", level = \"mandatory\" }]\n\
         [[domains]]\nname = \"A.EXAMPLE\"\ntenant = \"t\"\n\
         outbound.default = { level = \"sometimes\" }\n",
    )
    .expect("write config");
    let file = path.display().to_string();
    let out = run(&["--config", &file, "config", "check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:4:")) && stderr.contains("10.0.0.0/33"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:6:"))
            && stderr.contains("configured twice (first at line 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:8:")) && stderr.contains("`sometimes`"),
        "{stderr}"
    );
    assert!(stderr.contains("3 errors"), "{stderr}");
    assert!(out.stdout.is_empty());

    let missing = dir.path().join("missing.toml").display().to_string();
    let out = run(&["--config", &missing, "config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read configuration file"));
}

#[test]
fn policy_explain_prints_the_rule_for_people() {
    let config = example();
    let out = run(&[
        "--config",
        &config,
        "policy",
        "explain",
        "--from",
        "ceo@acme.example",
        "--to",
        "x@mx.bank.example",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("direction:      outbound (the sender's domain is managed)"),
        "{stdout}"
    );
    assert!(stdout.contains("level:          mandatory\n"), "{stdout}");
    assert!(stdout.contains("wildcard *.bank.example"), "{stdout}");

    let out = run(&[
        "--config",
        &config,
        "policy",
        "explain",
        "--from",
        "a@acme.example",
        "--to",
        "b@gmail.com",
        "--ip",
        "192.0.2.1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--ip"));
}

#[test]
fn policy_explain_says_when_a_disabled_entry_decides() {
    let config = example();
    let out = run(&[
        "--config",
        &config,
        "policy",
        "explain",
        "--from",
        "ceo@acme.example",
        "--to",
        "x@old.bank.example",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("level:          opportunistic-dane\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "peer entry old.bank.example matches but is disabled (it would be mandatory-dane, minimum TLS any): default for unspecified peers"
        ),
        "{stdout}"
    );

    let json = explain_json(
        &config,
        "someone@partner.example",
        "user@acme.example",
        "198.51.100.99",
    );
    assert_eq!(json["resolution"]["level"], "opportunistic");
    assert_eq!(json["resolution"]["reason"]["rule"], "peer-disabled");
    assert_eq!(
        json["resolution"]["reason"]["entry"]["peer"],
        "198.51.100.99"
    );
    assert_eq!(json["resolution"]["reason"]["source"], "domain");
}

#[test]
fn policy_explain_json_carries_the_reason_as_data() {
    let config = example();
    let json = explain_json(
        &config,
        "someone@partner.example",
        "<user@acme.example>",
        "198.51.100.25",
    );
    assert_eq!(json["direction"], "inbound");
    assert_eq!(json["direction_choice"], "sender-not-managed");
    assert_eq!(json["managed_domain"], "acme.example");
    assert_eq!(json["resolution"]["level"], "mandatory");
    assert_eq!(json["resolution"]["min_tls"], "1.3");
    assert_eq!(json["resolution"]["tenant"], "acme");
    assert_eq!(json["resolution"]["reason"]["rule"], "peer-exact-ip");
    assert_eq!(json["resolution"]["reason"]["ip"], "198.51.100.25");

    let out = run(&[
        "--config",
        &config,
        "policy",
        "explain",
        "--from",
        "a@initech.example",
        "--to",
        "b@gmail.com",
        "--direction",
        "outbound",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["direction_choice"], "given");
    assert_eq!(json["resolution"]["reason"]["rule"], "global-default");
    assert_eq!(json["resolution"]["reason"]["cause"], "disabled-domain");
    assert_eq!(json["resolution"]["level"], "opportunistic-dane");
}

#[test]
fn serve_refuses_a_bad_configuration_and_an_unknown_log_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nhostname = \"mx.test\"\nbogus = 1\n").expect("write");
    let out = run(&["--config", bad.to_str().expect("utf-8 path"), "serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.toml:3"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--log-format", "xml", "serve"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects an unknown format");
}
