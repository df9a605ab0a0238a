//! Delivery outcomes end to end through the real `sealpost serve`:
//! temporary failures retried until delivered exactly once (per
//! recipient), permanent failures and expired lifetimes bounced as RFC
//! 3464 DSNs from the null sender to the sender's own server (its
//! managed domain's route), parsed with `support/dsn_parse.rs`.
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealpost::smtp::{Reply, SessionConfig, Verdict};

use support::dns::TestDns;
use support::dsn_parse::{self, recipient_fields};
use support::outbound::{
    acme_routed_to, attempts, base_config, config_with_delivery, deferred_events, delivered_event,
    dest_dns, dest_mx, home_mx, loopback, self_signed_tls, submit, submit_to, until, with_result,
    Mx, WAIT,
};
use support::pki::ALL_VERSIONS;
use support::sealpost::{free_port, Sealpost};
use support::smtp::{accept_all, Ask, Decide, Received};

/// A 550 from the recipient's MX fails the recipient at once and the DSN
/// (multipart/report, from `<>`) reaches the sender's own server through
/// its managed domain's route.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_5xx_from_an_outbound_mx_bounces_to_the_senders_own_server() {
    let port = free_port();
    let dns = dest_dns().await;
    let refusing: Arc<Decide> = Arc::new(|ask: Ask<'_>| match ask {
        Ask::Rcpt(_) => Verdict::Reject(Reply::new(550, (5, 1, 1), "no such user here")),
        other => accept_all(other),
    });
    let dest = dest_mx(port, None, refusing).await;
    // The tenant's own server, where the DSN must arrive.
    let home = home_mx().await;
    let domains = acme_routed_to("opportunistic", &home);
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &domains));
    submit(sealpost.smtp, "alice@acme.test", "nobody@dest.test").await;

    let failed = until(WAIT, || {
        !with_result(&sealpost, "nobody@dest.test", "failed").is_empty()
    })
    .await;
    assert!(
        failed,
        "no failure logged: {:#?}",
        attempts(&sealpost, "nobody@dest.test")
    );
    let event = with_result(&sealpost, "nobody@dest.test", "failed").remove(0);
    let detail = event["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("550 5.1.1"), "{detail}");
    assert!(dest.received().is_empty());

    assert!(
        until(WAIT, || !home.received().is_empty()).await,
        "no DSN reached the sender's server; log:\n{}",
        sealpost.log()
    );
    let got = home.received();
    assert_eq!(got.len(), 1, "exactly one DSN");
    let dsn = &got[0];
    assert_eq!(
        dsn.envelope.from.to_string(),
        "<>",
        "DSN from the null sender"
    );
    assert_eq!(
        dsn.envelope.recipients[0].path.to_string(),
        "<alice@acme.test>"
    );
    let fields = recipient_fields(&dsn.body);
    let field = |name: &str| {
        dsn_parse::get(&fields, name)
            .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
            .to_string()
    };
    assert_eq!(field("final-recipient"), "rfc822; nobody@dest.test");
    assert_eq!(field("action"), "failed");
    assert_eq!(field("status"), "5.1.1");
    assert_eq!(field("remote-mta"), "dns; mx.dest.test");
    let diagnostic = field("diagnostic-code");
    assert!(
        diagnostic.starts_with("smtp; 550") && diagnostic.contains("no such user here"),
        "{diagnostic}"
    );
    // The bounce went to the tenant's server, not to any MX.
    assert_eq!(dest.mails(), 1, "one transaction at the refusing MX only");
}

/// A temporary failure, then success: the message arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4xx_then_2xx_delivers_exactly_once() {
    let port = free_port();
    let dns = dest_dns().await;
    let messages = Arc::new(AtomicUsize::new(0));
    let seen = messages.clone();
    let flaky: Arc<Decide> = Arc::new(move |ask: Ask<'_>| match ask {
        Ask::Message(..) if seen.fetch_add(1, Ordering::SeqCst) == 0 => {
            Verdict::Reject(Reply::new(451, (4, 3, 0), "try again later"))
        }
        other => accept_all(other),
    });
    let dest = dest_mx(port, None, flaky).await;
    let domains = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;

    delivered_event(&sealpost, "bob@dest.test").await;
    let log = attempts(&sealpost, "bob@dest.test");
    assert_eq!(log[0]["result"], "deferred", "{log:#?}");
    let detail = log[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("451 4.3.0 try again later"), "{detail}");
    assert_eq!(
        messages.load(Ordering::SeqCst),
        2,
        "sent twice: 451, then 250"
    );
    // Nothing more comes after the success (several retry intervals).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dest.received().len(), 1, "exactly once");
    assert_eq!(messages.load(Ordering::SeqCst), 2);
    assert_eq!(
        with_result(&sealpost, "bob@dest.test", "delivered").len(),
        1
    );
}

/// One message to two recipients of one domain, one refused with a 4xx:
/// the accepted one is delivered once, the other alone on the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_recipient_is_delivered_once_across_retries() {
    let port = free_port();
    let dns = dest_dns().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let decide: Arc<Decide> = Arc::new(move |ask: Ask<'_>| match ask {
        Ask::Rcpt(to)
            if to.to_string() == "<later@dest.test>"
                && count.fetch_add(1, Ordering::SeqCst) == 0 =>
        {
            Verdict::Reject(Reply::new(452, (4, 2, 2), "mailbox full, try later"))
        }
        other => accept_all(other),
    });
    let dest = dest_mx(port, self_signed_tls("mx.dest.test", ALL_VERSIONS), decide).await;
    let domains = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "mandatory", min_tls = "1.2" }
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));
    submit_to(
        sealpost.smtp,
        "alice@acme.test",
        &["now@dest.test", "later@dest.test"],
    )
    .await;

    delivered_event(&sealpost, "now@dest.test").await;
    delivered_event(&sealpost, "later@dest.test").await;
    let later = attempts(&sealpost, "later@dest.test");
    assert_eq!(later[0]["result"], "deferred", "{later:#?}");
    assert!(
        later[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("452 4.2.2"),
        "{later:#?}"
    );
    let rcpts = |r: &Received| -> Vec<String> {
        r.envelope
            .recipients
            .iter()
            .map(|r| r.path.to_string())
            .collect()
    };
    // Several retry intervals: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = dest.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(rcpts(&got[0]), ["<now@dest.test>"]);
    assert_eq!(rcpts(&got[1]), ["<later@dest.test>"]);
    assert!(got.iter().all(|r| r.tls_version.is_some()));
    assert_eq!(
        with_result(&sealpost, "now@dest.test", "delivered").len(),
        1
    );
    assert_eq!(attempts(&sealpost, "now@dest.test").len(), 1);
}

/// A message the MX says it cannot take (larger than its SIZE limit) is
/// never offered (no MAIL) and bounces with the matching status, 5.3.4.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_mx_size_limit_bounces_with_its_status() {
    let port = free_port();
    let dns = dest_dns().await;
    let small = SessionConfig {
        hostname: "mx.dest.test".into(),
        max_message_size: 64,
        ..SessionConfig::default()
    };
    let dest = Mx::start_with_config(loopback(2), port, small, None, Arc::new(accept_all)).await;
    let home = home_mx().await;
    let domains = acme_routed_to("opportunistic", &home);
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &domains));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;
    assert!(
        until(WAIT, || !home.received().is_empty()).await,
        "no DSN; attempts: {:#?}",
        attempts(&sealpost, "bob@dest.test")
    );
    let event = with_result(&sealpost, "bob@dest.test", "failed").remove(0);
    assert!(
        event["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the server accepts at most 64"),
        "{event}"
    );
    assert_eq!(dest.mails(), 0, "the message was never offered");
    let fields = recipient_fields(&home.received()[0].body);
    assert_eq!(dsn_parse::get(&fields, "action"), Some("failed"));
    assert_eq!(
        dsn_parse::get(&fields, "status"),
        Some("5.3.4"),
        "{fields:?}"
    );
}

/// A backup MX that refuses the message's size while the primary cannot
/// be reached does not make it bounce: the primary may take it later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_size_refusal_by_the_backup_while_the_primary_is_down_defers() {
    let port = free_port();
    let dns = TestDns::builder()
        .mx("dest.test", 10, "mx1.dest.test")
        .mx("dest.test", 20, "mx2.dest.test")
        // Nothing listens on the primary's address.
        .a("mx1.dest.test", loopback(3))
        .a("mx2.dest.test", loopback(2))
        .start()
        .await;
    let small = SessionConfig {
        hostname: "mx2.dest.test".into(),
        max_message_size: 64,
        ..SessionConfig::default()
    };
    let backup = Mx::start_with_config(loopback(2), port, small, None, Arc::new(accept_all)).await;
    let domains = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;
    let deferred = deferred_events(&sealpost, "bob@dest.test", 1).await;
    let detail = deferred[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("mx1.dest.test"), "{detail}");
    assert!(detail.contains("the server accepts at most 64"), "{detail}");
    assert!(with_result(&sealpost, "bob@dest.test", "failed").is_empty());
    assert_eq!(backup.mails(), 0, "the message was never offered");
}

/// Mail a policy keeps deferring bounces at the end of its lifetime, with
/// status 4.4.7 and the policy's reason, still never sent in cleartext.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_deferred_by_its_policy_bounces_when_its_lifetime_ends() {
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(port, None, Arc::new(accept_all)).await;
    let home = home_mx().await;
    let domains = acme_routed_to("mandatory", &home);
    let lifetime = [("lifetime", "\"4s\"")];
    let sealpost =
        Sealpost::start(|listen| config_with_delivery(listen, port, &dns, &lifetime, &domains));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;
    assert!(
        until(WAIT, || !home.received().is_empty()).await,
        "no DSN; attempts: {:#?}",
        attempts(&sealpost, "bob@dest.test")
    );
    let dsn = &home.received()[0];
    assert_eq!(dsn.envelope.from.to_string(), "<>");
    let fields = recipient_fields(&dsn.body);
    assert_eq!(dsn_parse::get(&fields, "action"), Some("failed"));
    assert_eq!(
        dsn_parse::get(&fields, "status"),
        Some("4.4.7"),
        "{fields:?}"
    );
    let text = String::from_utf8_lossy(&dsn.body);
    assert!(text.contains("STARTTLS not offered"), "{text}");
    assert_eq!(dest.mails(), 0, "never sent in cleartext");
    assert!(with_result(&sealpost, "bob@dest.test", "delivered").is_empty());
}

/// A delay warning goes out once the message has waited `delay_warning`,
/// also when the attempts after that moment are held back by the
/// destination's pause (a long `destination_backoff`), and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delay_warning_is_sent_once_even_while_the_destination_is_paused() {
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(port, None, Arc::new(accept_all)).await;
    let home = home_mx().await;
    let domains = acme_routed_to("mandatory", &home);
    let delivery = [
        ("delay_warning", "\"2s\""),
        ("destination_backoff", "\"60s\""),
        ("max_destination_backoff", "\"60s\""),
    ];
    let sealpost =
        Sealpost::start(|listen| config_with_delivery(listen, port, &dns, &delivery, &domains));
    submit(sealpost.smtp, "alice@acme.test", "bob@dest.test").await;
    assert!(
        until(WAIT, || !home.received().is_empty()).await,
        "no delay warning; attempts: {:#?}",
        attempts(&sealpost, "bob@dest.test")
    );
    let warning = &home.received()[0];
    assert_eq!(warning.envelope.from.to_string(), "<>");
    let fields = recipient_fields(&warning.body);
    assert_eq!(
        dsn_parse::get(&fields, "action"),
        Some("delayed"),
        "{fields:?}"
    );
    assert!(dsn_parse::get(&fields, "will-retry-until").is_some());
    // More attempts pass: still one warning.
    let seen = attempts(&sealpost, "bob@dest.test").len();
    assert!(
        until(WAIT, || attempts(&sealpost, "bob@dest.test").len()
            >= seen + 2)
        .await
    );
    assert_eq!(home.received().len(), 1, "one delay warning only");
    assert_eq!(dest.mails(), 0);
}

/// A delay warning for two recipients deferred for different reasons
/// reports each with its own server reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delay_warning_reports_each_recipient_with_its_own_reason() {
    let port = free_port();
    let dns = dest_dns().await;
    let decide: Arc<Decide> = Arc::new(|ask: Ask<'_>| match ask {
        Ask::Rcpt(to) if to.to_string() == "<full@dest.test>" => {
            Verdict::Reject(Reply::new(452, (4, 2, 2), "mailbox full"))
        }
        Ask::Rcpt(to) if to.to_string() == "<busy@dest.test>" => {
            Verdict::Reject(Reply::new(451, (4, 3, 0), "busy, try later"))
        }
        other => accept_all(other),
    });
    let _dest = dest_mx(port, None, decide).await;
    let home = home_mx().await;
    let domains = acme_routed_to("opportunistic", &home);
    let delivery = [("delay_warning", "\"2s\"")];
    let sealpost =
        Sealpost::start(|listen| config_with_delivery(listen, port, &dns, &delivery, &domains));
    submit_to(
        sealpost.smtp,
        "alice@acme.test",
        &["full@dest.test", "busy@dest.test"],
    )
    .await;
    // The recipients may be retried (and so warned about) in one lease or
    // in two, a few milliseconds apart: gather every warning's blocks.
    let blocks = || -> Vec<Vec<(String, String)>> {
        home.received()
            .iter()
            .flat_map(|dsn| dsn_parse::recipient_blocks(&dsn.body))
            .collect()
    };
    assert!(
        until(WAIT, || blocks().len() >= 2).await,
        "no delay warning for both recipients: {:?}",
        blocks()
    );
    let blocks = blocks();
    assert_eq!(
        blocks.len(),
        2,
        "each recipient warned about once: {blocks:?}"
    );
    for block in &blocks {
        let get = |name| dsn_parse::get(block, name).unwrap_or_default();
        assert_eq!(get("action"), "delayed");
        let (status, reply) = match get("final-recipient") {
            "rfc822; full@dest.test" => ("4.2.2", "452 4.2.2 mailbox full"),
            "rfc822; busy@dest.test" => ("4.3.0", "451 4.3.0 busy, try later"),
            other => panic!("unexpected recipient {other}"),
        };
        assert_eq!(get("status"), status, "{block:?}");
        assert!(get("diagnostic-code").contains(reply), "{block:?}");
    }
}

/// Domains that accept no mail fail at once, without a connection, and
/// bounce with the status for the case: a null MX (RFC 7505: 5.1.10) and
/// a domain that does not exist (5.1.2), under a plain and a DANE level.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn domains_that_accept_no_mail_bounce_with_their_status() {
    let dns = TestDns::builder()
        .null_mx("nullmx.test")
        .null_mx("nullmx-dane.test")
        .start()
        .await;
    let home = home_mx().await;
    let domains = format!(
        r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = {{ level = "opportunistic" }}
outbound.peers = [{{ peer = "nullmx-dane.test", level = "mandatory-dane" }}]
route = {{ hosts = ["{}"] }}
"#,
        home.server.addr
    );
    let sealpost = Sealpost::start(|listen| base_config(listen, free_port(), &dns, &domains));
    let cases = [
        ("bob@nullmx.test", "5.1.10"),
        ("bob@nullmx-dane.test", "5.1.10"),
        ("bob@nowhere.test", "5.1.2"),
    ];
    for (to, _) in cases {
        submit(sealpost.smtp, "alice@acme.test", to).await;
    }
    assert!(
        until(WAIT, || home.received().len() >= cases.len()).await,
        "{} DSNs",
        home.received().len()
    );
    for (to, status) in cases {
        let fields: Vec<_> = home
            .received()
            .iter()
            .map(|dsn| recipient_fields(&dsn.body))
            .find(|f| dsn_parse::get(f, "final-recipient") == Some(&format!("rfc822; {to}")))
            .unwrap_or_else(|| panic!("no DSN for {to}"));
        assert_eq!(
            dsn_parse::get(&fields, "status"),
            Some(status),
            "{to}: {fields:?}"
        );
        assert_eq!(dsn_parse::get(&fields, "action"), Some("failed"));
        assert_eq!(attempts(&sealpost, to).len(), 1, "{to}: failed at once");
    }
}

/// A queued message whose stored policy does not parse (a null-sender
/// DSN keeps the policy it was queued with) is deferred with a logged
/// error, never delivered under a weaker level in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_policy_that_does_not_parse_defers_and_is_logged() {
    use sealpost_queue::{AcceptedPolicy, NewMessage, NewRecipient, Queue, QueueOptions};
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(port, None, Arc::new(accept_all)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let queue =
            Queue::open(dir.path().join("data/queue"), QueueOptions::default()).expect("queue");
        queue
            .enqueue(NewMessage {
                tenant: "acme".into(),
                mail_from: String::new(),
                mail_params: Vec::new(),
                recipients: vec![NewRecipient {
                    address: "bob@dest.test".into(),
                    destination: "dest.test".into(),
                    params: Vec::new(),
                }],
                policy: AcceptedPolicy {
                    level: "dane-required".into(),
                    min_tls: "1.2".into(),
                    explanation: "written by another version".into(),
                },
                body: b"Subject: dsn\r\n\r\nhello\r\n".to_vec(),
                arrived_at: std::time::SystemTime::now(),
            })
            .expect("enqueue")
            .wait()
            .expect("durable");
    }
    let sealpost = Sealpost::start_in(dir, |listen| base_config(listen, port, &dns, ""));
    let deferred = deferred_events(&sealpost, "bob@dest.test", 1).await;
    let detail = deferred[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("the policy stored with the message does not parse (level `dane-required`"),
        "{detail}"
    );
    assert!(
        !sealpost
            .events("the stored policy of a queued message does not parse; deferring it")
            .is_empty(),
        "the error is logged"
    );
    assert_eq!(dest.mails(), 0, "never delivered under another level");
    assert!(with_result(&sealpost, "bob@dest.test", "delivered").is_empty());
    // The attempt's one log line, with its schema (docs/operations.md).
    let lines = sealpost.events("delivery");
    let line = lines
        .iter()
        .find(|l| l["recipients"] == "bob@dest.test")
        .expect("a delivery line");
    assert_eq!(line["schema"], "sealpost.delivery.v1", "{line}");
    assert_eq!(line["level"], "unknown", "{line}");
    assert_eq!(line["deferred"], 1, "{line}");
    assert_eq!(line["dsn_status"], "4.3.5", "{line}");
    assert_eq!(line["reason_kind"], "local", "{line}");
    assert_eq!(line["authentication"], "none", "{line}");
}
