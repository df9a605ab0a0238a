//! The delivery engine end to end through the real `sealpost serve`, for
//! inbound mail to managed domains with a downstream route (no DNS): a
//! STARTTLS-stripping proxy (mandatory defers and never sends in
//! cleartext, opportunistic delivers), 4xx then 2xx delivers exactly once,
//! a 5xx bounces with a DSN that parses (never for a null sender), pooled
//! connections reused, and `kill -9` during a run of 5,000 messages loses
//! nothing that got a 250.
mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealpost::smtp::{Reply, SessionConfig, Verdict};
use support::dsn_parse::{get, parse};
use support::outbound::until;
use support::pki::{self, TestCa, ALL_VERSIONS};
use support::proxy::{Tamper, TamperProxy};
use support::sealpost::{submit, Sealpost, NO_DNS};
use support::smtp::{accept_all, Ask, Decide, TestSmtpServer};

const WAIT: Duration = Duration::from_secs(20);

/// Fast retries for tests: a second between attempts, short pauses.
const FAST: &str = r#"first_retry = "1s"
max_retry_interval = "2s"
destination_backoff = "1s"
max_destination_backoff = "2s"
idle_timeout = "5s"
command_timeout = "10s""#;

/// A sealpost whose managed domains route to the given downstream
/// addresses: `(domain, address, level)`.
fn sealpost(routes: &[(&str, SocketAddr, &str)]) -> Sealpost {
    let domains: String = routes
        .iter()
        .map(|(domain, addr, level)| {
            format!(
                "[[domains]]\nname = \"{domain}\"\ntenant = \"t\"\n\
                 route = {{ hosts = [\"{addr}\"], level = \"{level}\" }}\n\n"
            )
        })
        .collect();
    sealpost_with(FAST, &domains)
}

/// A sealpost with these `[delivery]` settings and `[[domains]]` tables.
fn sealpost_with(delivery: &str, domains: &str) -> Sealpost {
    Sealpost::start(|port| {
        format!(
            r#"
[server]
hostname = "gw.sealpost.test"
data_dir = "data"

[[listeners]]
address = "127.0.0.1:{port}"

[delivery]
{delivery}

{NO_DNS}
{domains}"#
        )
    })
}

async fn receiver(tls: bool, decide: Arc<Decide>) -> TestSmtpServer {
    let tls = tls.then(|| {
        let ca = TestCa::new("downstream CA");
        pki::server_config(&ca.issue(&["downstream.test"]), ALL_VERSIONS)
    });
    TestSmtpServer::start("downstream.test", tls, decide).await
}

fn body(tag: &str) -> Vec<u8> {
    format!("Subject: {tag}\r\nX-Test-Id: {tag}\r\n\r\nbody of {tag}\r\n").into_bytes()
}

fn attempts(sealpost: &Sealpost, result: &str) -> Vec<serde_json::Value> {
    sealpost
        .events("delivery attempt")
        .into_iter()
        .filter(|e| e["result"] == result)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_starttls_stripping_proxy_defers_mandatory_and_opportunistic_goes_cleartext() {
    let downstream = receiver(true, Arc::new(accept_all)).await;
    let proxy = TamperProxy::start(downstream.addr, Tamper::strip(&["STARTTLS"])).await;
    let sealpost = sealpost(&[
        ("strict.test", proxy.addr, "mandatory"),
        ("lax.test", proxy.addr, "opportunistic"),
    ]);
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@strict.test"],
        &body("strict-1"),
    )
    .await
    .expect("accepted");
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@lax.test"],
        &body("lax-1"),
    )
    .await
    .expect("accepted");

    assert!(until(WAIT, || downstream.received().len() == 1).await);
    let lax = &downstream.received()[0];
    assert_eq!(
        lax.tls_version, None,
        "delivered in cleartext behind the proxy"
    );
    assert!(String::from_utf8_lossy(&lax.body).contains("X-Test-Id: lax-1"));

    // The mandatory message is retried (first_retry 1 s) and deferred each
    // time, naming the reason; it never reaches the receiver.
    assert!(sealpost.wait_for(WAIT, |s| attempts(s, "deferred")
        .iter()
        .filter(|e| e["to"] == "bob@strict.test")
        .count()
        >= 2));
    let deferred = attempts(&sealpost, "deferred");
    let detail = deferred[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("mandatory:"), "{detail}");
    assert!(detail.contains("STARTTLS not offered"), "{detail}");
    assert_eq!(downstream.received().len(), 1);
    let seen = proxy.client_text();
    assert!(
        !seen.contains("strict-1"),
        "message bytes went out in cleartext"
    );
    assert!(
        !seen.contains("RCPT TO:<bob@strict.test>"),
        "envelope went out in cleartext"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_then_2xx_delivers_exactly_once_and_the_connection_is_reused() {
    let messages = Arc::new(AtomicUsize::new(0));
    let seen = messages.clone();
    let decide: Arc<Decide> = Arc::new(move |ask: Ask<'_>| match ask {
        Ask::Message(..) if seen.fetch_add(1, Ordering::SeqCst) == 0 => {
            Verdict::Reject(Reply::new(451, (4, 3, 0), "try again later"))
        }
        other => accept_all(other),
    });
    let downstream = receiver(true, decide).await;
    let sealpost = sealpost(&[("retry.test", downstream.addr, "mandatory")]);
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@retry.test"],
        &body("once"),
    )
    .await
    .expect("accepted");
    assert!(until(WAIT, || downstream.received().len() == 1).await);
    // Later retries must not deliver it again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(downstream.received().len(), 1);
    let deferred = attempts(&sealpost, "deferred");
    assert_eq!(deferred.len(), 1, "{deferred:?}");
    assert!(deferred[0]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("said: 451 4.3.0 try again later"));
    assert_eq!(attempts(&sealpost, "delivered").len(), 1);

    // The next message to the same destination rides the pooled TLS
    // connection (idle_timeout 5 s).
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@retry.test"],
        &body("second"),
    )
    .await
    .expect("accepted");
    assert!(until(WAIT, || downstream.received().len() == 2).await);
    let received = downstream.received();
    assert_eq!(
        received[0].conn_id, received[1].conn_id,
        "connection reused"
    );
    assert_eq!(received[1].tls_version.as_deref(), Some("TLSv1_3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_bounces_to_the_sender_with_a_dsn_and_a_null_sender_gets_none() {
    let refusing: Arc<Decide> = Arc::new(|ask: Ask<'_>| match ask {
        Ask::Rcpt(_) => Verdict::Reject(Reply::new(550, (5, 1, 1), "no such user here")),
        other => accept_all(other),
    });
    let downstream = receiver(false, refusing).await;
    let sender_server = receiver(false, Arc::new(accept_all)).await;
    let sealpost = sealpost(&[
        ("customer.test", downstream.addr, "opportunistic"),
        ("sender.test", sender_server.addr, "opportunistic"),
    ]);
    let original = body("bounced");
    submit(
        sealpost.smtp,
        "alice@sender.test",
        &["nobody@customer.test"],
        &original,
    )
    .await
    .expect("accepted");
    submit(
        sealpost.smtp,
        "",
        &["nobody@customer.test"],
        &body("null-sender"),
    )
    .await
    .expect("accepted");

    assert!(until(WAIT, || sender_server.received().len() == 1).await);
    let dsn = &sender_server.received()[0];
    assert_eq!(dsn.envelope.from.to_string(), "<>");
    assert_eq!(dsn.envelope.recipients.len(), 1);
    assert_eq!(
        dsn.envelope.recipients[0].path.to_string(),
        "<alice@sender.test>"
    );
    let parsed = parse(&dsn.body);
    assert_eq!(get(&parsed.top, "auto-submitted"), Some("auto-replied"));
    let (_, status) = parsed
        .parts
        .iter()
        .find(|(h, _)| get(h, "content-type") == Some("message/delivery-status"))
        .expect("delivery-status part");
    for want in [
        "Reporting-MTA: dns; gw.sealpost.test",
        "Final-Recipient: rfc822; nobody@customer.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; 127.0.0.1",
        "Diagnostic-Code: smtp; 550 5.1.1 no such user here",
    ] {
        assert!(status.contains(want), "missing {want:?} in:\n{status}");
    }
    let (_, headers) = parsed
        .parts
        .iter()
        .find(|(h, _)| get(h, "content-type") == Some("text/rfc822-headers"))
        .expect("headers part");
    assert!(headers.contains("X-Test-Id: bounced"));
    assert!(
        !headers.contains("body of bounced"),
        "the body is not returned"
    );

    // The null-sender message failed too, and got no DSN.
    assert!(sealpost.wait_for(WAIT, |s| !s
        .events("no bounce: the sender is null")
        .is_empty()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sender_server.received().len(), 1);
    assert_eq!(attempts(&sealpost, "failed").len(), 2);
}

/// Sends messages `ids` over one connection at a time, reconnecting after
/// errors; returns the ids that got a 250.
async fn send_all(addr: SocketAddr, ids: Vec<usize>, accepted: Arc<Mutex<Vec<usize>>>) {
    for id in ids {
        let tag = format!("m{id}");
        for _ in 0..200 {
            match submit(addr, "load@sender.test", &["sink@load.test"], &body(&tag)).await {
                Ok(_) => {
                    accepted.lock().expect("lock").push(id);
                    break;
                }
                // Refused or cut off: not accepted, try again (the test
                // counts duplicates only for messages that got a 250).
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_5000_messages_loses_nothing_that_got_a_250() {
    const TOTAL: usize = 5_000;
    const SENDERS: usize = 8;
    let config = SessionConfig {
        hostname: "sink.test".into(),
        ..SessionConfig::default()
    };
    let sink = TestSmtpServer::start_with_config(config, None, Arc::new(accept_all)).await;
    let mut sealpost = sealpost(&[("load.test", sink.addr, "opportunistic")]);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|s| {
            let ids: Vec<usize> = (0..TOTAL).filter(|i| i % SENDERS == s).collect();
            tokio::spawn(send_all(sealpost.smtp, ids, accepted.clone()))
        })
        .collect();
    // Kill it hard in the middle of the run, then start it again on the
    // same queue.
    let progress = accepted.clone();
    assert!(
        until(Duration::from_secs(120), || progress
            .lock()
            .expect("lock")
            .len()
            >= TOTAL / 2)
        .await
    );
    sealpost.kill();
    let at_kill = accepted.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sealpost.spawn();
    for task in tasks {
        task.await.expect("sender task");
    }
    let accepted: HashSet<usize> = accepted.lock().expect("lock").iter().copied().collect();
    assert_eq!(
        accepted.len(),
        TOTAL,
        "every message was eventually accepted"
    );

    let arrived = || {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for m in sink.received() {
            let text = String::from_utf8_lossy(&m.body).to_string();
            if let Some(tag) = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Test-Id: "))
                .map(str::to_string)
            {
                *counts.entry(tag).or_default() += 1;
            }
        }
        counts
    };
    assert!(
        until(Duration::from_secs(180), || arrived().len() >= TOTAL).await,
        "only {} of {TOTAL} arrived",
        arrived().len()
    );
    let counts = arrived();
    let missing: Vec<usize> = accepted
        .iter()
        .copied()
        .filter(|id| !counts.contains_key(&format!("m{id}")))
        .collect();
    assert!(
        missing.is_empty(),
        "accepted but never delivered: {missing:?}"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "kill -9 after {at_kill} accepted: {} delivered, {duplicates} duplicate deliveries (in flight at the kill)",
        counts.len()
    );
    // Duplicates can only come from deliveries in flight at the kill.
    assert!(duplicates <= 4096, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_to_queued_mail_at_its_next_attempt() {
    let downstream = receiver(true, Arc::new(accept_all)).await;
    let proxy = TamperProxy::start(downstream.addr, Tamper::strip(&["STARTTLS"])).await;
    let sealpost = sealpost(&[("customer.test", proxy.addr, "mandatory")]);
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@customer.test"],
        &body("waits"),
    )
    .await
    .expect("accepted");
    assert!(sealpost.wait_for(WAIT, |s| !attempts(s, "deferred").is_empty()));
    assert!(downstream.received().is_empty());

    // The operator relaxes the route and reloads: the queued message goes
    // out at its next attempt, under the new level.
    let config = std::fs::read_to_string(sealpost.config_path()).expect("config");
    std::fs::write(
        sealpost.config_path(),
        config.replace("level = \"mandatory\"", "level = \"opportunistic\""),
    )
    .expect("write config");
    sealpost.signal("-HUP");
    assert!(sealpost.wait_for(WAIT, |s| !s.events("configuration reloaded").is_empty()));
    assert!(until(WAIT, || downstream.received().len() == 1).await);
    // The attempt is logged once the receiver has answered.
    assert!(sealpost.wait_for(WAIT, |s| !attempts(s, "delivered").is_empty()));
    let delivered = attempts(&sealpost, "delivered");
    assert_eq!(delivered[0]["level"], "opportunistic");

    // A broken file is refused and the configuration in force stays.
    std::fs::write(sealpost.config_path(), "[server]\nbogus = 1\n").expect("write");
    sealpost.signal("-HUP");
    assert!(sealpost.wait_for(WAIT, |s| !s
        .events("reload failed; the configuration and certificates in force stay")
        .is_empty()));
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@customer.test"],
        &body("after"),
    )
    .await
    .expect("still accepting under the old configuration");
    assert!(until(WAIT, || downstream.received().len() == 2).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_warnings_and_expiry_bounces_reach_the_sender() {
    let deferring: Arc<Decide> = Arc::new(|ask: Ask<'_>| match ask {
        Ask::Rcpt(_) => Verdict::Reject(Reply::new(452, (4, 2, 2), "mailbox full")),
        other => accept_all(other),
    });
    let downstream = receiver(false, deferring).await;
    let sender_server = receiver(false, Arc::new(accept_all)).await;
    let domains = format!(
        "[[domains]]\nname = \"customer.test\"\ntenant = \"t\"\n\
         route = {{ hosts = [\"{}\"] }}\n\n\
         [[domains]]\nname = \"sender.test\"\ntenant = \"t\"\n\
         route = {{ hosts = [\"{}\"] }}\n",
        downstream.addr, sender_server.addr
    );
    let sealpost = sealpost_with(
        "first_retry = \"1s\"\nmax_retry_interval = \"1s\"\nlifetime = \"5s\"\ndelay_warning = \"2s\"\ncommand_timeout = \"10s\"",
        &domains,
    );
    submit(
        sealpost.smtp,
        "alice@sender.test",
        &["bob@customer.test"],
        &body("slow"),
    )
    .await
    .expect("accepted");
    assert!(until(WAIT, || sender_server.received().len() >= 2).await);
    let statuses: Vec<String> = sender_server
        .received()
        .iter()
        .map(|m| {
            let parsed = parse(&m.body);
            let (_, status) = parsed
                .parts
                .iter()
                .find(|(h, _)| get(h, "content-type") == Some("message/delivery-status"))
                .expect("delivery-status part")
                .clone();
            status
        })
        .collect();
    // First the warning (still retried), then the bounce at the end of the
    // lifetime, each exactly once.
    assert!(statuses[0].contains("Action: delayed"), "{}", statuses[0]);
    assert!(statuses[0].contains("Status: 4.2.2"), "{}", statuses[0]);
    assert!(statuses[0].contains("Will-Retry-Until:"), "{}", statuses[0]);
    assert!(statuses[1].contains("Action: failed"), "{}", statuses[1]);
    assert!(statuses[1].contains("Status: 4.4.7"), "{}", statuses[1]);
    assert!(statuses[1].contains("Diagnostic-Code: smtp; 452 4.2.2 mailbox full"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sender_server.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_destination_pauses_and_its_mail_waits_without_trying() {
    // Nothing listens on this port: connection refused.
    let closed: SocketAddr = SocketAddr::from(([127, 0, 0, 1], support::sealpost::free_port()));
    let sealpost = sealpost_with(
        "destination_backoff = \"60s\"\ncommand_timeout = \"10s\"",
        &format!("[[domains]]\nname = \"down.test\"\ntenant = \"t\"\nroute = {{ hosts = [\"{closed}\"] }}\n"),
    );
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["bob@down.test"],
        &body("first"),
    )
    .await
    .expect("accepted");
    assert!(sealpost.wait_for(WAIT, |s| !s
        .events("destination unreachable; pausing it")
        .is_empty()));
    for tag in ["second", "third"] {
        submit(
            sealpost.smtp,
            "a@sender.test",
            &["bob@down.test"],
            &body(tag),
        )
        .await
        .expect("accepted");
    }
    assert!(sealpost.wait_for(WAIT, |s| attempts(s, "deferred").len() == 3));
    let deferred = attempts(&sealpost, "deferred");
    let first = deferred[0]["detail"].as_str().unwrap_or_default();
    assert!(first.contains("connect failed"), "{first}");
    for later in &deferred[1..] {
        let detail = later["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("destination paused until"), "{detail}");
        assert!(
            detail.contains("connect failed"),
            "the pause names its cause: {detail}"
        );
    }
    // Only the first attempt tried the network.
    assert_eq!(
        sealpost.events("destination unreachable; pausing it").len(),
        1
    );
}

/// One transaction with a 40 MiB body to three managed domains: three
/// destination groups sharing one stored body. Every copy reaches its
/// receiver whole. (Before the fix, the second copy's segment rotation
/// unlinked the first copy's body after the 250.)
#[tokio::test(flavor = "multi_thread")]
async fn a_large_message_to_several_managed_domains_is_delivered_to_each() {
    let downstream = receiver(false, Arc::new(accept_all)).await;
    let domains = ["one.test", "two.test", "three.test"];
    let routes: Vec<_> = domains
        .iter()
        .map(|d| (*d, downstream.addr, "opportunistic"))
        .collect();
    let sealpost = sealpost(&routes);
    let mut big = body("large");
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while big.len() < 40 * 1024 * 1024 {
        big.extend_from_slice(line);
    }
    let to: Vec<String> = domains.iter().map(|d| format!("bob@{d}")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    submit(sealpost.smtp, "a@sender.test", &to, &big)
        .await
        .expect("accepted");
    assert!(
        until(Duration::from_secs(60), || downstream.received().len() == 3).await,
        "{} of 3 copies delivered; failures: {:?}",
        downstream.received().len(),
        attempts(&sealpost, "deferred")
    );
    let mut seen: Vec<String> = Vec::new();
    for got in downstream.received() {
        let text = &got.body;
        let at = text
            .windows(b"Subject: large".len())
            .position(|w| w == b"Subject: large")
            .expect("the original header after the Received line");
        assert_eq!(&text[at..], &big[..], "copy body intact");
        assert!(text.starts_with(b"Received: "), "trace header first");
        seen.extend(got.envelope.recipients.iter().map(|r| r.path.to_string()));
    }
    seen.sort();
    let mut want: Vec<String> = domains.iter().map(|d| format!("<bob@{d}>")).collect();
    want.sort();
    assert_eq!(seen, want);
    // The body was spooled while it arrived and moved into the queue whole:
    // no spool is left behind.
    let incoming = sealpost.dir.path().join("data/queue/incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .expect("incoming directory")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
