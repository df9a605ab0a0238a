//! Sending TLS reports (RFC 8460) end to end through the real
//! `sealpost serve`: an outbound delivery is counted in the day's
//! aggregate, which survives a restart; `sealpost tls-reports list`
//! shows it pending; `send-now` looks up `_smtp._tls.<domain>` in the test
//! DNS, POSTs the gzipped report to the HTTPS `rua` (a loopback receiver
//! with a certificate from a test CA) and mails it through sealpost's own
//! queue to the `mailto:` `rua` (a loopback SMTP sink); the report mail
//! carries the section 5.3 headers and `TLS-Required: No`, and is never
//! counted itself; `show` prints the report as sent.
mod support;

use std::convert::Infallible;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::dns::TestDns;
use support::outbound::{
    base_config, delivered_event, loopback, self_signed_tls, submit, until, utc_today, Mx, WAIT,
};
use support::pki::{TestCa, ALL_VERSIONS};
use support::sealpost::{free_port, run_cli, Sealpost};
use support::smtp::accept_all;

/// One POST as the receiver saw it: content type and body.
type Posts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTPS report receiver on 127.0.0.1 (a free port) presenting a
/// certificate for `rua.test`; answers 200 and keeps each POST.
async fn report_receiver(ca: &TestCa) -> (u16, Posts) {
    report_receiver_failing(ca, 0).await
}

/// [`report_receiver`] that answers the first `failures` POSTs with 503
/// (and keeps them too).
async fn report_receiver_failing(ca: &TestCa, failures: usize) -> (u16, Posts) {
    let leaf = ca.issue(&["rua.test"]);
    let tls = support::pki::server_config(&leaf, ALL_VERSIONS);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let posts: Posts = Arc::default();
    let kept = posts.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let kept = kept.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let kind = req
                                .headers()
                                .get(hyper::header::CONTENT_TYPE)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let seen = {
                                let mut kept = kept.lock().expect("lock");
                                kept.push((kind, body));
                                kept.len()
                            };
                            let mut answer = hyper::Response::new(http_body_util::Full::new(
                                hyper::body::Bytes::from_static(b"ok"),
                            ));
                            if seen <= failures {
                                *answer.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, Infallible>(answer)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, posts)
}

/// A reporting node's configuration in `dir` (daily jitter 2 s), with a
/// test DNS in which `far.test` asks for its reports at `rua` (`rua.test`
/// on loopback).
async fn reporting_node(rua: &str, dir: &std::path::Path) -> (TestDns, sealpost::config::Config) {
    let dns = TestDns::builder()
        .txt("_smtp._tls.far.test", &[&format!("v=TLSRPTv1; rua={rua}")])
        .a("rua.test", loopback(1))
        .start()
        .await;
    let text = format!(
        "{}\n[tls_reports]\njitter = \"2s\"\n",
        base_config(free_port(), free_port(), &dns, "")
    );
    let config = sealpost::config::Config::parse(&text, "t.toml", Some(dir)).expect("config");
    (dns, config)
}

fn gunzip(bytes: &[u8]) -> serde_json::Value {
    let mut json = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut json)
        .expect("gzip");
    serde_json::from_str(&json).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_days_sessions_are_reported_by_https_and_by_mail() {
    let ca = TestCa::new("tlsrpt test CA");
    let (rua_port, posts) = report_receiver(&ca).await;
    let mx_port = free_port();
    let dns = TestDns::builder()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", loopback(2))
        .txt(
            "_smtp._tls.dest.test",
            &[&format!(
                "v=TLSRPTv1; rua=https://rua.test:{rua_port}/report,mailto:tlsrpt@reports.test"
            )],
        )
        .a("rua.test", loopback(1))
        .mx("reports.test", 10, "mx.reports.test")
        .a("mx.reports.test", loopback(3))
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", loopback(4))
        .start()
        .await;
    let dest = Mx::start(
        loopback(2),
        mx_port,
        "mx.dest.test",
        self_signed_tls("mx.dest.test", ALL_VERSIONS),
        Arc::new(accept_all),
    )
    .await;
    let reports = Mx::start(
        loopback(3),
        mx_port,
        "mx.reports.test",
        None,
        Arc::new(accept_all),
    )
    .await;
    // No STARTTLS: delivered in cleartext, a `starttls-not-supported` session.
    let plain = Mx::start(
        loopback(4),
        mx_port,
        "mx.plain.test",
        None,
        Arc::new(accept_all),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).expect("write");
    let extra = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }

[mta_sts]
ca_file = "ca.pem"

[tls_reports]
organization_name = "Gateway Test"
contact_info = "mailto:tls@gw.sealpost.test"
[tls_reports.tenants.acme]
organization_name = "Acme Reports"
"#;
    let mut sealpost = Sealpost::start_in(dir, |listen| base_config(listen, mx_port, &dns, extra));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;
    delivered_event(&sealpost, "bob@dest.test").await;
    assert_eq!(dest.received().len(), 1);
    submit(sealpost.smtp, "alice@acme.test", "carol@plain.test").await;
    delivered_event(&sealpost, "carol@plain.test").await;
    assert_eq!(plain.received().len(), 1);

    // Counted, pending, and still there after a restart.
    let day = utc_today();
    sealpost.stop();
    sealpost.spawn();
    let config = sealpost.config_path();
    let listed = until(WAIT, || {
        let (code, out, _) = run_cli(&config, &["tls-reports", "list"]);
        code == Some(0) && out.contains("dest.test") && out.contains("pending")
    })
    .await;
    assert!(listed, "{:?}", run_cli(&config, &["tls-reports", "list"]));
    let (code, shown, err) = run_cli(&config, &["tls-reports", "show", &day, "acme", "dest.test"]);
    assert_eq!(code, Some(0), "{err}");
    let pending: serde_json::Value = serde_json::from_str(&shown).expect("show prints JSON");
    assert_eq!(pending["organization-name"], "Acme Reports");
    let (code, shown, err) = run_cli(
        &config,
        &["tls-reports", "show", &day, "acme", "plain.test"],
    );
    assert_eq!(code, Some(0), "{err}");
    let plain_report: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
    let policy = &plain_report["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "no-policy-found");
    assert_eq!(policy["summary"]["total-successful-session-count"], 0);
    assert_eq!(policy["summary"]["total-failure-session-count"], 1);
    let failure = &policy["failure-details"][0];
    assert_eq!(failure["result-type"], "starttls-not-supported");
    assert_eq!(failure["receiving-mx-hostname"], "mx.plain.test");
    assert_eq!(failure["receiving-ip"], "127.0.0.4");
    assert_eq!(failure["failed-session-count"], 1);

    let (code, out, err) = run_cli(&config, &["tls-reports", "send-now", "--include-today"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("https://rua.test"), "{out}");
    assert!(out.contains("queued as"), "{out}");
    assert!(
        out.contains("no TLSRPT record at _smtp._tls.plain.test"),
        "{out}"
    );

    // The HTTPS receiver got the gzipped report, RFC 8460 section 4.4.
    let posts = posts.lock().expect("lock").clone();
    assert_eq!(posts.len(), 1, "one POST");
    assert_eq!(posts[0].0, "application/tlsrpt+gzip");
    let report = gunzip(&posts[0].1);
    assert_eq!(report["organization-name"], "Acme Reports");
    assert_eq!(report["contact-info"], "mailto:tls@gw.sealpost.test");
    assert_eq!(
        report["date-range"]["start-datetime"],
        format!("{day}T00:00:00Z")
    );
    assert_eq!(
        report["date-range"]["end-datetime"],
        format!("{day}T23:59:59Z")
    );
    assert!(report["report-id"]
        .as_str()
        .is_some_and(|id| id.contains("dest.test")));
    let policy = &report["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "no-policy-found");
    assert_eq!(policy["policy"]["policy-domain"], "dest.test");
    assert_eq!(policy["summary"]["total-successful-session-count"], 1);
    assert_eq!(policy["summary"]["total-failure-session-count"], 0);

    // The report mail went through the queue to reports.test's MX.
    assert!(
        until(WAIT, || !reports.received().is_empty()).await,
        "no report mail; log:\n{}",
        sealpost.log()
    );
    let mail = reports.received().remove(0);
    assert_eq!(
        mail.envelope.from.to_string(),
        "<tlsrpt-noreply@gw.sealpost.test>"
    );
    let text = String::from_utf8_lossy(&mail.body).to_string();
    for want in [
        "TLS-Report-Domain: dest.test",
        "TLS-Report-Submitter: gw.sealpost.test",
        "TLS-Required: No",
        "report-type=\"tlsrpt\"",
        "Content-Type: application/tlsrpt+gzip",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let (_, gz) = sealpost::tlsrpt::mail::report_part(&mail.body).expect("report part");
    assert_eq!(gunzip(&gz), report);

    // Report mail is never counted (its attempt is logged after it would
    // have been), and the sent report is not sent again.
    delivered_event(&sealpost, "tlsrpt@reports.test").await;
    let (_, out, _) = run_cli(&config, &["tls-reports", "list"]);
    assert!(
        !out.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("reports.test")),
        "{out}"
    );
    assert!(!out.contains("pending"), "{out}");
    let (code, again, _) = run_cli(&config, &["tls-reports", "send-now", "--include-today"]);
    assert_eq!(code, Some(0));
    assert!(again.contains("no TLS report was due"), "{again}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(posts.len(), 1);
}

/// A clock the test moves.
struct TestClock(std::sync::atomic::AtomicU64);

impl sealpost::tlsrpt::Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The daily run with an injected clock: nothing is sent during the day
/// the sessions were counted in; once the clock passes midnight UTC and
/// the jitter, the day's report is POSTed (the test DNS names the `rua`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_run_sends_after_midnight_utc() {
    use sealpost::tlsrpt::{
        Daily, PolicySeen, PolicyType, Reporter, SessionOutcome, SessionResult,
    };
    use std::sync::atomic::Ordering;

    let ca = TestCa::new("tlsrpt daily CA");
    let (rua_port, posts) = report_receiver(&ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (dns, config) = reporting_node(&format!("https://rua.test:{rua_port}/r"), dir.path()).await;
    let queue = sealpost_queue::Queue::open(
        dir.path().join("queue"),
        sealpost_queue::QueueOptions::default(),
    )
    .expect("queue");
    let resolver = Arc::new(dns.resolver());
    let poster =
        sealpost::tlsrpt::https::HttpsPoster::new(ca.roots(), resolver.clone()).expect("poster");
    let reporter = Arc::new(Reporter::new(
        Daily::open(&config.server.data_dir).expect("daily"),
        Arc::new(sealpost::live::LiveConfig::new(config)),
        Arc::new(queue),
        resolver,
        Some(poster),
    ));
    let day = 1_767_225_600; // 2026-01-01T00:00:00Z
    let failed = SessionOutcome::Failure(sealpost::tlsrpt::session::TlsFailure::CertificateExpired);
    for outcome in [SessionOutcome::Success, SessionOutcome::Success, failed] {
        reporter.record(&SessionResult {
            tenant: "acme".into(),
            policy: PolicySeen {
                policy_type: PolicyType::Sts,
                policy_strings: vec!["version: STSv1".into(), "mode: enforce".into()],
                policy_domain: "far.test".into(),
                mx_host: vec!["mx.far.test".into()],
            },
            mx_host: Some("mx.far.test".into()),
            receiving_ip: Some("192.0.2.9".parse().expect("ip")),
            sending_ip: None,
            outcome,
            at: day + 600,
        });
    }
    let clock = Arc::new(TestClock(std::sync::atomic::AtomicU64::new(day + 3600)));
    tokio::spawn(sealpost::tlsrpt::send::run_daily(
        reporter.clone(),
        clock.clone(),
        Duration::from_millis(50),
    ));
    let listing = reporter.listing(day + 3600).expect("listing");
    assert_eq!(listing.pending.len(), 1, "{listing:?}");
    assert!(posts.lock().expect("lock").is_empty());

    clock.0.store(day + 86_400 + 3, Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(30), || !posts
            .lock()
            .expect("lock")
            .is_empty())
        .await,
        "no report after midnight"
    );
    let report = gunzip(&posts.lock().expect("lock")[0].1);
    assert_eq!(
        report["date-range"]["start-datetime"],
        "2026-01-01T00:00:00Z"
    );
    let policy = &report["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "sts");
    assert_eq!(policy["policy"]["policy-string"][1], "mode: enforce");
    assert_eq!(policy["policy"]["mx-host"][0], "mx.far.test");
    assert_eq!(policy["summary"]["total-successful-session-count"], 2);
    assert_eq!(policy["summary"]["total-failure-session-count"], 1);
    assert_eq!(
        policy["failure-details"][0]["result-type"],
        "certificate-expired"
    );
    assert_eq!(policy["failure-details"][0]["receiving-ip"], "192.0.2.9");
    let listing = reporter.listing(day + 86_400 + 3).expect("listing");
    assert!(listing.pending.is_empty(), "{listing:?}");
    assert_eq!(listing.sent.len(), 1);

    // Retention (`[tls_reports] retention_days`, 90 by default): kept on
    // day 90, gone on day 91, with the day's counts.
    reporter.prune(day + 90 * 86_400);
    assert_eq!(
        reporter
            .listing(day + 90 * 86_400)
            .expect("listing")
            .sent
            .len(),
        1
    );
    reporter.prune(day + 91 * 86_400 + 1);
    let listing = reporter.listing(day + 91 * 86_400 + 1).expect("listing");
    assert!(
        listing.sent.is_empty() && listing.pending.is_empty(),
        "{listing:?}"
    );
    let key = sealpost::tlsrpt::ReportKey {
        day: "2026-01-01".into(),
        tenant: "acme".into(),
        domain: "far.test".into(),
    };
    assert_eq!(reporter.show(&key).expect("show"), None);
}

/// A failed HTTPS POST is tried again later (RFC 8460 section 5.2 leaves
/// retries to the sender), with the state kept with the report: the
/// receiver answers 503 to the first POST; the `mailto:` destination of
/// the same record is still used; after a restart (the aggregate opened
/// anew) the second try, once its time has come, is accepted; each try's
/// outcome is in what `sealpost tls-reports list` shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_https_post_is_tried_again_after_a_restart() {
    use sealpost::tlsrpt::{Daily, Reporter, SessionResult};
    use std::sync::atomic::Ordering;

    let ca = TestCa::new("tlsrpt retry CA");
    let (rua_port, posts) = report_receiver_failing(&ca, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (dns, config) = reporting_node(
        &format!("https://rua.test:{rua_port}/r,mailto:tlsrpt@reports.test"),
        dir.path(),
    )
    .await;
    let data_dir = config.server.data_dir.clone();
    let live = Arc::new(sealpost::live::LiveConfig::new(config));
    let queue = Arc::new(
        sealpost_queue::Queue::open(
            dir.path().join("queue"),
            sealpost_queue::QueueOptions::default(),
        )
        .expect("queue"),
    );
    let resolver = Arc::new(dns.resolver());
    let reporter = |daily| {
        let poster = sealpost::tlsrpt::https::HttpsPoster::new(ca.roots(), resolver.clone())
            .expect("poster");
        Arc::new(Reporter::new(
            daily,
            live.clone(),
            queue.clone(),
            resolver.clone(),
            Some(poster),
        ))
    };
    let first = reporter(Daily::open(&data_dir).expect("daily"));
    let day = 1_767_225_600; // 2026-01-01T00:00:00Z
    let session: SessionResult = serde_json::from_value(serde_json::json!({
        "tenant": "acme",
        "policy": {
            "policy_type": "no-policy-found",
            "policy_strings": [],
            "policy_domain": "far.test",
            "mx_host": []
        },
        "mx_host": "mx.far.test",
        "receiving_ip": "192.0.2.9",
        "outcome": "Success",
        "at": day + 600
    }))
    .expect("a session");
    first.record(&session);
    let clock = Arc::new(TestClock(std::sync::atomic::AtomicU64::new(day + 3600)));
    let run = tokio::spawn(sealpost::tlsrpt::send::run_daily(
        first.clone(),
        clock.clone(),
        Duration::from_millis(50),
    ));
    let after_midnight = day + 86_400 + 3;
    clock.0.store(after_midnight, Ordering::SeqCst);
    let tried = until(Duration::from_secs(30), || {
        first
            .listing(after_midnight)
            .is_ok_and(|l| l.sent.len() == 1)
    })
    .await;
    assert!(tried, "no report after midnight");
    assert_eq!(posts.lock().expect("lock").len(), 1);
    let listing = first.listing(after_midnight).expect("listing");
    let deliveries = &listing.sent[0].deliveries;
    let https = format!("https://rua.test:{rua_port}/r");
    let of = |rua: &str| -> Vec<String> {
        deliveries
            .iter()
            .filter(|(to, _)| to == rua)
            .map(|(_, result)| result.clone())
            .collect()
    };
    assert_eq!(
        of(&https),
        vec!["failed: the server answered HTTP 503 (try 1 of 4; next try at 2026-01-02T00:15:03Z)"],
        "{deliveries:?}"
    );
    let mail = of("mailto:tlsrpt@reports.test");
    assert!(
        mail.len() == 1 && mail[0].starts_with("queued as"),
        "the mail destination is used whatever the POST did: {deliveries:?}"
    );

    // A restart: the run stops, the aggregate is opened anew.
    run.abort();
    let _ = run.await;
    drop(first);
    let second = reporter(Daily::open(&data_dir).expect("daily reopened"));
    tokio::spawn(sealpost::tlsrpt::send::run_daily(
        second.clone(),
        clock.clone(),
        Duration::from_millis(50),
    ));
    // Not before its time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts.lock().expect("lock").len(), 1);
    let later = after_midnight + 15 * 60;
    clock.0.store(later, Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(30), || posts
            .lock()
            .expect("lock")
            .len()
            == 2)
        .await,
        "no second try"
    );
    let delivered = until(Duration::from_secs(10), || {
        second.listing(later).is_ok_and(|l| {
            l.sent[0]
                .deliveries
                .iter()
                .any(|(to, result)| to == &https && result == "sent (try 2 of 4)")
        })
    })
    .await;
    assert!(delivered, "{:?}", second.listing(later));
    let posted = posts.lock().expect("lock").clone();
    assert_eq!(
        gunzip(&posted[0].1),
        gunzip(&posted[1].1),
        "the same report"
    );
    // Nothing more to try.
    clock.0.store(later + 86_400 / 2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts.lock().expect("lock").len(), 2);
}
