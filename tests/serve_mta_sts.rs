//! Hosted MTA-STS through the real binary: `sealpost serve` with
//! `[mta_sts_host]` answers `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! for enabled managed domains with `[domains.mta_sts]`, presenting the
//! STARTTLS certificate chosen by SNI (fetched with sealpost's own HTTPS
//! policy fetcher, trusting only the test CA), 404 for other hosts, and
//! follows SIGHUP reloads; `sealpost dns-records` prints the `_mta-sts` id
//! of the policy being served, which changes with the policy.
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sealpost::mta_sts::txt::parse_txt_records;
use sealpost::mta_sts::{
    FetchError, HostedPolicy, HttpsFetcherConfig, HttpsPolicyFetcher, Mode, MxPattern, Policy,
    PolicyFetcher, StaticHosts, TrustRoots,
};
use support::pki::TestCa;
use support::sealpost::{free_port, run_cli, run_to_exit, server_head, Sealpost, NO_DNS};

fn config(port: u16, https: u16, mode: &str, a_enabled: bool) -> String {
    format!(
        r#"
{head}
{NO_DNS}
[mta_sts_host]
listen = ["127.0.0.1:{https}"]

[tls]
certificate = "default.crt"
key = "default.key"

[[tls.sni]]
name = "mta-sts.a.test"
certificate = "a.crt"
key = "a.key"

[[domains]]
name = "a.test"
tenant = "acme"
enabled = {a_enabled}

[domains.mta_sts]
mode = "{mode}"
mx = ["mx.sealpost.test", "*.a.test"]
max_age = 86400
tlsrpt = "mailto:tls-reports@a.test"

# Managed, but without a hosted policy.
[[domains]]
name = "b.test"
tenant = "acme"
"#,
        head = server_head(port)
    )
}

fn fetcher(ca: &TestCa, port: u16) -> HttpsPolicyFetcher {
    let localhost = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let hosts =
        ["a.test", "b.test", "unknown.test"].map(|d| (format!("mta-sts.{d}"), localhost.clone()));
    let config = HttpsFetcherConfig {
        roots: TrustRoots::only(vec![ca.cert.clone()]),
        port,
        timeout: Duration::from_secs(5),
    };
    HttpsPolicyFetcher::new(&config, Arc::new(StaticHosts(HashMap::from(hosts)))).expect("fetcher")
}

/// `sealpost dns-records a.test`: its stdout, and the `_mta-sts` id.
fn dns_records(server: &Sealpost) -> (String, String) {
    let (code, text, stderr) = run_cli(&server.config_path(), &["dns-records", "a.test"]);
    assert_eq!(code, Some(0), "{stderr}");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("_mta-sts.a.test. IN TXT \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no _mta-sts record in:\n{text}"));
    let id = parse_txt_records(&[value.to_string()])
        .expect("a valid record")
        .id;
    (text, id)
}

/// The `id` a published record must carry for this served policy.
fn id_of(body: &str) -> String {
    let policy = Policy::parse(body).expect("a valid policy");
    HostedPolicy {
        domain: "a.test".into(),
        mode: policy.mode,
        mx: policy.mx,
        max_age: policy.max_age,
    }
    .policy_id()
}

#[tokio::test]
async fn serve_hosts_the_policies_and_dns_records_follow_them() {
    let ca = TestCa::new("sealpost test CA");
    let default = ca.issue(&["mx.sealpost.test", "mta-sts.b.test", "mta-sts.unknown.test"]);
    let a = ca.issue(&["mta-sts.a.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        ("default.crt", default.cert_pem.clone() + &ca.cert_pem),
        ("default.key", default.key_pem.clone()),
        ("a.crt", a.cert_pem.clone() + &ca.cert_pem),
        ("a.key", a.key_pem.clone()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let https = free_port();
    let mut server = Sealpost::start_in(dir, |port| config(port, https, "enforce", true));
    let https_addr: SocketAddr = format!("127.0.0.1:{https}").parse().expect("addr");
    assert!(
        server.wait_for(Duration::from_secs(10), |_| {
            std::net::TcpStream::connect(https_addr).is_ok()
        }),
        "the policy host listens:\n{}",
        server.log()
    );
    let fetcher = fetcher(&ca, https);

    // a.test: the configured policy, over a certificate valid for its name.
    let body = fetcher.fetch("a.test").await.expect("the policy of a.test");
    let expected = Policy {
        mode: Mode::Enforce,
        max_age: 86400,
        mx: vec![
            MxPattern::parse("mx.sealpost.test").expect("mx"),
            MxPattern::parse("*.a.test").expect("mx"),
        ],
    };
    assert_eq!(Policy::parse(&body), Ok(expected));
    // b.test is managed but hosts no policy; unknown.test is not ours.
    for domain in ["b.test", "unknown.test"] {
        let result = fetcher.fetch(domain).await;
        assert!(
            matches!(result, Err(FetchError::Status { status: 404, .. })),
            "{domain}: {result:?}"
        );
    }

    // The published id is the served policy's.
    let (text, enforce_id) = dns_records(&server);
    assert_eq!(enforce_id, id_of(&body));
    assert!(
        text.contains("_smtp._tls.a.test. IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@a.test\""),
        "{text}"
    );
    let (_, json, _) = run_cli(&server.config_path(), &["dns-records", "a.test", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["domain"], "a.test");
    assert_eq!(json["mode"], "enforce");
    assert_eq!(json["policy"], body.as_str());
    assert_eq!(json["records"][0]["name"], "_mta-sts.a.test.");
    assert_eq!(json["records"][1]["type"], "TXT");

    // Switch to testing and reload: the policy served and its id change.
    std::fs::write(
        server.config_path(),
        config(server.smtp.port(), https, "testing", true),
    )
    .expect("write");
    server.signal("-HUP");
    let mut mode = None;
    for _ in 0..500 {
        let body = fetcher.fetch("a.test").await.expect("the policy of a.test");
        mode = Policy::parse(&body).ok().map(|p| p.mode);
        if mode == Some(Mode::Testing) {
            let (_, testing_id) = dns_records(&server);
            assert_ne!(testing_id, enforce_id);
            assert_eq!(testing_id, id_of(&body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mode, Some(Mode::Testing), "the policy after SIGHUP");

    // Disabling the domain withdraws its policy.
    std::fs::write(
        server.config_path(),
        config(server.smtp.port(), https, "testing", false),
    )
    .expect("write");
    server.signal("-HUP");
    let mut result = Ok(String::new());
    for _ in 0..500 {
        result = fetcher.fetch("a.test").await;
        if result.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(result, Err(FetchError::Status { status: 404, .. })),
        "{result:?}"
    );
    server.stop();
}

#[test]
fn dns_records_refuses_domains_without_a_hosted_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sealpost.toml");
    std::fs::write(&path, config(2525, 8443, "enforce", true)).expect("write");
    for (domain, why) in [
        ("b.test", "has no [domains.mta_sts] policy"),
        ("c.test", "is not a managed domain"),
    ] {
        let (code, _, stderr) = run_cli(&path, &["dns-records", domain]);
        assert_eq!(code, Some(1), "{domain}");
        assert!(stderr.contains(why), "{domain}: {stderr}");
    }
}

#[test]
fn serve_stops_when_the_policy_host_cannot_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let https = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sealpost.toml");
    let text = format!(
        "[server]\ndata_dir = \"data\"\n\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n\n\
         {NO_DNS}\n[mta_sts_host]\nlisten = [\"127.0.0.1:{https}\"]\n",
        free_port()
    );
    std::fs::write(&path, text).expect("write");
    let (code, stderr) = run_to_exit(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "MTA-STS policy host cannot listen on 127.0.0.1:{https}"
        )),
        "{stderr}"
    );
    drop(taken);
}
