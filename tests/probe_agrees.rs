//! `sealpost probe` and a real delivery by `sealpost serve` reach the same
//! verdict for the same destination: both run over the same signed test
//! zone, the same MX hosts on 127.0.0.x and one configuration file; the
//! probe (with `--from`, so it names the level the policy applies) says
//! deliver or defer, and how the session is authenticated, and the
//! daemon's `delivery attempt` events say what delivery did.
//!
//! Cases: DANE (a matching and a non-matching TLSA record) and MTA-STS
//! (an enforce policy with a WebPKI-valid MX, one with an untrusted MX
//! certificate, and no policy over secure but unusable TLSA records with
//! an MX that does not offer STARTTLS: TLS is still required, RFC 7672
//! section 3.1.3, so both defer).
mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use support::dns::TestDns;
use support::https::{HttpsServer, Reply as HttpsReply};
use support::outbound::{base_config, deferred_events, delivered_event, loopback, submit, Mx};
use support::pki::{self, TestCa, ALL_VERSIONS};
use support::sealpost::{free_port, Sealpost, BIN};
use support::smtp::{accept_all, Decide};

fn enforce(mx_pattern: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {mx_pattern}\nmax_age: 86400\n")
}

/// What the probe says the configured level does with `domain`.
async fn probe(sealpost: &Sealpost, domain: &str) -> Value {
    let mut command = Command::new(BIN);
    command
        .arg("--config")
        .arg(sealpost.config_path())
        .args(["probe", domain, "--from", "acme.test", "--json"])
        .env_remove("RUST_LOG");
    let out = tokio::task::spawn_blocking(move || command.output().expect("sealpost probe runs"))
        .await
        .expect("join");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{domain}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    report["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .find(|l| l["configured"] == true)
        .unwrap_or_else(|| panic!("{domain}: no configured level in {report}"))
        .clone()
}

/// What delivery did with `bob@<domain>`: `("deliver", authentication)`
/// or `("defer", "none")` (after two deferrals, and no MAIL at the MX).
async fn delivery(sealpost: &Sealpost, domain: &str, mx: &Mx) -> (String, String) {
    let to = format!("bob@{domain}");
    // Either a delivery is on its way or deferrals are piling up.
    let delivered = support::outbound::until(support::outbound::WAIT, || {
        !support::outbound::with_result(sealpost, &to, "delivered").is_empty()
            || support::outbound::with_result(sealpost, &to, "deferred").len() >= 2
    })
    .await;
    assert!(delivered, "{to}: neither delivered nor deferred twice");
    if !support::outbound::with_result(sealpost, &to, "delivered").is_empty() {
        let event = delivered_event(sealpost, &to).await;
        let authentication = event["authentication"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        return ("deliver".into(), authentication);
    }
    deferred_events(sealpost, &to, 2).await;
    assert_eq!(mx.mails(), 0, "{to}: deferred, so no MAIL was ever sent");
    ("defer".into(), "none".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_and_delivery_reach_the_same_verdict() {
    let port = free_port();
    let ca = TestCa::new("sealpost agreement CA");
    let (_ca_dir, ca_file) = ca.pem_file();
    let dane_ok = pki::self_signed(&["mx.dane-ok.test"]);
    let dane_bad = pki::self_signed(&["mx.dane-bad.test"]);
    let stranger = pki::self_signed(&["stranger.test"]);
    let sts_ok = ca.issue(&["mx.sts-ok.test"]);
    let sts_untrusted = pki::self_signed(&["mx.sts-untrusted.test"]);

    let policy_leaf = ca.issue(&["mta-sts.sts-ok.test", "mta-sts.sts-untrusted.test"]);
    let policy_host = HttpsServer::start(
        pki::server_config(&policy_leaf, ALL_VERSIONS),
        |host, path| {
            if path != "/.well-known/mta-sts.txt" {
                return HttpsReply::status(404);
            }
            if host.starts_with("mta-sts.sts-ok.test") {
                HttpsReply::text(&enforce("*.sts-ok.test"))
            } else if host.starts_with("mta-sts.sts-untrusted.test") {
                HttpsReply::text(&enforce("*.sts-untrusted.test"))
            } else {
                HttpsReply::status(404)
            }
        },
    )
    .await;

    let dns = TestDns::builder()
        .mx("dane-ok.test", 10, "mx.dane-ok.test")
        .a("mx.dane-ok.test", loopback(2))
        .tlsa("_25._tcp.mx.dane-ok.test", 3, 1, 1, &dane_ok.tlsa_3_1_1())
        .mx("dane-bad.test", 10, "mx.dane-bad.test")
        .a("mx.dane-bad.test", loopback(3))
        .tlsa("_25._tcp.mx.dane-bad.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        .mx("sts-ok.test", 10, "mx.sts-ok.test")
        .a("mx.sts-ok.test", loopback(4))
        .txt("_mta-sts.sts-ok.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-ok.test", Ipv4Addr::LOCALHOST)
        .mx("sts-untrusted.test", 10, "mx.sts-untrusted.test")
        .a("mx.sts-untrusted.test", loopback(5))
        .txt("_mta-sts.sts-untrusted.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-untrusted.test", Ipv4Addr::LOCALHOST)
        // No policy; secure TLSA records, none usable (PKIX-EE).
        .mx("sts-unusable.test", 10, "mx.sts-unusable.test")
        .a("mx.sts-unusable.test", loopback(6))
        .tlsa(
            "_25._tcp.mx.sts-unusable.test",
            1,
            1,
            1,
            &stranger.tlsa_3_1_1(),
        )
        .start()
        .await;

    let accept: Arc<Decide> = Arc::new(accept_all);
    let tls = |leaf: &pki::Leaf| Some(pki::server_config(leaf, ALL_VERSIONS));
    let start = |last: u8, name: &'static str, tls: Option<Arc<rustls::ServerConfig>>| {
        Mx::start(loopback(last), port, name, tls, accept.clone())
    };
    let mx_dane_ok = start(2, "mx.dane-ok.test", tls(&dane_ok)).await;
    let mx_dane_bad = start(3, "mx.dane-bad.test", tls(&dane_bad)).await;
    let mx_sts_ok = start(4, "mx.sts-ok.test", tls(&sts_ok)).await;
    let mx_sts_untrusted = start(5, "mx.sts-untrusted.test", tls(&sts_untrusted)).await;
    let mx_sts_unusable = start(6, "mx.sts-unusable.test", None).await;

    let extra = format!(
        r#"
[mta_sts]
https_port = {}
ca_file = "{}"

[[domains]]
name = "acme.test"
tenant = "acme"
outbound.peers = [
  {{ peer = "dane-ok.test", level = "opportunistic-dane" }},
  {{ peer = "dane-bad.test", level = "opportunistic-dane" }},
  {{ peer = "sts-ok.test", level = "mta-sts" }},
  {{ peer = "sts-untrusted.test", level = "mta-sts" }},
  {{ peer = "sts-unusable.test", level = "mta-sts" }},
]
"#,
        policy_host.port(),
        ca_file.display()
    );
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &extra));
    // (domain, its MX, the verdict both must give)
    let cases: [(&str, &Mx, (&str, &str)); 5] = [
        ("dane-ok.test", &mx_dane_ok, ("deliver", "dane")),
        ("dane-bad.test", &mx_dane_bad, ("defer", "none")),
        ("sts-ok.test", &mx_sts_ok, ("deliver", "webpki")),
        ("sts-untrusted.test", &mx_sts_untrusted, ("defer", "none")),
        ("sts-unusable.test", &mx_sts_unusable, ("defer", "none")),
    ];
    for (domain, _, _) in &cases {
        submit(sealpost.smtp, "alice@acme.test", &format!("bob@{domain}")).await;
    }
    for (domain, mx, (outcome, authentication)) in cases {
        let predicted = probe(&sealpost, domain).await;
        let predicted = (
            predicted["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            predicted["authentication"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let done = delivery(&sealpost, domain, mx).await;
        assert_eq!(predicted, done, "{domain}: probe and delivery disagree");
        assert_eq!(
            done,
            (outcome.to_string(), authentication.to_string()),
            "{domain}"
        );
    }
}
