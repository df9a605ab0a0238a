//! RFC 8689 on the outbound side, end to end through `sealpost serve`:
//!
//! - A message received with `MAIL FROM:<..> REQUIRETLS` goes only to an
//!   MX whose TLS is authenticated (DANE in the signed test zone, or an
//!   MTA-STS `enforce` policy with a certificate from the test CA) and
//!   that advertises REQUIRETLS, with `REQUIRETLS` on its MAIL FROM.
//!   Otherwise it is returned at once, never retried: `5.7.30` when the
//!   authenticated MX lacks REQUIRETLS, `5.7.10` when no MX can be
//!   authenticated (unauthenticated TLS, an MTA-STS `testing` policy,
//!   cleartext only, a managed domain's route without `authenticate`), and
//!   no MAIL command ever reaches those receivers.
//! - A route with `authenticate = "webpki"` carries inbound REQUIRETLS
//!   mail to the customer's server when its certificate is valid for the
//!   route's host name, and nothing at all when it is not.
//! - A `TLS-Required: No` header field relaxes the recipient's policy
//!   (`opportunistic-dane`, `mta-sts`): a DANE or MTA-STS failure no
//!   longer stops the message. A mandatory level the operator set for
//!   the peer (`mandatory-dane`) is never relaxed.
mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;

use sealpost::smtp::SessionConfig;

use support::dns::TestDns;
use support::dsn_parse::{self, recipient_blocks};
use support::https::{HttpsServer, Reply as HttpsReply};
use support::outbound::{
    acme_routed_to, attempts, base_config, deferred_events, delivered_event, home_mx, loopback,
    until, with_result, Mx, WAIT,
};
use support::pki::{self, TestCa, ALL_VERSIONS};
use support::sealpost::{free_port, starttls, Sealpost};
use support::smtp::{accept_all, command, data, mail_rcpt, Decide};

/// Relays one message from alice@acme.test to `to` through sealpost over
/// STARTTLS with `MAIL FROM:<..> REQUIRETLS`.
async fn submit_requiretls(sealpost: std::net::SocketAddr, to: &str) {
    let mut tls = starttls(sealpost, ALL_VERSIONS).await;
    let rcpt = mail_rcpt(
        &mut tls,
        "MAIL FROM:<alice@acme.test> REQUIRETLS",
        &format!("RCPT TO:<{to}>"),
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let queued = data(
        &mut tls,
        &format!("From: <alice@acme.test>\r\nTo: <{to}>\r\nSubject: confidential\r\n\r\nonly over authenticated TLS\r\n"),
    )
    .await;
    assert_eq!(queued.code, 250, "{queued:?}");
    assert_eq!(command(&mut tls, "QUIT").await.code, 221);
}

/// Relays one message without REQUIRETLS, with `TLS-Required: No` when
/// `tls_optional`.
async fn submit_plain(sealpost: std::net::SocketAddr, to: &str, tls_optional: bool) {
    let header = if tls_optional {
        "TLS-Required: No\r\n"
    } else {
        ""
    };
    let body = format!(
        "From: <alice@acme.test>\r\nTo: <{to}>\r\n{header}Subject: not secret\r\n\r\nhello\r\n"
    );
    support::sealpost::submit(sealpost, "alice@acme.test", &[to], body.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("sealpost refused the message to {to}: {e}"));
}

/// The DSN fields of `to`'s recipient block among every DSN `home` got.
fn dsn_block_of(home: &Mx, to: &str) -> Option<Vec<(String, String)>> {
    home.received()
        .iter()
        .flat_map(|dsn| recipient_blocks(&dsn.body))
        .find(|block| dsn_parse::get(block, "final-recipient") == Some(&format!("rfc822; {to}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requiretls_goes_only_over_authenticated_tls_to_servers_that_advertise_it() {
    let port = free_port();
    let ca = TestCa::new("sealpost REQUIRETLS test CA");
    let (_ca_dir, ca_file) = ca.pem_file();
    let policy_leaf = ca.issue(&["mta-sts.sts-ok.test", "mta-sts.sts-testing.test"]);
    let policy_host = HttpsServer::start(
        pki::server_config(&policy_leaf, ALL_VERSIONS),
        |host, path| {
            if path != "/.well-known/mta-sts.txt" {
                HttpsReply::status(404)
            } else if host.starts_with("mta-sts.sts-ok.test") {
                HttpsReply::text(&policy_text("mx.sts-ok.test"))
            } else if host.starts_with("mta-sts.sts-testing.test") {
                HttpsReply::text(
                    "version: STSv1\nmode: testing\nmx: mx.sts-testing.test\nmax_age: 86400\n",
                )
            } else {
                HttpsReply::status(404)
            }
        },
    )
    .await;
    let ok_leaf = pki::self_signed(&["mx.dane-ok.test"]);
    let noreq_leaf = pki::self_signed(&["mx.dane-noreq.test"]);
    let dns = TestDns::builder()
        // DANE-authenticated, advertises REQUIRETLS: delivered.
        .mx("dane-ok.test", 10, "mx.dane-ok.test")
        .a("mx.dane-ok.test", loopback(2))
        .tlsa("_25._tcp.mx.dane-ok.test", 3, 1, 1, &ok_leaf.tlsa_3_1_1())
        // DANE-authenticated, does not advertise REQUIRETLS: 5.7.30.
        .mx("dane-noreq.test", 10, "mx.dane-noreq.test")
        .a("mx.dane-noreq.test", loopback(3))
        .tlsa(
            "_25._tcp.mx.dane-noreq.test",
            3,
            1,
            1,
            &noreq_leaf.tlsa_3_1_1(),
        )
        // STARTTLS with a certificate nothing authenticates: 5.7.10.
        .mx("unauth.test", 10, "mx.unauth.test")
        .a("mx.unauth.test", loopback(4))
        // Cleartext only: 5.7.10.
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", loopback(5))
        // MTA-STS enforce, certificate from the CA: delivered.
        .mx("sts-ok.test", 10, "mx.sts-ok.test")
        .a("mx.sts-ok.test", loopback(6))
        .txt("_mta-sts.sts-ok.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-ok.test", Ipv4Addr::LOCALHOST)
        // MTA-STS testing: not authenticated, 5.7.10.
        .mx("sts-testing.test", 10, "mx.sts-testing.test")
        .a("mx.sts-testing.test", loopback(7))
        .txt("_mta-sts.sts-testing.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-testing.test", Ipv4Addr::LOCALHOST)
        .start()
        .await;
    let accept: Arc<Decide> = Arc::new(accept_all);
    let tls = |leaf: &pki::Leaf| Some(pki::server_config(leaf, ALL_VERSIONS));
    let ok = Mx::start(
        loopback(2),
        port,
        "mx.dane-ok.test",
        tls(&ok_leaf),
        accept.clone(),
    )
    .await;
    let without = SessionConfig {
        hostname: "mx.dane-noreq.test".into(),
        requiretls_available: false,
        ..SessionConfig::default()
    };
    let noreq =
        Mx::start_with_config(loopback(3), port, without, tls(&noreq_leaf), accept.clone()).await;
    let unauth = Mx::start(
        loopback(4),
        port,
        "mx.unauth.test",
        tls(&pki::self_signed(&["mx.unauth.test"])),
        accept.clone(),
    )
    .await;
    let plain = Mx::start(loopback(5), port, "mx.plain.test", None, accept.clone()).await;
    let sts_ok = Mx::start(
        loopback(6),
        port,
        "mx.sts-ok.test",
        tls(&ca.issue(&["mx.sts-ok.test"])),
        accept.clone(),
    )
    .await;
    let sts_testing = Mx::start(
        loopback(7),
        port,
        "mx.sts-testing.test",
        tls(&ca.issue(&["mx.sts-testing.test"])),
        accept.clone(),
    )
    .await;
    // The sender's level is only `opportunistic`: REQUIRETLS asks more.
    let home = home_mx().await;
    let domains = format!(
        "[mta_sts]\nhttps_port = {}\nca_file = \"{}\"\n{}",
        policy_host.port(),
        ca_file.display(),
        acme_routed_to("opportunistic", &home)
    );
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &domains));

    for to in [
        "bob@dane-ok.test",
        "bob@dane-noreq.test",
        "bob@unauth.test",
        "bob@plain.test",
        "bob@sts-ok.test",
        "bob@sts-testing.test",
    ] {
        submit_requiretls(sealpost.smtp, to).await;
    }

    // Authenticated by DANE, REQUIRETLS advertised: delivered with the
    // parameter on MAIL FROM.
    let event = delivered_event(&sealpost, "bob@dane-ok.test").await;
    assert_eq!(event["authentication"], "Dane", "{event}");
    let got = ok.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].envelope.params.requiretls, "{:?}", got[0].envelope);
    assert!(got[0].tls_version.is_some());
    // Authenticated by MTA-STS enforce (WebPKI).
    let event = delivered_event(&sealpost, "bob@sts-ok.test").await;
    assert_eq!(event["authentication"], "WebPki", "{event}");
    assert_eq!(event["level"], "mta-sts", "planned under mta-sts: {event}");
    let got = sts_ok.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].envelope.params.requiretls, "{:?}", got[0].envelope);

    // Every other one comes back to the sender at once, with its status.
    let returned = [
        ("bob@dane-noreq.test", "5.7.30"),
        ("bob@unauth.test", "5.7.10"),
        ("bob@plain.test", "5.7.10"),
        ("bob@sts-testing.test", "5.7.10"),
    ];
    let all_returned = until(WAIT, || {
        returned
            .iter()
            .all(|(to, _)| dsn_block_of(&home, to).is_some())
    })
    .await;
    assert!(
        all_returned,
        "DSNs missing; attempts: {:#?}; DSNs: {}",
        returned
            .iter()
            .map(|(to, _)| attempts(&sealpost, to))
            .collect::<Vec<_>>(),
        home.received().len()
    );
    for (to, status) in returned {
        let block = dsn_block_of(&home, to).expect("DSN");
        assert_eq!(dsn_parse::get(&block, "action"), Some("failed"), "{to}");
        assert_eq!(dsn_parse::get(&block, "status"), Some(status), "{to}");
        // Failed at the first attempt: no retry loop.
        let tried = attempts(&sealpost, to);
        assert_eq!(tried.len(), 1, "{to}: {tried:#?}");
        assert_eq!(tried[0]["result"], "failed", "{to}");
        assert!(with_result(&sealpost, to, "deferred").is_empty());
    }
    let detail = attempts(&sealpost, "bob@dane-noreq.test")[0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("REQUIRETLS"), "{detail}");
    // Nothing of the message reached a server that could not carry it.
    assert_eq!(noreq.mails(), 0, "no MAIL to the MX without REQUIRETLS");
    assert_eq!(unauth.mails(), 0, "no MAIL over unauthenticated TLS");
    assert_eq!(plain.mails(), 0, "no MAIL in cleartext");
    assert_eq!(sts_testing.mails(), 0, "no MAIL under a testing policy");
    // The DSNs themselves come from the null sender to alice, and return
    // none of the message (RFC 8689 section 5).
    for dsn in home.received() {
        let text = String::from_utf8_lossy(&dsn.body);
        assert!(!text.contains("confidential"), "{text}");
        assert!(!text.contains("text/rfc822-headers"), "{text}");
        assert_eq!(dsn.envelope.from.to_string(), "<>");
        assert_eq!(
            dsn.envelope.recipients[0].path.to_string(),
            "<alice@acme.test>"
        );
    }
}

fn policy_text(mx_pattern: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {mx_pattern}\nmax_age: 86400\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_required_no_relaxes_dane_and_mta_sts_but_never_a_mandatory_level() {
    let port = free_port();
    let ca = TestCa::new("sealpost TLS-Required test CA");
    let (_ca_dir, ca_file) = ca.pem_file();
    let stranger = pki::self_signed(&["stranger.test"]);
    let policy_leaf = ca.issue(&["mta-sts.sts-bad.test"]);
    let policy_host = HttpsServer::start(
        pki::server_config(&policy_leaf, ALL_VERSIONS),
        |host, path| {
            if path == "/.well-known/mta-sts.txt" && host.starts_with("mta-sts.sts-bad.test") {
                // The MX is not in the policy: enforce refuses it.
                HttpsReply::text(&policy_text("mx.elsewhere.test"))
            } else {
                HttpsReply::status(404)
            }
        },
    )
    .await;
    let dns = TestDns::builder()
        // opportunistic-dane, the TLSA pins another key.
        .mx("od-bad.test", 10, "mx.od-bad.test")
        .a("mx.od-bad.test", loopback(2))
        .tlsa("_25._tcp.mx.od-bad.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        // mta-sts enforce, the MX not in the policy.
        .mx("sts-bad.test", 10, "mx.sts-bad.test")
        .a("mx.sts-bad.test", loopback(3))
        .txt("_mta-sts.sts-bad.test", &["v=STSv1; id=1;"])
        .a("mta-sts.sts-bad.test", Ipv4Addr::LOCALHOST)
        // mandatory-dane set by the operator, the TLSA pins another key.
        .mx("md-bad.test", 10, "mx.md-bad.test")
        .a("mx.md-bad.test", loopback(4))
        .tlsa("_25._tcp.mx.md-bad.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        .start()
        .await;
    let accept: Arc<Decide> = Arc::new(accept_all);
    let start = |last: u8, name: &'static str| {
        let tls = Some(pki::server_config(&pki::self_signed(&[name]), ALL_VERSIONS));
        Mx::start(loopback(last), port, name, tls, accept.clone())
    };
    let od_bad = start(2, "mx.od-bad.test").await;
    let sts_bad = start(3, "mx.sts-bad.test").await;
    let md_bad = start(4, "mx.md-bad.test").await;
    let extra = format!(
        r#"
[mta_sts]
https_port = {}
ca_file = "{}"

[[domains]]
name = "acme.test"
tenant = "acme"
outbound.peers = [
  {{ peer = "od-bad.test", level = "opportunistic-dane" }},
  {{ peer = "sts-bad.test", level = "mta-sts" }},
  {{ peer = "md-bad.test", level = "mandatory-dane" }},
]
"#,
        policy_host.port(),
        ca_file.display()
    );
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &extra));

    // Without the header field the recipient's policy holds...
    submit_plain(sealpost.smtp, "carol@od-bad.test", false).await;
    submit_plain(sealpost.smtp, "carol@sts-bad.test", false).await;
    // ... with it, the recipient's policy is relaxed ...
    submit_plain(sealpost.smtp, "bob@od-bad.test", true).await;
    submit_plain(sealpost.smtp, "bob@sts-bad.test", true).await;
    // ... but not the operator's mandatory level.
    submit_plain(sealpost.smtp, "bob@md-bad.test", true).await;

    for (to, mx) in [("bob@od-bad.test", &od_bad), ("bob@sts-bad.test", &sts_bad)] {
        let event = delivered_event(&sealpost, to).await;
        assert_eq!(event["level"], "opportunistic", "{to}: {event}");
        assert_eq!(event["authentication"], "None", "{to}: {event}");
        assert!(event["tls"].is_string(), "still encrypted: {event}");
        let got = mx.received();
        assert_eq!(got.len(), 1, "{to}: only the relaxed message");
        assert_eq!(
            got[0].envelope.recipients[0].path.to_string(),
            format!("<{to}>")
        );
    }
    let relaxed = sealpost.events("TLS-Required: No relaxes the recipient's TLS policy");
    for (domain, level) in [
        ("od-bad.test", "opportunistic-dane"),
        ("sts-bad.test", "mta-sts"),
    ] {
        assert!(
            relaxed
                .iter()
                .any(|e| e["destination"] == domain && e["level"] == level),
            "{domain}: {relaxed:#?}"
        );
    }

    for to in ["carol@od-bad.test", "carol@sts-bad.test", "bob@md-bad.test"] {
        deferred_events(&sealpost, to, 2).await;
    }
    assert_eq!(md_bad.mails(), 0, "the mandatory level was not relaxed");
    let kept = sealpost.events("TLS-Required: No does not relax a mandatory level");
    assert!(
        kept.iter()
            .any(|e| e["destination"] == "md-bad.test" && e["level"] == "mandatory-dane"),
        "{kept:#?}"
    );
    assert!(
        !relaxed.iter().any(|e| e["destination"] == "md-bad.test"),
        "{relaxed:#?}"
    );
}

/// A managed domain's route without `authenticate` never authenticates
/// its hosts (its levels are `opportunistic` and `mandatory`): inbound
/// REQUIRETLS mail for it is returned with 5.7.10 to the outside sender,
/// and the route's server never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requiretls_inbound_mail_is_returned_when_the_route_cannot_be_authenticated() {
    let port = free_port();
    let dns = TestDns::builder()
        .mx("far.test", 10, "mx.far.test")
        .a("mx.far.test", loopback(2))
        .start()
        .await;
    // The outside sender's MX, where the DSN goes.
    let far = Mx::start(loopback(2), port, "mx.far.test", None, Arc::new(accept_all)).await;
    let home = home_mx().await;
    let domains = acme_routed_to("opportunistic", &home)
        .replace("route = {", "route = { level = \"mandatory\", ");
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &domains));

    let mut tls = starttls(sealpost.smtp, ALL_VERSIONS).await;
    let rcpt = mail_rcpt(
        &mut tls,
        "MAIL FROM:<carol@far.test> REQUIRETLS",
        "RCPT TO:<bob@acme.test>",
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let queued = data(&mut tls, "Subject: for bob\r\n\r\nconfidential\r\n").await;
    assert_eq!(queued.code, 250, "{queued:?}");
    assert_eq!(command(&mut tls, "QUIT").await.code, 221);

    let returned = until(WAIT, || !far.received().is_empty()).await;
    assert!(
        returned,
        "no DSN at the sender's MX; attempts: {:#?}",
        attempts(&sealpost, "bob@acme.test")
    );
    let dsn = far.received().remove(0);
    assert_eq!(dsn.envelope.from.to_string(), "<>");
    assert_eq!(
        dsn.envelope.recipients[0].path.to_string(),
        "<carol@far.test>"
    );
    let block = recipient_blocks(&dsn.body).remove(0);
    assert_eq!(dsn_parse::get(&block, "action"), Some("failed"));
    assert_eq!(dsn_parse::get(&block, "status"), Some("5.7.10"));
    assert_eq!(attempts(&sealpost, "bob@acme.test").len(), 1);
    assert_eq!(home.mails(), 0, "the route's server never saw it");
}

/// A route with `authenticate = "webpki"`: the customer's server (a name
/// in the route, its certificate from the test CA given as `[mta_sts]
/// ca_file`) gets inbound REQUIRETLS mail with the parameter on MAIL FROM.
/// A second domain's server has a certificate no root vouches for: its
/// mail, REQUIRETLS or not, is never sent there and waits in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requiretls_inbound_mail_goes_over_a_route_that_authenticates_its_server() {
    let port = free_port();
    let ca = TestCa::new("sealpost route test CA");
    let (_ca_dir, ca_file) = ca.pem_file();
    let dns = TestDns::builder()
        .a("mail.acme.test", loopback(8))
        .a("mail.beta.test", loopback(9))
        .start()
        .await;
    let accept: Arc<Decide> = Arc::new(accept_all);
    let route_port = free_port();
    let trusted = Mx::start(
        loopback(8),
        route_port,
        "mail.acme.test",
        Some(pki::server_config(
            &ca.issue(&["mail.acme.test"]),
            ALL_VERSIONS,
        )),
        accept.clone(),
    )
    .await;
    let untrusted = Mx::start(
        loopback(9),
        route_port,
        "mail.beta.test",
        Some(pki::server_config(
            &pki::self_signed(&["mail.beta.test"]),
            ALL_VERSIONS,
        )),
        accept.clone(),
    )
    .await;
    let domains = format!(
        r#"[mta_sts]
ca_file = "{ca}"

[[domains]]
name = "acme.test"
tenant = "acme"
route = {{ hosts = ["mail.acme.test:{route_port}"], authenticate = "webpki" }}

[[domains]]
name = "beta.test"
tenant = "beta"
route = {{ hosts = ["mail.beta.test:{route_port}"], authenticate = "webpki" }}
"#,
        ca = ca_file.display()
    );
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &domains));

    for to in ["bob@acme.test", "bob@beta.test"] {
        let mut tls = starttls(sealpost.smtp, ALL_VERSIONS).await;
        let rcpt = mail_rcpt(
            &mut tls,
            "MAIL FROM:<carol@far.test> REQUIRETLS",
            &format!("RCPT TO:<{to}>"),
        )
        .await;
        assert_eq!(rcpt.code, 250, "{rcpt:?}");
        let queued = data(&mut tls, "Subject: for bob\r\n\r\nconfidential\r\n").await;
        assert_eq!(queued.code, 250, "{queued:?}");
        assert_eq!(command(&mut tls, "QUIT").await.code, 221);
    }

    let event = delivered_event(&sealpost, "bob@acme.test").await;
    assert_eq!(event["authentication"], "WebPki", "{event}");
    let got = trusted.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].envelope.params.requiretls, "{:?}", got[0].envelope);
    assert!(got[0].tls_version.is_some());

    // The untrusted certificate: deferred, never sent, never returned as
    // a REQUIRETLS failure (the route's own rule refused the server).
    let deferred = until(WAIT, || {
        !with_result(&sealpost, "bob@beta.test", "deferred").is_empty()
    })
    .await;
    let tried = attempts(&sealpost, "bob@beta.test");
    assert!(deferred, "{tried:#?}");
    let detail = tried[0]["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains("TLS handshake failed"), "{detail}");
    assert_eq!(
        untrusted.mails(),
        0,
        "no MAIL to an unauthenticated route host"
    );
}
