//! Security levels end to end for outbound mail: a tenant's server relays
//! through the real `sealpost serve` process, which resolves each
//! recipient domain in the test DNS (signed `test.` zone, DANE TLSA,
//! MTA-STS TXT and a policy host over HTTPS) and delivers to test SMTP
//! receivers on 127.0.0.x under the level and minimum TLS version the
//! sender's managed domain sets for that recipient domain: every level,
//! the DANE and MTA-STS rows that need a live session, STARTTLS stripping
//! and broken handshakes on the wire, MX fallback, and a reload applying
//! to queued mail.
//!
//! What is observed: what each receiver got (envelope, TLS version,
//! connection id, and whether a MAIL command ever reached it) and the
//! `delivery attempt` events sealpost logs. "Never delivered" is checked
//! after several retries (`first_retry = 1s`) have been logged as deferred.
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;

use support::dns::TestDns;
use support::https::{HttpsServer, Reply as HttpsReply};
use support::outbound::{
    base_config, deferred_events, delivered_event, dest_dns, dest_mx, loopback, self_signed_tls,
    submit, Mx,
};
use support::pki::{self, TestCa, ALL_VERSIONS, TLS12_ONLY};
use support::proxy::{Tamper, TamperProxy};
use support::sealpost::{free_port, Sealpost};
use support::smtp::{accept_all, Decide};

fn policy_text(mx_pattern: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {mx_pattern}\nmax_age: 86400\n")
}

/// One managed domain whose outbound peers give each recipient domain its
/// level and minimum TLS version; each recipient domain has its own MX.
/// Delivered where the policy allows it (with the TLS and authentication
/// logged), otherwise deferred with the reason and no MAIL ever sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_level_and_minimum_version_through_the_real_server() {
    let port = free_port();
    let ca = TestCa::new("sealpost levels test CA");
    let (_ca_dir, ca_file) = ca.pem_file();

    // DANE: the MX's own self-signed certificate, pinned by TLSA 3 1 1.
    let dane_leaf = pki::self_signed(&["mx.dane.test"]);
    let dane_data = dane_leaf.tlsa_3_1_1();
    let badtlsa_leaf = pki::self_signed(&["mx.badtlsa.test"]);
    let other_key = pki::self_signed(&["somebody-else.test"]);
    let wrong_data = other_key.tlsa_3_1_1();

    // MTA-STS: one policy host for both policy domains.
    let policy_leaf = ca.issue(&["mta-sts.sts.test", "mta-sts.stsbad.test"]);
    let policy_host = HttpsServer::start(
        pki::server_config(&policy_leaf, ALL_VERSIONS),
        |host, path| {
            if path != "/.well-known/mta-sts.txt" {
                return HttpsReply::status(404);
            }
            if host.starts_with("mta-sts.sts.test") {
                HttpsReply::text(&policy_text("mx.sts.test"))
            } else if host.starts_with("mta-sts.stsbad.test") {
                HttpsReply::text(&policy_text("mx.elsewhere.test"))
            } else {
                HttpsReply::status(404)
            }
        },
    )
    .await;

    let dns = TestDns::builder()
        // opportunistic, no STARTTLS
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", loopback(2))
        // mandatory min 1.2, TLS 1.2-only receiver
        .mx("m12.test", 10, "mx.m12.test")
        .a("mx.m12.test", loopback(3))
        // mandatory min 1.3, TLS 1.2-only receiver
        .mx("m13.test", 10, "mx.m13.test")
        .a("mx.m13.test", loopback(4))
        // mandatory, no STARTTLS
        .mx("notls.test", 10, "mx.notls.test")
        .a("mx.notls.test", loopback(5))
        // mandatory-dane, matching TLSA
        .mx("dane.test", 10, "mx.dane.test")
        .a("mx.dane.test", loopback(6))
        .tlsa("_25._tcp.mx.dane.test", 3, 1, 1, &dane_data)
        // mandatory-dane, TLSA for another key
        .mx("badtlsa.test", 10, "mx.badtlsa.test")
        .a("mx.badtlsa.test", loopback(7))
        .tlsa("_25._tcp.mx.badtlsa.test", 3, 1, 1, &wrong_data)
        // opportunistic-dane on an unsigned zone
        .insecure_zone("insecure.test")
        .mx("insecure.test", 10, "mx.insecure.test")
        .a("mx.insecure.test", loopback(8))
        // mta-sts enforce, MX in the policy
        .mx("sts.test", 10, "mx.sts.test")
        .a("mx.sts.test", loopback(9))
        .txt("_mta-sts.sts.test", &["v=STSv1; id=20261123;"])
        .a("mta-sts.sts.test", Ipv4Addr::LOCALHOST)
        // mta-sts enforce, MX not in the policy
        .mx("stsbad.test", 10, "mx.stsbad.test")
        .a("mx.stsbad.test", loopback(10))
        .txt("_mta-sts.stsbad.test", &["v=STSv1; id=20261123;"])
        .a("mta-sts.stsbad.test", Ipv4Addr::LOCALHOST)
        .start()
        .await;

    let accept: Arc<Decide> = Arc::new(accept_all);
    let self_signed =
        |name: &str, versions| Some(pki::server_config(&pki::self_signed(&[name]), versions));
    let plain = Mx::start(loopback(2), port, "mx.plain.test", None, accept.clone()).await;
    let m12 = Mx::start(
        loopback(3),
        port,
        "mx.m12.test",
        self_signed("mx.m12.test", TLS12_ONLY),
        accept.clone(),
    )
    .await;
    let m13 = Mx::start(
        loopback(4),
        port,
        "mx.m13.test",
        self_signed("mx.m13.test", TLS12_ONLY),
        accept.clone(),
    )
    .await;
    let notls = Mx::start(loopback(5), port, "mx.notls.test", None, accept.clone()).await;
    let dane = Mx::start(
        loopback(6),
        port,
        "mx.dane.test",
        Some(pki::server_config(&dane_leaf, ALL_VERSIONS)),
        accept.clone(),
    )
    .await;
    let badtlsa = Mx::start(
        loopback(7),
        port,
        "mx.badtlsa.test",
        Some(pki::server_config(&badtlsa_leaf, ALL_VERSIONS)),
        accept.clone(),
    )
    .await;
    let insecure = Mx::start(
        loopback(8),
        port,
        "mx.insecure.test",
        self_signed("mx.insecure.test", ALL_VERSIONS),
        accept.clone(),
    )
    .await;
    let sts = Mx::start(
        loopback(9),
        port,
        "mx.sts.test",
        Some(pki::server_config(
            &ca.issue(&["mx.sts.test"]),
            ALL_VERSIONS,
        )),
        accept.clone(),
    )
    .await;
    let stsbad = Mx::start(
        loopback(10),
        port,
        "mx.stsbad.test",
        Some(pki::server_config(
            &ca.issue(&["mx.stsbad.test"]),
            ALL_VERSIONS,
        )),
        accept.clone(),
    )
    .await;

    let peers = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "mandatory" }
outbound.peers = [
  { peer = "plain.test", level = "opportunistic" },
  { peer = "m12.test", level = "mandatory", min_tls = "1.2" },
  { peer = "m13.test", level = "mandatory", min_tls = "1.3" },
  { peer = "notls.test", level = "mandatory" },
  { peer = "dane.test", level = "mandatory-dane" },
  { peer = "badtlsa.test", level = "mandatory-dane" },
  { peer = "insecure.test", level = "opportunistic-dane" },
  { peer = "sts.test", level = "mta-sts" },
  { peer = "stsbad.test", level = "mta-sts" },
]
"#;
    let mta_sts = format!(
        "[mta_sts]\nhttps_port = {}\nca_file = \"{}\"\n",
        policy_host.port(),
        ca_file.display()
    );
    let sealpost =
        Sealpost::start(|listen| base_config(listen, port, &dns, &format!("{mta_sts}\n{peers}")));

    let rcpt = |domain: &str| format!("bob@{domain}");
    for domain in [
        "plain.test",
        "m12.test",
        "m13.test",
        "notls.test",
        "dane.test",
        "badtlsa.test",
        "insecure.test",
        "sts.test",
        "stsbad.test",
    ] {
        submit(sealpost.smtp, "alice@acme.test", &rcpt(domain)).await;
    }

    // opportunistic, no STARTTLS: cleartext.
    let event = delivered_event(&sealpost, &rcpt("plain.test")).await;
    assert_eq!(event["level"], "opportunistic");
    assert_eq!(event["tls"], Value::Null, "{event}");
    let got = plain.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tls_version, None);
    assert_eq!(
        got[0].envelope.recipients[0].path.to_string(),
        "<bob@plain.test>"
    );

    // mandatory min 1.2 to a TLS 1.2 receiver.
    let event = delivered_event(&sealpost, &rcpt("m12.test")).await;
    assert_eq!(event["level"], "mandatory");
    assert_eq!(event["tls"], "TLSv1.2", "{event}");
    assert_eq!(event["authentication"], "None");
    let got = m12.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tls_version.as_deref(), Some("TLSv1_2"));

    // mandatory-dane with a matching TLSA 3 1 1.
    let event = delivered_event(&sealpost, &rcpt("dane.test")).await;
    assert_eq!(event["level"], "mandatory-dane");
    assert_eq!(event["authentication"], "Dane", "{event}");
    assert_eq!(dane.received().len(), 1);
    assert!(dane.received()[0].tls_version.is_some());

    // opportunistic-dane on an insecure zone: delivered, not authenticated.
    let event = delivered_event(&sealpost, &rcpt("insecure.test")).await;
    assert_eq!(event["level"], "opportunistic-dane");
    assert_eq!(event["authentication"], "None", "{event}");
    assert_eq!(insecure.received().len(), 1);

    // mta-sts enforce, MX matches, certificate from the CA.
    let event = delivered_event(&sealpost, &rcpt("sts.test")).await;
    assert_eq!(event["level"], "mta-sts");
    assert_eq!(event["authentication"], "WebPki", "{event}");
    assert_eq!(sts.received().len(), 1);
    assert!(sts.received()[0].tls_version.is_some());

    // mandatory min 1.3 to a TLS 1.2 receiver: deferred, naming the version.
    let events = deferred_events(&sealpost, &rcpt("m13.test"), 2).await;
    assert_eq!(events[0]["mx"], "mx.m13.test", "the one MX tried is named");
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("TLSv1_2") && detail.contains("1.3"),
        "the reason names the negotiated and required versions: {detail}"
    );
    assert_eq!(m13.mails(), 0, "no MAIL over a TLS 1.2 session");
    assert!(m13.received().is_empty());

    // mandatory, no STARTTLS: deferred, never a MAIL in cleartext.
    let events = deferred_events(&sealpost, &rcpt("notls.test"), 2).await;
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("STARTTLS"), "{detail}");
    assert_eq!(notls.mails(), 0, "a MAIL command was sent in cleartext");
    assert!(notls.received().is_empty());

    // mandatory-dane, TLSA does not match: deferred, never delivered.
    let events = deferred_events(&sealpost, &rcpt("badtlsa.test"), 2).await;
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("mandatory-dane: mx.badtlsa.test")
            && detail.contains("DANE authentication failed: no TLSA record matches"),
        "{detail}"
    );
    assert_eq!(badtlsa.mails(), 0);
    assert!(badtlsa.received().is_empty());

    // mta-sts enforce, MX not in the policy: deferred, never contacted.
    let events = deferred_events(&sealpost, &rcpt("stsbad.test"), 2).await;
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("mx.stsbad.test"), "{detail}");
    assert_eq!(stsbad.mails(), 0);
    assert!(stsbad.received().is_empty());

    // And still nothing for any of them after more retries.
    for (domain, mx) in [
        ("m13.test", &m13),
        ("notls.test", &notls),
        ("badtlsa.test", &badtlsa),
        ("stsbad.test", &stsbad),
    ] {
        deferred_events(&sealpost, &rcpt(domain), 3).await;
        assert_eq!(mx.mails(), 0, "{domain}");
    }
    assert!(policy_host.hits() > 0, "the MTA-STS policies were fetched");
}

/// The DANE and MTA-STS rows beyond the basic ones: usable TLSA records
/// make even `opportunistic-dane` a requirement for that host (RFC 7672
/// section 2.2: no cleartext, no unauthenticated TLS), a failed host
/// moves on to the next MX, DANE governs under `mta-sts` (RFC 8461
/// section 2), an enforce policy needs a trusted certificate, and no
/// policy at all is opportunistic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dane_and_mta_sts_edges_through_the_real_server() {
    let port = free_port();
    let ca = TestCa::new("sealpost levels edge CA");
    let (_ca_dir, ca_file) = ca.pem_file();
    let od_ok = pki::self_signed(&["mx.od-ok.test"]);
    let od_bad = pki::self_signed(&["mx.od-bad.test"]);
    let stranger = pki::self_signed(&["stranger.test"]);
    let md_second = pki::self_signed(&["mx2.md-next.test"]);
    let md_first = pki::self_signed(&["mx1.md-next.test"]);
    let sd = pki::self_signed(&["mx.sts-dane.test"]);

    let policy_leaf = ca.issue(&["mta-sts.sts-dane.test", "mta-sts.sts-untrusted.test"]);
    let policy_host = HttpsServer::start(
        pki::server_config(&policy_leaf, ALL_VERSIONS),
        |host, path| {
            if path != "/.well-known/mta-sts.txt" {
                return HttpsReply::status(404);
            }
            if host.starts_with("mta-sts.sts-dane.test") {
                // A policy whose pattern would refuse the MX: DANE decides.
                HttpsReply::text(&policy_text("mx.elsewhere.test"))
            } else if host.starts_with("mta-sts.sts-untrusted.test") {
                HttpsReply::text(&policy_text("*.sts-untrusted.test"))
            } else {
                HttpsReply::status(404)
            }
        },
    )
    .await;

    let dns = TestDns::builder()
        // opportunistic-dane, secure zone, matching TLSA
        .mx("od-ok.test", 10, "mx.od-ok.test")
        .a("mx.od-ok.test", loopback(2))
        .tlsa("_25._tcp.mx.od-ok.test", 3, 1, 1, &od_ok.tlsa_3_1_1())
        // opportunistic-dane, secure zone, TLSA for another key
        .mx("od-bad.test", 10, "mx.od-bad.test")
        .a("mx.od-bad.test", loopback(3))
        .tlsa("_25._tcp.mx.od-bad.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        // opportunistic-dane, secure TLSA, no STARTTLS
        .mx("od-plain.test", 10, "mx.od-plain.test")
        .a("mx.od-plain.test", loopback(4))
        .tlsa("_25._tcp.mx.od-plain.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        // mandatory-dane: the first MX fails DANE, the second matches
        .mx("md-next.test", 10, "mx1.md-next.test")
        .mx("md-next.test", 20, "mx2.md-next.test")
        .a("mx1.md-next.test", loopback(5))
        .a("mx2.md-next.test", loopback(6))
        .tlsa("_25._tcp.mx1.md-next.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        .tlsa(
            "_25._tcp.mx2.md-next.test",
            3,
            1,
            1,
            &md_second.tlsa_3_1_1(),
        )
        // mta-sts with usable TLSA: DANE governs
        .mx("sts-dane.test", 10, "mx.sts-dane.test")
        .a("mx.sts-dane.test", loopback(7))
        .tlsa("_25._tcp.mx.sts-dane.test", 3, 1, 1, &sd.tlsa_3_1_1())
        .txt("_mta-sts.sts-dane.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-dane.test", Ipv4Addr::LOCALHOST)
        // mta-sts enforce, MX certificate not from a trusted CA
        .mx("sts-untrusted.test", 10, "mx.sts-untrusted.test")
        .a("mx.sts-untrusted.test", loopback(8))
        .txt("_mta-sts.sts-untrusted.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-untrusted.test", Ipv4Addr::LOCALHOST)
        // mta-sts, no policy published, MX without STARTTLS
        .mx("sts-none.test", 10, "mx.sts-none.test")
        .a("mx.sts-none.test", loopback(9))
        // opportunistic-dane, a zone whose DNSSEC validates as bogus
        .bogus_zone("bogus.test")
        .mx("bogus.test", 10, "mx.bogus.test")
        .a("mx.bogus.test", loopback(10))
        .start()
        .await;

    let accept: Arc<Decide> = Arc::new(accept_all);
    let tls = |leaf: &pki::Leaf| Some(pki::server_config(leaf, ALL_VERSIONS));
    let start = |last: u8, name: &'static str, tls: Option<Arc<rustls::ServerConfig>>| {
        Mx::start(loopback(last), port, name, tls, accept.clone())
    };
    let mx_od_ok = start(2, "mx.od-ok.test", tls(&od_ok)).await;
    let mx_od_bad = start(3, "mx.od-bad.test", tls(&od_bad)).await;
    let mx_od_plain = start(4, "mx.od-plain.test", None).await;
    let mx_md_first = start(5, "mx1.md-next.test", tls(&md_first)).await;
    let mx_md_second = start(6, "mx2.md-next.test", tls(&md_second)).await;
    let mx_sd = start(7, "mx.sts-dane.test", tls(&sd)).await;
    let untrusted = pki::self_signed(&["mx.sts-untrusted.test"]);
    let mx_untrusted = start(8, "mx.sts-untrusted.test", tls(&untrusted)).await;
    let mx_sts_none = start(9, "mx.sts-none.test", None).await;
    let mx_bogus = start(10, "mx.bogus.test", None).await;

    let extra = format!(
        r#"
[mta_sts]
https_port = {}
ca_file = "{}"

[[domains]]
name = "acme.test"
tenant = "acme"
outbound.peers = [
  {{ peer = "od-ok.test", level = "opportunistic-dane" }},
  {{ peer = "od-bad.test", level = "opportunistic-dane" }},
  {{ peer = "od-plain.test", level = "opportunistic-dane" }},
  {{ peer = "md-next.test", level = "mandatory-dane" }},
  {{ peer = "sts-dane.test", level = "mta-sts" }},
  {{ peer = "sts-untrusted.test", level = "mta-sts" }},
  {{ peer = "sts-none.test", level = "mta-sts" }},
  {{ peer = "bogus.test", level = "opportunistic-dane" }},
]
"#,
        policy_host.port(),
        ca_file.display()
    );
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &extra));
    for domain in [
        "od-ok.test",
        "od-bad.test",
        "od-plain.test",
        "md-next.test",
        "sts-dane.test",
        "sts-untrusted.test",
        "sts-none.test",
        "bogus.test",
    ] {
        submit(sealpost.smtp, "alice@acme.test", &format!("bob@{domain}")).await;
    }

    let event = delivered_event(&sealpost, "bob@od-ok.test").await;
    assert_eq!(event["authentication"], "Dane", "{event}");
    assert_eq!(mx_od_ok.received().len(), 1);

    let event = delivered_event(&sealpost, "bob@md-next.test").await;
    assert_eq!(event["authentication"], "Dane", "{event}");
    assert_eq!(event["mx"], "mx2.md-next.test");
    assert_eq!(mx_md_second.received().len(), 1);
    assert_eq!(
        mx_md_first.mails(),
        0,
        "nothing sent to the MX failing DANE"
    );

    let event = delivered_event(&sealpost, "bob@sts-dane.test").await;
    assert_eq!(event["level"], "mta-sts");
    assert_eq!(event["authentication"], "Dane", "DANE governs: {event}");
    assert_eq!(mx_sd.received().len(), 1);

    let event = delivered_event(&sealpost, "bob@sts-none.test").await;
    assert_eq!(event["tls"], Value::Null, "no policy: opportunistic");
    assert_eq!(mx_sts_none.received().len(), 1);

    for (to, mx, needle) in [
        ("bob@od-bad.test", &mx_od_bad, "DANE authentication failed"),
        ("bob@od-plain.test", &mx_od_plain, "STARTTLS not offered"),
        (
            "bob@sts-untrusted.test",
            &mx_untrusted,
            "mx.sts-untrusted.test [127.0.0.8]: ",
        ),
        (
            "bob@sts-untrusted.test",
            &mx_untrusted,
            "MTA-STS enforce: certificate not issued by a trusted CA",
        ),
        (
            "bob@bogus.test",
            &mx_bogus,
            "bogus.test: MX lookup failed: DNSSEC bogus",
        ),
    ] {
        let events = deferred_events(&sealpost, to, 2).await;
        let detail = events[0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{to}: {detail}");
        assert_eq!(mx.mails(), 0, "{to}: no MAIL, not even in cleartext");
        assert!(mx.received().is_empty(), "{to}");
    }
    tls_reports_count_the_sessions(&sealpost);
}

/// The sessions of [`dane_and_mta_sts_edges_through_the_real_server`] as
/// today's TLS reports (RFC 8460) count them, per policy domain
/// (`sealpost tls-reports show`; `docs/tls-reports.md`).
fn tls_reports_count_the_sessions(sealpost: &Sealpost) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let day = sealpost::tlsrpt::session::utc_day(now);
    let show = |domain: &str| -> Value {
        let (code, out, err) = support::sealpost::run_cli(
            &sealpost.config_path(),
            &["tls-reports", "show", &day, "acme", domain],
        );
        assert_eq!(code, Some(0), "{domain}: {err}");
        serde_json::from_str(&out).expect("JSON")
    };
    // (domain, policy-type, successes at least, failure result type);
    // every session counts: md-next.test's first MX failed DANE before the
    // second took the message.
    let table: [(&str, &str, u64, Option<&str>); 6] = [
        ("od-ok.test", "tlsa", 1, None),
        ("md-next.test", "tlsa", 1, Some("validation-failure")),
        ("sts-dane.test", "tlsa", 1, None),
        (
            "sts-none.test",
            "no-policy-found",
            0,
            Some("starttls-not-supported"),
        ),
        ("od-bad.test", "tlsa", 0, Some("validation-failure")),
        (
            "sts-untrusted.test",
            "sts",
            0,
            Some("certificate-not-trusted"),
        ),
    ];
    for (domain, kind, successes, failure) in table {
        let report = show(domain);
        // A TLSA policy per MX host: the sums over the policies of `kind`.
        let policies: Vec<&Value> = report["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .filter(|p| p["policy"]["policy-type"] == kind)
            .collect();
        assert!(
            !policies.is_empty(),
            "{domain}: no {kind} policy in {report:#}"
        );
        for policy in &policies {
            assert_eq!(policy["policy"]["policy-domain"], domain, "{report:#}");
        }
        let ok: u64 = policies
            .iter()
            .map(|p| {
                p["summary"]["total-successful-session-count"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        assert!(ok >= successes, "{domain}: {report:#}");
        if let Some(failure) = failure {
            let kinds: Vec<&str> = policies
                .iter()
                .flat_map(|p| p["failure-details"].as_array().expect("details"))
                .filter_map(|d| d["result-type"].as_str())
                .collect();
            assert!(kinds.contains(&failure), "{domain}: {report:#}");
        }
        if kind == "tlsa" && failure.is_none() {
            let record = policies[0]["policy"]["policy-string"][0]
                .as_str()
                .unwrap_or("");
            assert!(record.starts_with("3 1 1 "), "{domain}: {report:#}");
        }
    }
}

/// The setup of the tampering tests: `open.test` (opportunistic),
/// `required.test` (mandatory) and `pinned.test` (mandatory-dane) are
/// acme.test's peers and share the MX `host`. The real MX (STARTTLS
/// offered, certificate matching the TLSA) is on 127.0.0.3; the MX address
/// 127.0.0.2 is a proxy applying `tamper`. One message from
/// alice@acme.test to bob@ each peer has been submitted.
struct TamperedLevels {
    // Bind every field (`_dns` too: `..` would drop it at once); the
    // bindings drop in reverse order, sealpost first and the DNS last.
    sealpost: Sealpost,
    proxy: TamperProxy,
    mx: Mx,
    _dns: TestDns,
}

async fn three_levels_behind_a_proxy(host: &str, tamper: Tamper) -> TamperedLevels {
    let port = free_port();
    let leaf = pki::self_signed(&[host]);
    let data = leaf.tlsa_3_1_1();
    let dns = TestDns::builder()
        .mx("open.test", 10, host)
        .mx("required.test", 10, host)
        .mx("pinned.test", 10, host)
        .a(host, loopback(2))
        .tlsa(&format!("_25._tcp.{host}"), 3, 1, 1, &data)
        .start()
        .await;
    let mx = Mx::start(
        loopback(3),
        port,
        host,
        Some(pki::server_config(&leaf, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let proxy = TamperProxy::start_on(
        SocketAddr::new(IpAddr::V4(loopback(2)), port),
        mx.server.addr,
        tamper,
    )
    .await;
    let domains = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.peers = [
  { peer = "open.test", level = "opportunistic" },
  { peer = "required.test", level = "mandatory" },
  { peer = "pinned.test", level = "mandatory-dane" },
]
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));
    for to in ["bob@required.test", "bob@pinned.test", "bob@open.test"] {
        submit(sealpost.smtp, "alice@acme.test", to).await;
    }
    TamperedLevels {
        sealpost,
        proxy,
        mx,
        _dns: dns,
    }
}

/// A network attacker strips STARTTLS from the MX's EHLO reply: the
/// required levels defer and send nothing of the message (not even MAIL)
/// while `opportunistic` delivers in cleartext.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starttls_stripping_defers_the_required_levels_and_leaks_nothing() {
    let TamperedLevels {
        _dns,
        mx,
        proxy,
        sealpost,
    } = three_levels_behind_a_proxy("mx.strip.test", Tamper::strip(&["STARTTLS"])).await;

    let event = delivered_event(&sealpost, "bob@open.test").await;
    assert_eq!(event["tls"], Value::Null, "stripped: cleartext");
    for (to, level) in [
        ("bob@required.test", "mandatory"),
        ("bob@pinned.test", "mandatory-dane"),
    ] {
        let events = deferred_events(&sealpost, to, 2).await;
        assert_eq!(events[0]["level"], level);
        let detail = events[0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("STARTTLS not offered"), "{to}: {detail}");
    }
    let got = mx.received();
    assert_eq!(got.len(), 1, "only the opportunistic message arrived");
    assert_eq!(
        got[0].envelope.recipients[0].path.to_string(),
        "<bob@open.test>"
    );
    assert_eq!(mx.mails(), 1, "one MAIL command, the opportunistic one");
    let sent = proxy.client_text();
    assert!(sent.contains("RCPT TO:<bob@open.test>"), "{sent}");
    for leak in [
        "required.test",
        "pinned.test",
        "Hello bob@required",
        "Hello bob@pinned",
    ] {
        assert!(
            !sent.contains(leak),
            "`{leak}` crossed the wire in cleartext:\n{sent}"
        );
    }
}

/// The TLS handshake is broken on the wire (the ClientHello is dropped):
/// only `opportunistic` retries the same MX in cleartext; the required
/// levels defer without a byte of the message sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_opportunistic_retries_in_cleartext_after_a_failed_handshake() {
    let tamper = Tamper {
        break_tls: true,
        ..Tamper::default()
    };
    let TamperedLevels {
        _dns,
        mx,
        proxy,
        sealpost,
    } = three_levels_behind_a_proxy("mx.broken.test", tamper).await;
    let event = delivered_event(&sealpost, "bob@open.test").await;
    assert_eq!(event["tls"], Value::Null, "cleartext retry: {event}");
    for to in ["bob@required.test", "bob@pinned.test"] {
        let events = deferred_events(&sealpost, to, 2).await;
        let detail = events[0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("TLS handshake failed"), "{to}: {detail}");
    }
    assert_eq!(mx.mails(), 1, "only the opportunistic MAIL");
    assert_eq!(mx.received().len(), 1);
    let sent = proxy.client_text();
    for leak in ["required.test", "pinned.test"] {
        assert!(!sent.contains(leak), "`{leak}` crossed the wire:\n{sent}");
    }
}

/// MX hosts by preference, skipping the ones a policy refuses: the
/// `mandatory` sender's mail goes to the second MX (the first has no
/// STARTTLS) while the `opportunistic` sender's goes to the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_required_level_moves_on_to_the_next_mx() {
    let port = free_port();
    let dns = TestDns::builder()
        .mx("dest.test", 10, "mx1.dest.test")
        .mx("dest.test", 20, "mx2.dest.test")
        .a("mx1.dest.test", loopback(2))
        .a("mx2.dest.test", loopback(3))
        .start()
        .await;
    let plain = Mx::start(
        loopback(2),
        port,
        "mx1.dest.test",
        None,
        Arc::new(accept_all),
    )
    .await;
    let secure = Mx::start(
        loopback(3),
        port,
        "mx2.dest.test",
        self_signed_tls("mx2.dest.test", ALL_VERSIONS),
        Arc::new(accept_all),
    )
    .await;
    let domains = r#"
[[domains]]
name = "strict.test"
tenant = "acme"
outbound.default = { level = "mandatory", min_tls = "1.3" }

[[domains]]
name = "loose.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));
    submit(sealpost.smtp, "carol@strict.test", "strict@dest.test").await;
    let event = delivered_event(&sealpost, "strict@dest.test").await;
    assert_eq!(event["mx"], "mx2.dest.test");
    assert_eq!(event["tls"], "TLSv1.3");
    submit(sealpost.smtp, "dave@loose.test", "loose@dest.test").await;
    let event = delivered_event(&sealpost, "loose@dest.test").await;
    assert_eq!(event["mx"], "mx1.dest.test");
    assert_eq!(event["tls"], Value::Null);
    assert_eq!(plain.mails(), 1, "only the opportunistic MAIL reached mx1");
    assert_eq!(
        plain.received()[0].envelope.from.to_string(),
        "<dave@loose.test>"
    );
    assert_eq!(secure.received().len(), 1);
    assert_eq!(
        secure.received()[0].envelope.from.to_string(),
        "<carol@strict.test>"
    );
}

/// Queued mail is judged by the policy in force at each attempt: a
/// message deferred under `min_tls = "1.3"` is delivered once a reload
/// lowers the peer's minimum to 1.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_applies_to_queued_mail_at_its_next_attempt() {
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(
        port,
        self_signed_tls("mx.dest.test", TLS12_ONLY),
        Arc::new(accept_all),
    )
    .await;
    let domains = |min: &str| {
        format!(
            r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.peers = [{{ peer = "dest.test", level = "mandatory", min_tls = "{min}" }}]
"#
        )
    };
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &domains("1.3")));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;
    let events = deferred_events(&sealpost, "bob@dest.test", 1).await;
    assert!(
        events[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("below the required minimum 1.3"),
        "{events:#?}"
    );
    assert_eq!(dest.mails(), 0);

    let listen = sealpost.smtp.port();
    std::fs::write(
        sealpost.config_path(),
        base_config(listen, port, &dns, &domains("1.2")),
    )
    .expect("rewrite the configuration");
    sealpost.signal("-HUP");
    let event = delivered_event(&sealpost, "bob@dest.test").await;
    assert_eq!(event["tls"], "TLSv1.2");
    let got = dest.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tls_version.as_deref(), Some("TLSv1_2"));
}
