//! Configuration tests: the typed result of a good file, and one case per
//! kind of error asserting file, line and reason, plus all-at-once reporting.

use std::path::Path;

use super::*;
use crate::policy::{Direction, MinTlsVersion, NameError, PeerQuery, Reason, SecurityLevel};

const FILE: &str = "test.toml";

fn errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text, FILE, None) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

const GOOD: &str = r#"
[server]
hostname = "MX.Gateway.example."
data_dir = "/var/lib/sealpost"

[[listeners]]
address = "0.0.0.0:25"
[[listeners]]
address = "[::]:25"

[logging]
format = "json"
level = "sealpost=debug,info"

[defaults]
outbound = { level = "opportunistic-dane" }
inbound = { level = "opportunistic", min_tls = "1.2" }

[[domains]]
name = "example.com"
tenant = "acme"
outbound.default = { level = "mandatory", min_tls = "1.2" }

[[domains.outbound.peers]]
peer = "*.bank.example"
level = "mandatory-dane"
min_tls = "1.3"

[[domains.inbound.peers]]
peer = "192.0.2.0/24"
level = "mandatory"
enabled = false

[[domains]]
name = "off.example"
tenant = "beta"
enabled = false
"#;

#[test]
fn a_good_file_becomes_the_typed_model() {
    let config = Config::parse(GOOD, FILE, Some(Path::new("/etc/sealpost"))).expect("valid");
    assert_eq!(config.server.hostname.as_str(), "mx.gateway.example");
    assert_eq!(config.server.data_dir, Path::new("/var/lib/sealpost"));
    assert_eq!(
        config.admin.socket,
        Path::new("/var/lib/sealpost/admin.sock")
    );
    let addrs: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    assert_eq!(addrs, ["0.0.0.0:25", "[::]:25"]);
    assert_eq!(config.logging.format, crate::logging::LogFormat::Json);
    assert_eq!(config.logging.level, "sealpost=debug,info");
    let policy = &config.policy;
    assert_eq!(
        policy.defaults().outbound.level,
        SecurityLevel::OpportunisticDane
    );
    assert_eq!(policy.defaults().outbound.min_tls, MinTlsVersion::Any);
    assert_eq!(policy.defaults().inbound.min_tls, MinTlsVersion::Tls12);
    assert_eq!(policy.domains().len(), 2);
    assert!(!policy.domains()[1].enabled);
    let example = policy.domain("EXAMPLE.COM").expect("managed");
    assert_eq!(example.inbound.peers.len(), 1);
    assert!(!example.inbound.peers[0].enabled);
    let r = policy.resolve(
        "example.com",
        PeerQuery::Outbound {
            recipient_domain: "mx.bank.example",
        },
    );
    assert_eq!(
        (r.level, r.min_tls),
        (SecurityLevel::MandatoryDane, MinTlsVersion::Tls13)
    );
    assert!(matches!(r.reason, Reason::PeerWildcard { .. }));
}

#[test]
fn relative_paths_follow_the_file_and_defaults_fill_in() {
    let config = Config::parse("", FILE, Some(Path::new("/srv/gw"))).expect("valid");
    assert_eq!(config.server.data_dir, Path::new("/srv/gw/data"));
    assert_eq!(config.admin.socket, Path::new("/srv/gw/data/admin.sock"));
    assert_eq!(config.server.hostname.as_str(), "localhost");
    assert_eq!(config.listeners.len(), 1);
    let config = Config::parse(
        "[admin]\nsocket = \"run/a.sock\"\n",
        FILE,
        Some(Path::new("/srv/gw")),
    )
    .expect("valid");
    assert_eq!(config.admin.socket, Path::new("/srv/gw/run/a.sock"));
    let embedded = Config::embedded_default().expect("the embedded default is valid");
    assert_eq!(embedded.server.data_dir, Path::new("data"));
    assert_eq!(embedded.listeners[0].address.to_string(), "127.0.0.1:2525");
    assert!(embedded.policy.domains().is_empty());
}

type Check = fn(&ConfigErrorKind) -> bool;

const DOMAIN: &str = "[[domains]]\nname = \"example.com\"\ntenant = \"t\"\n";

#[test]
fn each_kind_of_error_names_file_line_and_reason() {
    let cases: Vec<(String, usize, Check)> = vec![
        ("[server\nhostname = 1".into(), 1, |k| matches!(k, ConfigErrorKind::Syntax(_))),
        ("[server]\nhostname = 1\n".into(), 2, |k| matches!(k, ConfigErrorKind::Syntax(m) if m.contains("string"))),
        ("[server]\nhost = \"a\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::Syntax(m) if m.contains("unknown field"))),
        ("[mystery]\nx = 1\n".into(), 1, |k| matches!(k, ConfigErrorKind::Syntax(m) if m.contains("unknown field"))),
        ("[tls]\nx = 1\n".into(), 2, |k| matches!(k, ConfigErrorKind::Syntax(m) if m.contains("unknown field"))),
        ("[server]\nhostname = \"bad_host\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::BadDomain { reason: NameError::BadCharacter('_'), .. })),
        ("[server]\ndata_dir = \"\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::Empty { key: "server.data_dir" })),
        ("[[listeners]]\naddress = \"127.0.0.1\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::BadListenAddress { .. })),
        ("[[listeners]]\naddress = \"[::1]:25\"\n[[listeners]]\naddress = \"[::1]:25\"\n".into(), 4, |k| matches!(k, ConfigErrorKind::DuplicateListener { first_line: 2, .. })),
        ("listeners = []\n".into(), 1, |k| matches!(k, ConfigErrorKind::NoListeners)),
        ("[logging]\nformat = \"xml\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::UnknownWord(w) if w.what == "log format")),
        ("[logging]\nlevel = \"sealpost=loud\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::BadLogLevel { .. })),
        ("[defaults]\noutbound = { level = \"strict\" }\n".into(), 2, |k| matches!(k, ConfigErrorKind::UnknownWord(w) if w.what == "security level" && w.given == "strict")),
        ("[defaults]\ninbound = { level = \"mandatory\", min_tls = \"1.1\" }\n".into(), 2, |k| matches!(k, ConfigErrorKind::UnknownWord(w) if w.what == "minimum TLS version")),
        ("[defaults]\ninbound = { level = \"mta-sts\" }\n".into(), 2, |k| matches!(k, ConfigErrorKind::LevelNotAllowed { level: SecurityLevel::MtaSts, direction: Direction::Inbound })),
        (format!("{DOMAIN}inbound.default = {{ level = \"opportunistic-dane\" }}\n"), 4, |k| matches!(k, ConfigErrorKind::LevelNotAllowed { level: SecurityLevel::OpportunisticDane, .. })),
        (format!("{DOMAIN}[[domains.inbound.peers]]\npeer = \"192.0.2.1\"\nlevel = \"mandatory-dane\"\n"), 6, |k| matches!(k, ConfigErrorKind::LevelNotAllowed { level: SecurityLevel::MandatoryDane, direction: Direction::Inbound })),
        (format!("{DOMAIN}[[domains.outbound.peers]]\npeer = \"gmail.com\"\nlevel = \"dane\"\n"), 6, |k| matches!(k, ConfigErrorKind::UnknownWord(w) if w.given == "dane")),
        ("[[domains]]\nname = \"exa mple.com\"\ntenant = \"t\"\n".into(), 2, |k| matches!(k, ConfigErrorKind::BadDomain { reason: NameError::BadCharacter(' '), .. })),
        ("[[domains]]\nname = \"example.com\"\ntenant = \" \"\n".into(), 3, |k| matches!(k, ConfigErrorKind::Empty { key: "domains.tenant" })),
        ("[[domains]]\nname = \"example.com\"\n".into(), 1, |k| matches!(k, ConfigErrorKind::Syntax(m) if m.contains("tenant"))),
        (format!("{DOMAIN}[[domains]]\nname = \"Example.COM.\"\ntenant = \"u\"\n"), 5, |k| matches!(k, ConfigErrorKind::DuplicateDomain { first_line: 2, .. })),
        (format!("{DOMAIN}[[domains.outbound.peers]]\npeer = \"gmail.com\"\nlevel = \"mandatory\"\n[[domains.outbound.peers]]\npeer = \"GMAIL.com\"\nlevel = \"mta-sts\"\n"), 8, |k| matches!(k, ConfigErrorKind::DuplicatePeer { first_line: 5, direction: Direction::Outbound, .. })),
        (format!("{DOMAIN}inbound.peers = [{{ peer = \"10.0.0.0/8\", level = \"mandatory\" }}, {{ peer = \"10.0.0.0/8\", level = \"opportunistic\", enabled = false }}]\n"), 4, |k| matches!(k, ConfigErrorKind::DuplicatePeer { direction: Direction::Inbound, first_line: 4, .. })),
        (format!("{DOMAIN}[[domains.inbound.peers]]\npeer = \"10.1.2.3/8\"\nlevel = \"mandatory\"\n"), 5, |k| matches!(k, ConfigErrorKind::BadPeer { reason: NameError::HostBitsSet { .. }, .. })),
        (format!("{DOMAIN}[[domains.inbound.peers]]\npeer = \"10.0.0.0/33\"\nlevel = \"mandatory\"\n"), 5, |k| matches!(k, ConfigErrorKind::BadPeer { reason: NameError::BadAddress { .. }, .. })),
        (format!("{DOMAIN}[[domains.inbound.peers]]\npeer = \"2001:db8::g\"\nlevel = \"mandatory\"\n"), 5, |k| matches!(k, ConfigErrorKind::BadPeer { reason: NameError::BadAddress { .. }, .. })),
        (format!("{DOMAIN}[[domains.outbound.peers]]\npeer = \"mx.*.example\"\nlevel = \"mandatory\"\n"), 5, |k| matches!(k, ConfigErrorKind::BadPeer { reason: NameError::BadWildcard(_), .. })),
        (format!("{DOMAIN}[[domains.outbound.peers]]\npeer = \"*.\"\nlevel = \"mandatory\"\n"), 5, |k| matches!(k, ConfigErrorKind::BadPeer { reason: NameError::BadWildcard(_), .. })),
        (format!("{DOMAIN}[[domains.outbound.peers]]\npeer = \"192.0.2.0/24\"\nlevel = \"mandatory\"\n"), 5, |k| matches!(k, ConfigErrorKind::AddressPeerOutbound { .. })),
        (format!("{DOMAIN}[[domains.outbound.peers]]\npeer = \"a.example\"\nlevel = \"mandatory\"\ntls = \"1.3\"\n"), 7, |k| matches!(k, ConfigErrorKind::Syntax(m) if m.contains("unknown field"))),
    ];
    for (text, line, check) in cases {
        let errs = errors(&text);
        assert_eq!(
            errs.len(),
            1,
            "one error expected for:\n{text}\ngot: {errs:?}"
        );
        let e = &errs[0];
        assert_eq!(e.file, FILE);
        assert_eq!(e.line(), Some(line), "line for:\n{text}\ngot: {e}");
        assert!(check(&e.kind), "reason for:\n{text}\ngot: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{FILE}:{line}:")), "{shown}");
    }
}

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let text = r#"
[server]
hostname = "-bad"

[[listeners]]
address = "localhost:25"

[defaults]
inbound = { level = "mandatory-dane" }

[[domains]]
name = "a.example"
tenant = "t"
outbound.default = { level = "sometimes" }
inbound.peers = [
  { peer = "10.0.0.1/8", level = "mandatory" },
  { peer = "*.b.example", level = "mta-sts" },
]

[[domains]]
name = "A.example"
tenant = "t"
outbound.peers = [{ peer = "x..example", level = "mandatory", min_tls = "1.0" }]
"#;
    let errs = errors(text);
    let lines: Vec<Option<usize>> = errs.iter().map(ConfigError::line).collect();
    assert_eq!(
        lines,
        [
            Some(3),
            Some(6),
            Some(9),
            Some(14),
            Some(16),
            Some(17),
            Some(21),
            Some(23),
            Some(23)
        ],
        "{}",
        ConfigErrors(errs.clone())
    );
    assert!(matches!(errs[4].kind, ConfigErrorKind::BadPeer { .. }));
    assert!(matches!(
        errs[6].kind,
        ConfigErrorKind::DuplicateDomain { first_line: 12, .. }
    ));
    let shown = ConfigErrors(errs).to_string();
    assert_eq!(shown.lines().count(), 9);
}

#[test]
fn syntax_errors_from_the_parser_have_positions() {
    let errs = errors("[server]\nhostname = \"a\nx = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].location.is_some(), "{:?}", errs[0]);
    assert_eq!(errs[0].line(), Some(2));
}

#[test]
fn tenants_relay_sources_are_validated_and_indexed() {
    let good = r#"
[[domains]]
name = "acme.example"
tenant = "acme"

[[tenants]]
name = "acme"
relay_sources = ["192.0.2.0/24", "2001:db8::7"]

[[tenants]]
name = "other"
relay_sources = ["192.0.2.128/25"]
"#;
    let config = Config::parse(good, FILE, None).expect("valid");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let tenant = |s: &str| {
        config
            .relay
            .tenant_of(ip(s))
            .map(|t| t.as_str().to_string())
    };
    assert_eq!(tenant("192.0.2.1").as_deref(), Some("acme"));
    assert_eq!(
        tenant("192.0.2.200").as_deref(),
        Some("other"),
        "longest prefix wins"
    );
    assert_eq!(tenant("2001:db8::7").as_deref(), Some("acme"));
    assert_eq!(tenant("198.51.100.1"), None);
    let policy = &config.policy;
    assert!(config
        .relay
        .authorize(ip("192.0.2.1"), Some("acme.example"), policy)
        .is_ok());
    assert!(config
        .relay
        .authorize(ip("192.0.2.200"), Some("acme.example"), policy)
        .is_err());
    assert!(config
        .relay
        .authorize(ip("192.0.2.1"), None, policy)
        .is_err());

    let bad = r#"
[[tenants]]
name = "acme"
relay_sources = ["192.0.2.1/24", "not-an-ip", "10.0.0.0/8"]

[[tenants]]
name = "acme"

[[tenants]]
name = "b"
relay_sources = ["10.0.0.0/8"]
"#;
    let found = errors(bad);
    let shown: Vec<String> = found.iter().map(|e| e.to_string()).collect();
    assert_eq!(found.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("test.toml:4:") && shown[0].contains("host bits"),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].starts_with("test.toml:4:") && shown[1].contains("not-an-ip"),
        "{}",
        shown[1]
    );
    assert!(
        shown[2].starts_with("test.toml:7:") && shown[2].contains("twice"),
        "{}",
        shown[2]
    );
    assert!(
        shown[3].starts_with("test.toml:11:") && shown[3].contains("first at line 4"),
        "{}",
        shown[3]
    );
}

#[test]
fn tls_certificates_need_their_keys_and_unique_names() {
    let good = r#"
[tls]
certificate = "certs/mx.crt"
key = "certs/mx.key"

[[tls.sni]]
name = "MX2.example."
certificate = "/etc/ssl/mx2.crt"
key = "/etc/ssl/mx2.key"
"#;
    let config = Config::parse(good, FILE, Some(Path::new("/etc/sealpost"))).expect("valid");
    let default = config.tls.default.expect("a default certificate");
    assert_eq!(default.certificate, Path::new("/etc/sealpost/certs/mx.crt"));
    assert_eq!(config.tls.sni.len(), 1);
    assert_eq!(config.tls.sni[0].0.as_str(), "mx2.example");

    let bad = r#"
[tls]
certificate = "mx.crt"

[[tls.sni]]
name = "mx2.example"
certificate = "a.crt"
key = "a.key"

[[tls.sni]]
name = "mx2.example"
certificate = "b.crt"
key = "b.key"
"#;
    let shown: Vec<String> = errors(bad).iter().map(|e| e.to_string()).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(
        shown[0].starts_with("test.toml:3:") && shown[0].contains("without `tls.key`"),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].starts_with("test.toml:11:") && shown[1].contains("first at line 6"),
        "{}",
        shown[1]
    );
}

#[test]
fn recipients_files_are_read_relative_to_the_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("lists")).expect("mkdir");
    std::fs::write(
        dir.path().join("lists/example.txt"),
        "# people\nalice\nBob@Example.com\n",
    )
    .expect("write");
    let text = r#"
[[domains]]
name = "Example.COM"
tenant = "acme"
recipients = "lists/example.txt"

[[domains]]
name = "open.example"
tenant = "acme"
"#;
    let config = Config::parse(text, FILE, Some(dir.path())).expect("valid");
    let list = config.recipients.get("example.com").expect("a list");
    assert_eq!(list.path(), dir.path().join("lists/example.txt"));
    assert!(list.accepts("ALICE") && list.accepts("bob") && list.accepts("postmaster"));
    assert!(!list.accepts("carol"));
    assert!(!config.recipients.contains_key("open.example"));
}

#[test]
fn recipients_file_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("bad.txt");
    std::fs::write(&list, "alice\nbob@other.example\n\n  not valid\n").expect("write");
    let text = r#"
[[domains]]
name = "example.com"
tenant = "acme"
recipients = "bad.txt"

[[domains]]
name = "two.example"
tenant = "acme"
recipients = "missing.txt"

[[domains]]
name = "three.example"
tenant = "acme"
recipients = ""
"#;
    let shown: Vec<String> = match Config::parse(text, FILE, Some(dir.path())) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigErrors(errors)) => errors.iter().map(|e| e.to_string()).collect(),
    };
    let list = list.display().to_string();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("test.toml:10:") && shown[0].contains("missing.txt"),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].starts_with("test.toml:15:") && shown[1].contains("may not be empty"),
        "{}",
        shown[1]
    );
    assert!(
        shown[2].starts_with(&format!("{list}:2:1: bad recipient `bob@other.example`")),
        "{}",
        shown[2]
    );
    assert!(
        shown[3].starts_with(&format!("{list}:4:3: bad recipient `not valid`")),
        "{}",
        shown[3]
    );
}

#[test]
fn hosted_mta_sts_is_validated_with_lines() {
    let good = r#"
[mta_sts_host]
listen = ["127.0.0.1:8443", "[::1]:8443"]

[[domains]]
name = "Example.org"
tenant = "t"

[domains.mta_sts]
mode = "enforce"
mx = ["mx1.example.net", "*.example.net"]
max_age = 86400
tlsrpt = ["mailto:tls@example.org", "https://reports.example.org/v1"]

[[domains]]
name = "off.example"
tenant = "t"
enabled = false
mta_sts = { mode = "none" }
"#;
    let config = Config::parse(good, FILE, None).expect("valid");
    assert_eq!(config.mta_sts_host.listen.len(), 2);
    let hosted = config.hosted_mta_sts.get("example.org").expect("hosted");
    assert_eq!(hosted.policy.mode, crate::mta_sts::Mode::Enforce);
    assert_eq!(hosted.policy.mx.len(), 2);
    assert_eq!(hosted.policy.max_age, 86400);
    assert_eq!(hosted.tlsrpt.len(), 2);
    assert!(!hosted.tlsrpt_is_default);
    let off = config.hosted_mta_sts.get("off.example").expect("hosted");
    assert_eq!(off.policy.max_age, 604800);
    assert_eq!(off.tlsrpt, vec!["mailto:tlsrpt@off.example".to_string()]);
    // Only enabled domains are served.
    let served: Vec<String> = config
        .hosted_policies()
        .into_iter()
        .map(|p| p.domain)
        .collect();
    assert_eq!(served, vec!["example.org".to_string()]);

    let bad = r#"
[mta_sts_host]
listen = ["localhost:443"]

[[domains]]
name = "a.example"
tenant = "t"
mta_sts = { mode = "strict", mx = ["mx.a.example"] }

[[domains]]
name = "b.example"
tenant = "t"
mta_sts = { mode = "enforce", mx = ["mx..b.example"], max_age = 31557601 }

[[domains]]
name = "c.example"
tenant = "t"
mta_sts = { mode = "testing", tlsrpt = "ftp://x" }
"#;
    let shown: Vec<String> = errors(bad).iter().map(|e| e.to_string()).collect();
    let want = [
        ("test.toml:3:", "bad listener address `localhost:443`"),
        ("test.toml:8:", "unknown MTA-STS mode `strict`"),
        ("test.toml:13:", "bad MTA-STS mx pattern"),
        ("test.toml:13:", "max_age 31557601 is out of range"),
        ("test.toml:18:", "mode `testing` needs at least one `mx`"),
        ("test.toml:18:", "bad TLSRPT destination"),
    ];
    assert_eq!(shown.len(), want.len(), "{shown:#?}");
    for (got, (at, what)) in shown.iter().zip(want) {
        assert!(got.starts_with(at) && got.contains(what), "{got}");
    }
}

#[test]
fn tenant_users_are_validated_with_lines() {
    let hash = crate::auth::hash_password(b"pw", crate::auth::MIN_ITERATIONS)
        .expect("hash")
        .to_string();
    let good = format!(
        r#"
[[tenants]]
name = "acme"
users = [{{ name = "Relay@Acme", password_hash = "{hash}" }}]
"#
    );
    let config = Config::parse(&good, FILE, None).expect("valid");
    let user = config.users.get("relay@acme").expect("any case");
    assert_eq!(user.tenant.as_str(), "acme");
    assert!(user.hash.verify(b"pw"));

    let bad = format!(
        r#"
[[tenants]]
name = "acme"
users = [
  {{ name = "relay@acme", password_hash = "{hash}" }},
  {{ name = "two words", password_hash = "{hash}" }},
]

[[tenants]]
name = "globex"
users = [
  {{ name = "RELAY@acme", password_hash = "{hash}" }},
  {{ name = "g", password_hash = "md5$1$2$3" }},
]
"#
    );
    let shown: Vec<String> = errors(&bad).iter().map(|e| e.to_string()).collect();
    let want = [
        ("test.toml:6:", "bad user name `two words`"),
        (
            "test.toml:12:",
            "configured twice (first at line 5, for tenant `acme`)",
        ),
        ("test.toml:13:", "bad password hash: unknown scheme `md5`"),
    ];
    assert_eq!(shown.len(), want.len(), "{shown:#?}");
    for (got, (at, what)) in shown.iter().zip(want) {
        assert!(got.starts_with(at) && got.contains(what), "{got}");
    }
}

#[test]
fn delivery_dns_and_routes_are_read() {
    let config = Config::parse(
        r#"
[delivery]
smtp_port = 2526
first_retry = "1s"
lifetime = "2h"
delay_warning = "4h"
connections_per_destination = 4
in_flight_per_tenant_destination = 8
command_timeout = "10s"

[dns]
nameservers = ["127.0.0.1:5353", "::1"]
trust_anchor = "anchor.keys"

[mta_sts]
https_port = 8443

[[domains]]
name = "Customer.Example"
tenant = "c"
route = { hosts = ["127.0.0.1:2600", "mail.customer.example"], level = "mandatory", min_tls = "1.2" }
"#,
        FILE,
        Some(Path::new("/etc/sealpost")),
    )
    .expect("valid");
    assert_eq!(config.delivery.smtp_port, 2526);
    assert_eq!(config.delivery.retry.first_retry.as_secs(), 1);
    assert_eq!(config.delivery.retry.lifetime.as_secs(), 7200);
    assert_eq!(
        config.delivery.delay_warning.map(|d| d.as_secs()),
        Some(4 * 3600)
    );
    assert_eq!(config.delivery.connections_per_destination, 4);
    assert_eq!(config.delivery.in_flight_per_tenant_destination, 8);
    assert_eq!(config.dns.nameservers.len(), 2);
    assert_eq!(config.dns.nameservers[1].port(), 53);
    assert_eq!(
        config.dns.trust_anchor.as_deref(),
        Some(Path::new("/etc/sealpost/anchor.keys"))
    );
    assert_eq!(config.mta_sts.https_port, 8443);
    let name: crate::policy::DomainName = "customer.example".parse().expect("name");
    let route = config.routes.get(&name).expect("route");
    assert_eq!(route.tls, crate::config::RouteTls::Mandatory);
    assert_eq!(route.min_tls, MinTlsVersion::Tls12);
    assert_eq!(route.hosts[1].to_string(), "mail.customer.example:25");
}

#[test]
fn bad_delivery_values_are_reported_with_their_lines() {
    let errs = errors(
        r#"[delivery]
first_retry = "soon"
connections_per_destination = 0

[dns]
nameservers = ["resolver.example"]

[[domains]]
name = "customer.example"
tenant = "c"
route = { hosts = ["mail.example:x"], level = "mandatory-dane" }
"#,
    );
    let lines: Vec<_> = errs
        .iter()
        .map(|e| (e.line(), e.kind.to_string()))
        .collect();
    assert_eq!(errs.len(), 5, "{lines:?}");
    assert!(matches!(errs[0].kind, ConfigErrorKind::BadDuration { .. }));
    assert_eq!(errs[0].line(), Some(2));
    assert!(matches!(errs[1].kind, ConfigErrorKind::OutOfRange { .. }));
    assert!(matches!(errs[2].kind, ConfigErrorKind::BadAddress { .. }));
    assert_eq!(errs[2].line(), Some(6));
    assert!(matches!(errs[3].kind, ConfigErrorKind::BadRouteHost { .. }));
    assert!(matches!(errs[4].kind, ConfigErrorKind::RouteLevel { .. }));
    assert_eq!(errs[4].line(), Some(11));
}

#[test]
fn a_route_can_require_authenticated_servers() {
    let config = Config::parse(
        r#"[[domains]]
name = "a.example"
tenant = "c"
route = { hosts = ["mail.a.example"], authenticate = "webpki" }

[[domains]]
name = "b.example"
tenant = "c"
route = { hosts = ["mail.b.example"] }
"#,
        FILE,
        None,
    )
    .expect("valid");
    let route = |name: &str| {
        let name: crate::policy::DomainName = name.parse().expect("name");
        config.routes.get(&name).expect("route").clone()
    };
    let a = route("a.example");
    assert_eq!(a.tls, crate::config::RouteTls::WebPki);
    assert_eq!(a.tls.level(), SecurityLevel::Mandatory, "implied by webpki");
    let b = route("b.example");
    assert_eq!(b.tls, crate::config::RouteTls::Opportunistic);

    let errs = errors(
        r#"[[domains]]
name = "a.example"
tenant = "c"
route = { hosts = ["mail.a.example"], authenticate = "webpki", level = "opportunistic" }

[[domains]]
name = "b.example"
tenant = "c"
route = { hosts = ["mail.b.example"], authenticate = "dane" }
"#,
    );
    let lines: Vec<_> = errs
        .iter()
        .map(|e| (e.line(), e.kind.to_string()))
        .collect();
    assert_eq!(errs.len(), 2, "{lines:?}");
    assert!(matches!(
        errs[0].kind,
        ConfigErrorKind::RouteAuthenticationLevel
    ));
    assert_eq!(errs[0].line(), Some(4));
    assert!(
        errs[1]
            .kind
            .to_string()
            .contains("expected one of: none, webpki"),
        "{lines:?}"
    );
    assert_eq!(errs[1].line(), Some(9));
}

#[test]
fn in_flight_per_tenant_destination_must_be_positive() {
    for bad in ["0", "-3"] {
        let errs = errors(&format!(
            "[delivery]\nin_flight_per_tenant = 10\nin_flight_per_tenant_destination = {bad}\n"
        ));
        assert_eq!(errs.len(), 1, "{bad}");
        assert!(matches!(
            errs[0].kind,
            ConfigErrorKind::OutOfRange {
                key: "delivery.in_flight_per_tenant_destination",
                ..
            }
        ));
        assert_eq!(errs[0].line(), Some(3), "{bad}");
    }
    let defaults = Config::parse("", FILE, None).expect("valid");
    assert_eq!(defaults.delivery.in_flight_per_tenant_destination, 64);
}

#[test]
fn managed_domains_are_indexed_by_tenant_once() {
    let config = Config::parse(
        r#"
[[domains]]
name = "b.example"
tenant = "acme"

[[domains]]
name = "a.example"
tenant = "acme"

[[domains]]
name = "off.example"
tenant = "acme"
enabled = false

[[domains]]
name = "other.example"
tenant = "beta"
"#,
        FILE,
        None,
    )
    .expect("valid");
    let domains = |t: &str| config.tenant_domains.get(t).map(|d| d.to_vec());
    assert_eq!(
        domains("acme"),
        Some(vec!["a.example".to_string(), "b.example".to_string()])
    );
    assert_eq!(domains("beta"), Some(vec!["other.example".to_string()]));
    assert_eq!(domains("nobody"), None);
}

#[test]
fn admin_group_and_metrics_listener_are_validated() {
    let config = Config::parse(
        "[admin]\ngroup = \"sealpost-admin\"\nmetrics_listen = \"127.0.0.1:9925\"\n",
        FILE,
        None,
    )
    .expect("valid");
    assert_eq!(config.admin.group.as_deref(), Some("sealpost-admin"));
    assert_eq!(
        config.admin.metrics_listen.map(|a| a.to_string()),
        Some("127.0.0.1:9925".to_string())
    );
    let defaults = Config::parse("", FILE, None).expect("valid");
    assert_eq!(
        (defaults.admin.group, defaults.admin.metrics_listen),
        (None, None)
    );
    let cases: Vec<(&str, usize, Check)> = vec![
        ("[admin]\ngroup = \"\"\n", 2, |k| {
            matches!(k, ConfigErrorKind::Empty { key: "admin.group" })
        }),
        ("[admin]\ngroup = \"a:b\"\n", 2, |k| {
            matches!(k, ConfigErrorKind::BadAdminGroup { .. })
        }),
        ("[admin]\nmetrics_listen = \"localhost\"\n", 2, |k| {
            matches!(k, ConfigErrorKind::BadMetricsListen { .. })
        }),
    ];
    for (text, line, check) in cases {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{text}: {errs:?}");
        assert_eq!(errs[0].line(), Some(line), "{text}");
        assert!(check(&errs[0].kind), "{text}: {}", errs[0]);
    }
}

/// International names in U-labels are converted to A-labels at load:
/// managed domain, peer names and wildcards, hosted `mx` patterns; lookups
/// in either form then find them.
#[test]
fn international_names_are_converted_to_a_labels_at_load() {
    let text = r#"
[[domains]]
name = "Bücher.example"
tenant = "t"
outbound.default = { level = "opportunistic" }
outbound.peers = [
  { peer = "*.münchen.example", level = "mandatory", min_tls = "1.3" },
  { peer = "xn--zrich-kva.example", level = "mandatory-dane" },
]
inbound.peers = [{ peer = "straße.example", level = "mandatory" }]

[domains.mta_sts]
mode = "enforce"
mx = ["*.bücher.example"]
"#;
    let config = Config::parse(text, FILE, None).expect("valid");
    let policy = &config.policy;
    let domain = policy.domain("xn--bcher-kva.example").expect("managed");
    assert_eq!(domain.name.as_str(), "xn--bcher-kva.example");
    let out = |from: &str, to: &str| {
        policy
            .resolve(
                from,
                PeerQuery::Outbound {
                    recipient_domain: to,
                },
            )
            .level
    };
    for (from, to, level) in [
        (
            "bücher.example",
            "mx.münchen.example",
            SecurityLevel::Mandatory,
        ),
        (
            "xn--bcher-kva.example",
            "mx.xn--mnchen-3ya.example",
            SecurityLevel::Mandatory,
        ),
        (
            "bücher.example",
            "zürich.example",
            SecurityLevel::MandatoryDane,
        ),
        (
            "xn--bcher-kva.example",
            "xn--zrich-kva.example",
            SecurityLevel::MandatoryDane,
        ),
        (
            "bücher.example",
            "munchen.example",
            SecurityLevel::Opportunistic,
        ),
    ] {
        assert_eq!(out(from, to), level, "{from} -> {to}");
    }
    let inbound = policy.resolve(
        "xn--bcher-kva.example",
        PeerQuery::Inbound {
            ip: None,
            sender_domain: Some("xn--strae-oqa.example"),
        },
    );
    assert_eq!(inbound.level, SecurityLevel::Mandatory);
    let hosted = config
        .hosted_mta_sts
        .get("xn--bcher-kva.example")
        .expect("hosted");
    assert_eq!(hosted.policy.mx[0].to_string(), "*.xn--bcher-kva.example");
    assert!(hosted.policy.mx[0].matches("mx1.bücher.example"));
}

/// A file read in domain sections (issue 17) gives the same errors, at the
/// same lines, as one read whole: sections between other tables, and a
/// syntax error in a later section.
#[test]
fn domain_sections_keep_their_lines() {
    let text = "\
[server]
hostname = \"gw.example\"

[[domains]]
name = \"a.example\"
tenant = \"t\"

[[domains.outbound.peers]]
peer = \"10.0.0.1\"
level = \"mandatory\"

[limits]
max_recipients = 10

[[domains]]
name = \"b.example\"
tenant = \"t\"
inbound.default = { level = \"sometimes\" }
";
    let errs = errors(text);
    let lines: Vec<_> = errs.iter().map(|e| e.line()).collect();
    assert_eq!(lines, [Some(9), Some(18)], "{errs:?}");
    let config = Config::parse(
        &text
            .replace("sometimes", "mandatory")
            .replace("10.0.0.1", "x.example"),
        FILE,
        None,
    )
    .expect("valid once fixed");
    assert_eq!(config.limits.max_recipients, 10);
    assert_eq!(config.policy.domains().len(), 2);
    assert_eq!(config.policy.domains()[1].name.as_str(), "b.example");

    let broken = "[[domains]]\nname = \"a.example\"\ntenant = \"t\"\n\n[[domains]]\nname = \"b.example\"\ntenant = \"t\"\nenabled = maybe\n";
    let errs = errors(broken);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line(), Some(8), "{errs:?}");
    let unknown = "[[domains]]\nname = \"a.example\"\ntenant = \"t\"\ncolour = \"red\"\n";
    assert_eq!(errors(unknown)[0].line(), Some(4));
}

/// One file with enough domains that its sections are parsed on several
/// threads (`crate::parallel`): every error is reported once, with its
/// line, in file order.
#[test]
fn a_large_file_is_checked_on_every_core_with_errors_in_line_order() {
    let mut text = String::from("[server]\nhostname = \"mx.example\"\n");
    for d in 0..5_000 {
        let level = match d {
            7 => "sometimes",
            4_993 => "mandatory-dane",
            _ => "mandatory",
        };
        let name = if d == 2_600 {
            "bad..example".to_owned()
        } else {
            format!("d{d}.example")
        };
        text.push_str(&format!(
            "[[domains]]\nname = \"{name}\"\ntenant = \"t\"\n[[domains.inbound.peers]]\npeer = \"192.0.2.{}\"\nlevel = \"{level}\"\n",
            d % 250
        ));
    }
    // Line of domain d's first line: 2 lines of [server], then 6 per domain.
    let line_of = |d: usize| 3 + 6 * d;
    let found = errors(&text);
    let lines: Vec<usize> = found
        .iter()
        .map(|e| e.location.expect("located").line)
        .collect();
    assert_eq!(
        lines,
        [line_of(7) + 5, line_of(2_600) + 1, line_of(4_993) + 5],
        "{found:?}"
    );
    assert!(
        matches!(found[0].kind, ConfigErrorKind::UnknownWord(_)),
        "{found:?}"
    );
    assert!(
        matches!(found[1].kind, ConfigErrorKind::BadDomain { .. }),
        "{found:?}"
    );
    assert!(
        matches!(found[2].kind, ConfigErrorKind::LevelNotAllowed { .. }),
        "{found:?}"
    );
}

/// A syntax error in one domain section of a large file (its sections read
/// on several threads and checked as they come) is the file's only error,
/// as in a whole read, even when the sections checked before it had
/// errors of their own; of two syntax errors, the first in the file wins,
/// whether it is in a section or in the rest of the file.
#[test]
fn a_syntax_error_in_a_large_file_is_its_only_error() {
    let file = |level_7: &str, enabled_3000: &str, limits: &str| {
        let mut text = String::from("[server]\nhostname = \"mx.example\"\n");
        for d in 0..5_000 {
            let level = if d == 7 { level_7 } else { "mandatory" };
            let enabled = if d == 3_000 { enabled_3000 } else { "true" };
            text.push_str(&format!(
                "[[domains]]\nname = \"d{d}.example\"\ntenant = \"t\"\nenabled = {enabled}\n[[domains.outbound.peers]]\npeer = \"p.example\"\nlevel = \"{level}\"\n"
            ));
        }
        text.push_str(&format!("[limits]\nmax_recipients = {limits}\n"));
        text
    };
    // 2 lines of [server], then 7 per domain, then [limits].
    let enabled_line = 3 + 7 * 3_000 + 3;
    let limits_line = 3 + 7 * 5_000 + 1;
    let only = |text: &str| {
        let found = errors(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            matches!(found[0].kind, ConfigErrorKind::Syntax(_)),
            "{found:?}"
        );
        found[0].location.expect("located").line
    };
    assert_eq!(only(&file("sometimes", "maybe", "10")), enabled_line);
    assert_eq!(only(&file("mandatory", "maybe", "\"ten\"")), enabled_line);
    assert_eq!(only(&file("sometimes", "true", "\"ten\"")), limits_line);
    let fixed = file("mandatory", "true", "10");
    let config = Config::parse(&fixed, FILE, None).expect("valid");
    assert_eq!(config.policy.domains().len(), 5_000);
    assert_eq!(config.policy.partitions().len(), 1);
}
