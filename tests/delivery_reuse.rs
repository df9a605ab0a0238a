//! Connection reuse and destination pauses end to end through the real
//! `sealpost serve`: a pooled connection carries only mail whose policy
//! it satisfies (TLS version, DANE authentication), within the pool's
//! limits, and a host refusing one policy's TLS holds back only mail
//! under that policy. Observed through the receivers' connection ids and
//! the `delivery attempt` log events (helpers in `support/outbound.rs`).
mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use support::dns::TestDns;
use support::outbound::{
    base_config, config_with_delivery, deferred_events, delivered_event, dest_dns, dest_mx,
    loopback, self_signed_tls, submit, until, WAIT,
};
use support::pki::{self, ALL_VERSIONS, TLS12_ONLY};
use support::sealpost::{free_port, Sealpost};
use support::smtp::{accept_all, Received};

/// `a.test` (opportunistic, min 1.3) and `b.test` (mandatory, min 1.2), the
/// two senders of the tests whose MX offers only TLS 1.2.
const TWO_POLICIES: &str = r#"
[[domains]]
name = "a.test"
tenant = "acme"
outbound.default = { level = "opportunistic", min_tls = "1.3" }

[[domains]]
name = "b.test"
tenant = "acme"
outbound.default = { level = "mandatory", min_tls = "1.2" }
"#;

/// `a.test` (opportunistic, min 1.3) and `b.test` (mandatory, min 1.2) to
/// one MX offering only TLS 1.2: a.test's cleartext session (TLS 1.2 is
/// below its minimum) is reused for its second message but never carries
/// b.test's, which gets its own TLS 1.2 connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_are_reused_only_where_the_policy_allows() {
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(
        port,
        self_signed_tls("mx.dest.test", TLS12_ONLY),
        Arc::new(accept_all),
    )
    .await;
    let domains = TWO_POLICIES;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));

    // Sequential: each message is delivered before the next is sent, all
    // within the idle timeout (30 s).
    for (i, from) in ["alice@a.test", "anna@a.test", "bert@b.test"]
        .iter()
        .enumerate()
    {
        let to = format!("rcpt{i}@dest.test");
        submit(sealpost.smtp, from, &to).await;
        delivered_event(&sealpost, &to).await;
        assert!(
            until(WAIT, || dest.received().len() > i).await,
            "the receiver did not get message {i}"
        );
    }
    let got = dest.received();
    assert_eq!(got.len(), 3);
    let from = |r: &Received| r.envelope.from.to_string();
    assert_eq!(from(&got[0]), "<alice@a.test>");
    assert_eq!(from(&got[1]), "<anna@a.test>");
    assert_eq!(from(&got[2]), "<bert@b.test>");
    // a.test: TLS 1.2 is below its minimum 1.3, so a cleartext session,
    // reused for the second message of a.test.
    assert_eq!(got[0].tls_version, None, "{got:?}");
    assert_eq!(got[1].tls_version, None, "{got:?}");
    assert_eq!(
        got[0].conn_id, got[1].conn_id,
        "the second a.test message reuses the connection"
    );
    // b.test requires TLS: the cleartext connection is not good enough.
    assert_eq!(got[2].tls_version.as_deref(), Some("TLSv1_2"), "{got:?}");
    assert_ne!(
        got[2].conn_id, got[0].conn_id,
        "the b.test message must not ride the cleartext connection"
    );
    let event = delivered_event(&sealpost, "rcpt2@dest.test").await;
    assert_eq!(event["level"], "mandatory");
    assert_eq!(event["tls"], "TLSv1.2");
    for to in ["rcpt0@dest.test", "rcpt1@dest.test"] {
        let event = delivered_event(&sealpost, to).await;
        assert_eq!(event["level"], "opportunistic");
        assert_eq!(event["tls"], Value::Null, "{event}");
    }
}

/// Reuse by authentication: an unauthenticated TLS connection (opened for
/// `mandatory`) never carries `mandatory-dane` mail; the DANE-authenticated
/// one carries both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_dane_authenticated_connection_carries_mandatory_dane_mail() {
    let port = free_port();
    let leaf = pki::self_signed(&["mx.dest.test"]);
    let data = leaf.tlsa_3_1_1();
    let dns = TestDns::builder()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", loopback(2))
        .tlsa("_25._tcp.mx.dest.test", 3, 1, 1, &data)
        .start()
        .await;
    let dest = dest_mx(
        port,
        Some(pki::server_config(&leaf, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let domains = r#"
[[domains]]
name = "m.test"
tenant = "acme"
outbound.default = { level = "mandatory" }

[[domains]]
name = "d.test"
tenant = "acme"
outbound.default = { level = "mandatory-dane" }
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, domains));
    let steps = [
        ("mia@m.test", "None"),
        ("dan@d.test", "Dane"),
        ("mia@m.test", "None"),
        ("dan@d.test", "Dane"),
    ];
    for (i, (from, authentication)) in steps.iter().enumerate() {
        let to = format!("rcpt{i}@dest.test");
        submit(sealpost.smtp, from, &to).await;
        let event = delivered_event(&sealpost, &to).await;
        // A reused connection reports what it achieved when it was opened.
        if i < 2 {
            assert_eq!(event["authentication"], *authentication, "{event}");
        }
        assert!(until(WAIT, || dest.received().len() > i).await);
    }
    let got = dest.received();
    let ids: Vec<u64> = got.iter().map(|r| r.conn_id).collect();
    assert!(got.iter().all(|r| r.tls_version.is_some()), "{got:?}");
    assert_ne!(
        ids[1], ids[0],
        "mandatory-dane did not ride the unauthenticated connection"
    );
    assert!(
        ids[2] == ids[0] || ids[2] == ids[1],
        "mandatory mail reuses an open connection: {ids:?}"
    );
    assert_eq!(
        ids[3], ids[1],
        "mandatory-dane reuses the DANE connection: {ids:?}"
    );
    let third = delivered_event(&sealpost, "rcpt3@dest.test").await;
    assert_eq!(third["authentication"], "Dane", "{third}");
}

/// The pool's limits: a connection carries at most
/// `messages_per_connection` messages, and closes after `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_connections_respect_their_limits() {
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(port, None, Arc::new(accept_all)).await;
    let domains = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }
"#;
    let limits = [("messages_per_connection", "2"), ("idle_timeout", "\"1s\"")];
    let sealpost =
        Sealpost::start(|listen| config_with_delivery(listen, port, &dns, &limits, domains));
    let send = |i: usize| {
        let sealpost = &sealpost;
        let dest = &dest;
        async move {
            let to = format!("rcpt{i}@dest.test");
            submit(sealpost.smtp, "alice@acme.test", &to).await;
            delivered_event(sealpost, &to).await;
            assert!(until(WAIT, || dest.received().len() > i).await);
        }
    };
    for i in 0..3 {
        send(i).await;
    }
    // Idle for several idle timeouts: the pooled connection is closed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    send(3).await;
    let ids: Vec<u64> = dest.received().iter().map(|r| r.conn_id).collect();
    assert_eq!(ids[0], ids[1], "two messages share a connection: {ids:?}");
    assert_ne!(ids[2], ids[1], "the third needs a new connection: {ids:?}");
    assert_ne!(ids[3], ids[2], "the idle connection was closed: {ids:?}");
}

/// A destination paused because its MX refused one policy's TLS
/// requirement is not paused for mail under another policy: the
/// `mandatory` sender's deferral must not hold up the `opportunistic`
/// sender's mail to the same domain (the MX is up and answering).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_refusal_does_not_pause_mail_under_another_policy() {
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(port, None, Arc::new(accept_all)).await;
    let domains = r#"
[[domains]]
name = "strict.test"
tenant = "acme"
outbound.default = { level = "mandatory" }

[[domains]]
name = "loose.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }
"#;
    // A long destination pause, as in production (the default is 60 s).
    let long_pause = [
        ("destination_backoff", "\"60s\""),
        ("max_destination_backoff", "\"60s\""),
    ];
    let sealpost =
        Sealpost::start(|listen| config_with_delivery(listen, port, &dns, &long_pause, domains));

    submit(sealpost.smtp, "carol@strict.test", "strict@dest.test").await;
    let events = deferred_events(&sealpost, "strict@dest.test", 1).await;
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("STARTTLS not offered"), "{detail}");

    submit(sealpost.smtp, "dave@loose.test", "loose@dest.test").await;
    let event = delivered_event(&sealpost, "loose@dest.test").await;
    assert_eq!(event["level"], "opportunistic");
    let got = dest.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.from.to_string(), "<dave@loose.test>");
    assert_eq!(got[0].tls_version, None);
    assert_eq!(dest.mails(), 1, "no MAIL for the mandatory message");

    // Mail under the refused policy itself still waits for the pause
    // instead of trying again.
    submit(sealpost.smtp, "carol@strict.test", "strict2@dest.test").await;
    let events = deferred_events(&sealpost, "strict2@dest.test", 1).await;
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("destination paused until") && detail.contains("STARTTLS not offered"),
        "{detail}"
    );
    assert_eq!(dest.mails(), 1);
}

/// Many messages from both policies at once, over several connections:
/// each arrives exactly once, and every message of the `mandatory`
/// sender arrived over TLS whichever pooled connection carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mail_under_two_policies_keeps_each_policy() {
    const EACH: usize = 15;
    let port = free_port();
    let dns = dest_dns().await;
    let dest = dest_mx(
        port,
        self_signed_tls("mx.dest.test", TLS12_ONLY),
        Arc::new(accept_all),
    )
    .await;
    let domains = TWO_POLICIES;
    let limits = [("connections_per_destination", "4")];
    let sealpost =
        Sealpost::start(|listen| config_with_delivery(listen, port, &dns, &limits, domains));
    let submissions = (0..EACH).flat_map(|i| {
        [
            ("alice@a.test", format!("a{i}@dest.test")),
            ("bert@b.test", format!("b{i}@dest.test")),
        ]
    });
    let sends = submissions.map(|(from, to)| {
        let smtp = sealpost.smtp;
        async move { submit(smtp, from, &to).await }
    });
    futures_util::future::join_all(sends).await;
    assert!(
        until(WAIT, || dest.received().len() >= 2 * EACH).await,
        "{} of {} arrived",
        dest.received().len(),
        2 * EACH
    );
    // Several retry intervals: no duplicates come after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = dest.received();
    let mut recipients: Vec<String> = got
        .iter()
        .map(|r| r.envelope.recipients[0].path.to_string())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 2 * EACH, "each exactly once");
    assert_eq!(got.len(), 2 * EACH, "each exactly once");
    for r in got
        .iter()
        .filter(|r| r.envelope.from.to_string() == "<bert@b.test>")
    {
        assert_eq!(r.tls_version.as_deref(), Some("TLSv1_2"), "{r:?}");
    }
}
