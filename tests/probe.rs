//! `sealpost probe` end to end through the real binary, on loopback only:
//! the signed in-process test zone (MX, A, TLSA, `_mta-sts` TXT) is the
//! binary's resolver and trust anchor, STARTTLS SMTP servers play the MX
//! hosts, an HTTPS server plays the MTA-STS policy host.
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use sealpost::smtp::SessionConfig;
use support::dns::{TestDns, TestDnsBuilder};
use support::https::{HttpsServer, Reply};
use support::pki::{self, Leaf, TestCa, ALL_VERSIONS};
use support::sealpost::BIN;
use support::smtp::{accept_all, TestSmtpServer};

/// A configuration file in its own directory.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(
        dns: &TestDns,
        smtp_port: u16,
        https_port: u16,
        ca: Option<&TestCa>,
        extra: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = dns.settings();
        let anchor = match &settings.trust_anchor {
            sealpost::dns::TrustAnchorSource::DnskeyFile(path) => path.clone(),
            other => panic!("test DNS has a file anchor, not {other:?}"),
        };
        let ca_line = match ca {
            Some(ca) => {
                let path = dir.path().join("ca.pem");
                std::fs::write(&path, &ca.cert_pem).expect("write CA");
                format!("ca_file = {:?}", path.display().to_string())
            }
            None => String::new(),
        };
        let text = format!(
            r#"
[server]
hostname = "probe.sealpost.test"
data_dir = "data"

[dns]
nameservers = ["{}"]
trust_anchor = {:?}

[delivery]
smtp_port = {smtp_port}
command_timeout = "10s"

[mta_sts]
https_port = {https_port}
{ca_line}
{extra}
"#,
            dns.addr,
            anchor.display().to_string(),
        );
        let config = dir.path().join("sealpost.toml");
        std::fs::write(&config, text).expect("write config");
        Setup { _dir: dir, config }
    }

    /// Runs `sealpost --config <file> probe <args>` off the runtime thread
    /// (the test servers live on the runtime).
    async fn probe(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&self.config)
            .arg("probe")
            .args(args)
            .env_remove("RUST_LOG");
        tokio::task::spawn_blocking(move || command.output().expect("the sealpost binary runs"))
            .await
            .expect("join")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The line of the per-level summary for `level`.
fn summary_line<'a>(stdout: &'a str, level: &str) -> &'a str {
    let summary = stdout
        .split("what each level would do")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    summary
        .lines()
        .find(|line| {
            line.get(3..)
                .is_some_and(|l| l.starts_with(&format!("{level} ")))
        })
        .unwrap_or_else(|| panic!("no {level} line in {stdout}"))
}

fn dane_zone(domain: &str, mx: &str, tlsa: &[u8]) -> TestDnsBuilder {
    TestDns::builder()
        .mx(domain, 10, mx)
        .a(mx, Ipv4Addr::LOCALHOST)
        .tlsa(&format!("_25._tcp.{mx}"), 3, 1, 1, tlsa)
}

async fn starttls_server(leaf: &Leaf, name: &str) -> TestSmtpServer {
    TestSmtpServer::start(
        name,
        Some(pki::server_config(leaf, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_tlsa_record_authenticates_the_mx_with_dane() {
    let leaf = pki::self_signed(&["mx.dane.test"]);
    let dns = dane_zone("dane.test", "mx.dane.test", &leaf.tlsa_3_1_1())
        .start()
        .await;
    let smtp = starttls_server(&leaf, "mx.dane.test").await;
    let setup = Setup::new(&dns, smtp.addr.port(), 443, None, "");

    let out = setup.probe(&["dane.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for level in ["opportunistic-dane", "mandatory-dane"] {
        let line = summary_line(&stdout, level);
        assert!(
            line.contains("deliver over TLS via mx.dane.test")
                && line.contains("authenticated by DANE"),
            "{line}\n{stdout}"
        );
    }
    assert!(stdout.contains("MX records: DNSSEC secure"), "{stdout}");
    assert!(
        stdout.contains("_25._tcp.mx.dane.test (DNSSEC secure): 3 1 1 "),
        "{stdout}"
    );
    assert!(stdout.contains("DANE-verified via 3 1 1"), "{stdout}");
    assert!(
        stdout.contains("certificate:  CN=") || stdout.contains("certificate:  (empty)"),
        "{stdout}"
    );
    assert!(stdout.contains("names:      mx.dane.test"), "{stdout}");
    // A self-signed certificate is not WebPKI-valid: no policy, so mta-sts
    // is DANE here (usable TLSA records take precedence).
    assert!(stdout.contains("not issued by a trusted CA"), "{stdout}");
    // EHLO, STARTTLS, EHLO, QUIT: never a message.
    assert!(smtp.received().is_empty());

    // The same as one JSON document.
    let out = setup.probe(&["dane.test", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["domain"], "dane.test");
    assert_eq!(json["mx_dnssec"], "secure");
    let address = &json["mx"][0]["addresses"][0];
    assert_eq!(address["starttls"], "offered");
    assert!(address["tls_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("TLS 1.")));
    assert_eq!(address["certificate"]["dane_matched"], true);
    assert_eq!(address["certificate"]["webpki_valid"], false);
    assert_eq!(
        address["certificate"]["chain"][0]["names"][0],
        "mx.dane.test"
    );
    let levels = json["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 5);
    for level in levels {
        assert_eq!(level["outcome"], "deliver", "{level}");
        assert_eq!(level["configured"], false);
    }
    let mandatory_dane = levels
        .iter()
        .find(|l| l["level"] == "mandatory-dane")
        .expect("mandatory-dane");
    assert_eq!(mandatory_dane["authentication"], "dane");
    assert_eq!(mandatory_dane["action"], "deliver-tls");
    let verdicts = address["verdicts"].as_array().expect("verdicts");
    let opportunistic = verdicts
        .iter()
        .find(|v| v["level"] == "opportunistic")
        .expect("opportunistic");
    assert_eq!(opportunistic["authentication"], "none");
    assert_eq!(opportunistic["reason_code"], "tls");
    assert!(json["configured"].is_null());
}

/// RFC 7672 3.1: `3 0 0` / `3 1 0` data that is not a certificate / SPKI is
/// malformed and unusable, so a set of only such records means "TLS, not
/// authenticated" under opportunistic-dane, never "authenticate".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_data_tlsa_records_that_do_not_parse_are_unusable() {
    let leaf = pki::self_signed(&["mx.junk.test"]);
    let dns = TestDns::builder()
        .mx("junk.test", 10, "mx.junk.test")
        .a("mx.junk.test", Ipv4Addr::LOCALHOST)
        .tlsa(
            "_25._tcp.mx.junk.test",
            3,
            0,
            0,
            &[0x30, 0x03, 0x02, 0x01, 0x05],
        )
        .tlsa("_25._tcp.mx.junk.test", 3, 1, 0, b"not a key")
        .start()
        .await;
    let smtp = starttls_server(&leaf, "mx.junk.test").await;
    let setup = Setup::new(&dns, smtp.addr.port(), 443, None, "");

    let out = setup.probe(&["junk.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("unusable: selector Cert(0) with full data: the data (5 bytes) is not an X.509 certificate"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unusable: selector SPKI(1) with full data: the data (9 bytes) is not a SubjectPublicKeyInfo"),
        "{stdout}"
    );
    let line = summary_line(&stdout, "opportunistic-dane");
    assert!(
        line.contains("deliver over TLS") && !line.contains("authenticated by DANE"),
        "{line}\n{stdout}"
    );
    assert!(summary_line(&stdout, "mandatory-dane").contains("would defer"));
    let out = setup.probe(&["junk.test", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        json["mx"][0]["tlsa"]["unusable"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tlsa_record_that_does_not_match_makes_mandatory_dane_defer() {
    let leaf = pki::self_signed(&["mx.wrong.test"]);
    let other = pki::self_signed(&["mx.wrong.test"]);
    let dns = dane_zone("wrong.test", "mx.wrong.test", &other.tlsa_3_1_1())
        .start()
        .await;
    let smtp = starttls_server(&leaf, "mx.wrong.test").await;
    let setup = Setup::new(&dns, smtp.addr.port(), 443, None, "");

    let out = setup.probe(&["wrong.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let line = summary_line(&stdout, "mandatory-dane");
    assert!(line.contains("would defer"), "{line}");
    assert!(
        line.contains("mx.wrong.test") && line.contains("no TLSA record matches"),
        "{line}"
    );
    // Never cleartext to a host whose TLSA records do not match, either.
    assert!(summary_line(&stdout, "opportunistic-dane").contains("would defer"));
    // The levels that do not authenticate still deliver.
    assert!(summary_line(&stdout, "mandatory").contains("deliver over TLS"));
    assert!(smtp.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_without_starttls_is_cleartext_or_deferred() {
    let dns = TestDns::builder()
        .insecure_zone("plain.test")
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", Ipv4Addr::LOCALHOST)
        .start()
        .await;
    let smtp = TestSmtpServer::start("mx.plain.test", None, Arc::new(accept_all)).await;
    let setup = Setup::new(&dns, smtp.addr.port(), 443, None, "");

    let out = setup.probe(&["plain.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("MX records: DNSSEC insecure"), "{stdout}");
    assert!(stdout.contains("STARTTLS:     not offered"), "{stdout}");
    assert!(
        summary_line(&stdout, "opportunistic").contains("deliver in cleartext via mx.plain.test"),
        "{stdout}"
    );
    let mandatory = summary_line(&stdout, "mandatory");
    assert!(
        mandatory.contains("would defer")
            && mandatory.contains("TLS required: STARTTLS not offered"),
        "{mandatory}"
    );
    let mandatory_dane = summary_line(&stdout, "mandatory-dane");
    assert!(
        mandatory_dane.contains("not DNSSEC-signed"),
        "{mandatory_dane}"
    );
    assert!(smtp.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_fall_back_to_the_next_mx_in_preference_order() {
    // mx1 (preference 10) has no STARTTLS; mx2 (20) has TLS on 127.0.0.2,
    // same port; mx3 (30) has no address at all; nothing listens on mx4's.
    let dns = TestDns::builder()
        .insecure_zone("multi.test")
        .mx("multi.test", 10, "mx1.multi.test")
        .mx("multi.test", 20, "mx2.multi.test")
        .mx("multi.test", 30, "mx3.multi.test")
        .mx("multi.test", 40, "mx4.multi.test")
        .a("mx1.multi.test", Ipv4Addr::LOCALHOST)
        .a("mx2.multi.test", Ipv4Addr::new(127, 0, 0, 2))
        .txt("mx3.multi.test", &["no address here"])
        .a("mx4.multi.test", Ipv4Addr::new(127, 0, 0, 3))
        .start()
        .await;
    let plain = TestSmtpServer::start("mx1.multi.test", None, Arc::new(accept_all)).await;
    let leaf = pki::self_signed(&["mx2.multi.test"]);
    let secure = TestSmtpServer::start_on(
        SocketAddr::from(([127, 0, 0, 2], plain.addr.port())),
        SessionConfig {
            hostname: "mx2.multi.test".into(),
            ..SessionConfig::default()
        },
        Some(pki::server_config(&leaf, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let setup = Setup::new(&dns, plain.addr.port(), 443, None, "");

    let out = setup.probe(&["multi.test", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let hosts: Vec<&str> = json["mx"]
        .as_array()
        .expect("mx")
        .iter()
        .map(|mx| mx["host"].as_str().expect("host"))
        .collect();
    assert_eq!(
        hosts,
        [
            "mx1.multi.test",
            "mx2.multi.test",
            "mx3.multi.test",
            "mx4.multi.test"
        ]
    );
    assert_eq!(json["mx"][0]["addresses"][0]["starttls"], "not-offered");
    assert_eq!(json["mx"][1]["addresses"][0]["starttls"], "offered");
    assert_eq!(json["mx"][2]["address_problem"], "no A or AAAA records");
    let unreachable = &json["mx"][3]["addresses"][0];
    assert_eq!(unreachable["starttls"], "unknown");
    assert!(
        unreachable["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect failed")),
        "{unreachable}"
    );
    assert_eq!(unreachable["verdicts"][0]["reason_code"], "session-failed");
    let level = |name: &str| {
        json["levels"]
            .as_array()
            .expect("levels")
            .iter()
            .find(|l| l["level"] == name)
            .cloned()
            .expect("level")
    };
    let opportunistic = level("opportunistic");
    assert_eq!(opportunistic["mx"], "mx1.multi.test");
    assert_eq!(opportunistic["action"], "deliver-cleartext");
    let mandatory = level("mandatory");
    assert_eq!(mandatory["mx"], "mx2.multi.test", "{mandatory}");
    assert_eq!(mandatory["action"], "deliver-tls");
    assert_eq!(
        mandatory["address"],
        format!("127.0.0.2:{}", plain.addr.port())
    );
    assert!(plain.received().is_empty() && secure.received().is_empty());

    // A --from domain that is not managed: the global default, with a note.
    let out = setup
        .probe(&["multi.test", "--from", "someone@stranger.test"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stranger.test is not a managed domain"));
    assert!(text(&out.stdout).contains("(configured)"));
}

/// An MTA-STS domain: policy host and MX certificate from the test CA,
/// which the configuration trusts through `[mta_sts] ca_file`.
struct StsDomain {
    dns: TestDns,
    smtp: TestSmtpServer,
    host: HttpsServer,
    ca: TestCa,
}

async fn sts_domain(mx_pattern: &str, expired_mx_certificate: bool) -> StsDomain {
    let policy = format!("version: STSv1\nmode: enforce\nmx: {mx_pattern}\nmax_age: 86400\n");
    sts_domain_serving(policy, expired_mx_certificate).await
}

async fn sts_domain_serving(policy: String, expired_mx_certificate: bool) -> StsDomain {
    let ca = TestCa::new("sealpost probe test CA");
    let dns = TestDns::builder()
        .insecure_zone("sts.test")
        .mx("sts.test", 10, "mx.sts.test")
        .a("mx.sts.test", Ipv4Addr::LOCALHOST)
        .txt("_mta-sts.sts.test", &["v=STSv1; id=20261123"])
        .a("mta-sts.sts.test", Ipv4Addr::LOCALHOST)
        .start()
        .await;
    let mx_leaf = if expired_mx_certificate {
        ca.issue_expired(&["mx.sts.test"])
    } else {
        ca.issue(&["mx.sts.test"])
    };
    let smtp = starttls_server(&mx_leaf, "mx.sts.test").await;
    let host = HttpsServer::start(
        pki::server_config(&ca.issue(&["mta-sts.sts.test"]), ALL_VERSIONS),
        move |_, _| Reply::text(&policy),
    )
    .await;
    StsDomain {
        dns,
        smtp,
        host,
        ca,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mta_sts_enforce_policy_matching_the_mx_delivers_webpki_verified() {
    let d = sts_domain("*.sts.test", false).await;
    let setup = Setup::new(
        &d.dns,
        d.smtp.addr.port(),
        d.host.port(),
        Some(&d.ca),
        r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.peers = [{ peer = "sts.test", level = "mta-sts" }]
"#,
    );

    let out = setup.probe(&["sts.test", "--from", "acme.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("MTA-STS: policy id 20261123: mode enforce, mx *.sts.test"),
        "{stdout}"
    );
    let line = summary_line(&stdout, "mta-sts");
    assert!(
        line.contains("deliver over TLS via mx.sts.test")
            && line.contains("authenticated by WebPKI"),
        "{line}"
    );
    // --from: the configured level is resolved and marked.
    assert!(
        line.starts_with("=>") && line.ends_with("(configured)"),
        "{line}"
    );
    assert!(
        stdout.contains("policy:  acme.test -> sts.test: mta-sts"),
        "{stdout}"
    );
    assert!(!summary_line(&stdout, "mandatory").starts_with("=>"));
    assert!(
        stdout.contains("certificate valid under WebPKI (for mx.sts.test)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("issuer:     CN=sealpost probe test CA"),
        "{stdout}"
    );
    assert_eq!(d.host.hits(), 1);
    assert!(d.smtp.received().is_empty());

    let out = setup
        .probe(&["sts.test", "--from", "acme.test", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["configured"]["managed_domain"], "acme.test");
    assert_eq!(json["configured"]["resolution"]["level"], "mta-sts");
    assert_eq!(json["mta_sts"]["policy"]["mode"], "enforce");
    assert_eq!(json["mx"][0]["mta_sts_mx_match"], true);
    let certificate = &json["mx"][0]["addresses"][0]["certificate"];
    assert_eq!(certificate["webpki_valid"], true);
    assert_eq!(certificate["expired"], false);
    assert!(certificate["expires_in_days"]
        .as_i64()
        .is_some_and(|d| d > 0));
    let configured: Vec<&serde_json::Value> = json["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .filter(|l| l["configured"] == true)
        .collect();
    assert_eq!(configured.len(), 1);
    assert_eq!(configured[0]["level"], "mta-sts");
    assert_eq!(configured[0]["authentication"], "webpki");
}

/// RFC 8461 section 3.2: a repeated `mode`/`max_age` is ignored, the first
/// counts, and the probe says which lines it ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_repeated_fields_applies_the_first_and_names_the_rest() {
    let policy =
        "version: STSv1\nmode: enforce\nmode: none\nmx: *.sts.test\nmax_age: 86400\nmax_age: 0\n";
    let d = sts_domain_serving(policy.to_string(), false).await;
    let setup = Setup::new(&d.dns, d.smtp.addr.port(), d.host.port(), Some(&d.ca), "");
    let out = setup.probe(&["sts.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("MTA-STS: policy id 20261123: mode enforce, mx *.sts.test, max_age 86400"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 3: `mode` repeated, ignored (the first, on line 2, counts"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 6: `max_age` repeated, ignored"),
        "{stdout}"
    );
    let out = setup.probe(&["sts.test", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["mta_sts"]["policy"]["mode"], "enforce");
    assert_eq!(
        json["mta_sts"]["ignored_fields"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mx_outside_the_mta_sts_policy_is_not_used() {
    let d = sts_domain("mx.elsewhere.test", false).await;
    let setup = Setup::new(&d.dns, d.smtp.addr.port(), d.host.port(), Some(&d.ca), "");
    let out = setup.probe(&["sts.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let line = summary_line(&stdout, "mta-sts");
    assert!(
        line.contains("would defer") && line.contains("matches no mx pattern"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_mx_certificate_fails_mta_sts_enforce() {
    let d = sts_domain("*.sts.test", true).await;
    let setup = Setup::new(&d.dns, d.smtp.addr.port(), d.host.port(), Some(&d.ca), "");
    let out = setup.probe(&["sts.test"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("2001-01-01 00:00:00 UTC (NOT VALID NOW)"),
        "{stdout}"
    );
    let line = summary_line(&stdout, "mta-sts");
    assert!(
        line.contains("would defer") && line.contains("certificate expired"),
        "{line}"
    );
    // Encryption without authentication does not look at the dates.
    assert!(summary_line(&stdout, "mandatory").contains("deliver over TLS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_is_a_clear_error() {
    let dns = TestDns::builder()
        .mx("known.test", 10, "mx.known.test")
        .a("mx.known.test", Ipv4Addr::LOCALHOST)
        .null_mx("nomail.test")
        .start()
        .await;
    let setup = Setup::new(&dns, 25, 443, None, "");
    let out = setup.probe(&["nowhere.test"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nowhere.test") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let out = setup.probe(&["nomail.test", "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("null MX"),
        "{}",
        text(&out.stderr)
    );

    let out = setup.probe(&["not a domain"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a domain name"));
}
