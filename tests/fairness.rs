//! Tenant fairness in the delivery engine, in process over loopback
//! sockets: tenant `a` has 2,000 messages queued for a next hop that takes
//! a second per message on each of its 4 connections (about 500 s of
//! backlog). Mail queued after the flood, to the same next hop and to
//! another, from the other tenant and from `a` itself, is delivered within
//! 30 s. Before the engine was fair, `a` parked 1,024 leases (its whole
//! in-flight limit) in the slow hop's single waiting line: `b`'s mail there
//! waited behind them (about 250 s), and `a`'s own mail to the fast hop
//! waited for `a`'s slow leases to drain.
//!
//! The destination key is what the engine groups and caps by; routes to
//! the two test servers stand in for MX records, so no DNS is needed.
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sealpost::actors::Engine;
use sealpost::config::Config;
use sealpost::live::LiveConfig;
use sealpost::metrics::Metrics;
use sealpost_queue::{AcceptedPolicy, NewMessage, NewRecipient, Queue, QueueOptions};
use support::outbound::until;
use support::sealpost::NO_DNS;
use support::smtp::{accept_all, TestSmtpServer};

/// `a`'s backlog to the slow next hop.
const FLOOD: usize = 2_000;
/// What the mail queued after the flood must be delivered within: far
/// below the backlog's ~500 s, with room for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(30);

fn message(tenant: &str, to: &str, destination: &str, tag: &str) -> NewMessage {
    NewMessage {
        tenant: tenant.into(),
        mail_from: format!("sender@{tenant}.test"),
        mail_params: Vec::new(),
        recipients: vec![NewRecipient {
            address: to.into(),
            destination: destination.into(),
            params: Vec::new(),
        }],
        policy: AcceptedPolicy::default(),
        body: format!("Subject: {tag}\r\n\r\n{tag}\r\n").into_bytes(),
        arrived_at: SystemTime::now(),
    }
}

fn tagged(server: &TestSmtpServer, tag: &str) -> usize {
    let tag = format!("Subject: {tag}");
    server
        .received()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(&tag))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_to_a_slow_destination_does_not_delay_other_mail() {
    let slow = TestSmtpServer::start_slow("slow.test", Duration::from_secs(1)).await;
    let fast = TestSmtpServer::start("fast.test", None, Arc::new(accept_all)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[server]
hostname = "gw.sealpost.test"
data_dir = "{data}"

[delivery]
connections_per_destination = 4

{NO_DNS}
[[domains]]
name = "slow.test"
tenant = "a"
route = {{ hosts = ["{slow}"], level = "opportunistic" }}

[[domains]]
name = "fast.test"
tenant = "b"
route = {{ hosts = ["{fast}"], level = "opportunistic" }}
"#,
        data = dir.path().display(),
        slow = slow.addr,
        fast = fast.addr,
    );
    let config = Config::parse(&text, "test.toml", None).expect("config");
    let queue =
        Arc::new(Queue::open(dir.path().join("queue"), QueueOptions::default()).expect("queue"));
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            queue
                .enqueue(message(
                    "a",
                    &format!("u{i}@slow.test"),
                    "inbound:slow.test",
                    "flood",
                ))
                .expect("enqueue")
        })
        .collect();
    for durable in flood {
        durable.wait().expect("durable");
    }

    let live = Arc::new(LiveConfig::new(config.clone()));
    let shared =
        sealpost::server::delivery_shared(&config, live, queue.clone(), Arc::new(Metrics::new()))
            .expect("shared");
    let engine = Engine::start(Arc::new(shared), 2).expect("engine");
    engine.wake();
    // The flood is under way: every connection to the slow hop is busy.
    assert!(
        until(Duration::from_secs(30), || tagged(&slow, "flood") >= 4).await,
        "the flood never started"
    );

    let later = [
        ("b", "x@slow.test", "inbound:slow.test", "b-slow"),
        ("b", "y@slow.test", "inbound:slow.test", "b-slow"),
        ("b", "z@slow.test", "inbound:slow.test", "b-slow"),
        ("b", "x@fast.test", "inbound:fast.test", "b-fast"),
        ("b", "y@fast.test", "inbound:fast.test", "b-fast"),
        ("b", "z@fast.test", "inbound:fast.test", "b-fast"),
        ("a", "v@fast.test", "inbound:fast.test", "a-fast"),
        ("a", "w@fast.test", "inbound:fast.test", "a-fast"),
    ];
    let queued_at = Instant::now();
    for (tenant, to, destination, tag) in later {
        queue
            .enqueue(message(tenant, to, destination, tag))
            .expect("enqueue")
            .wait()
            .expect("durable");
    }
    engine.wake();
    let counts = || {
        (
            tagged(&slow, "b-slow"),
            tagged(&fast, "b-fast"),
            tagged(&fast, "a-fast"),
        )
    };
    let delivered = until(BOUND, || counts() == (3, 3, 2)).await;
    let took = queued_at.elapsed();
    let backlog_done = tagged(&slow, "flood");
    engine.stop(Duration::from_secs(1));
    assert!(
        delivered,
        "after {took:?}: (b to the slow hop, b to the fast hop, a to the fast hop) = {:?} \
         of (3, 3, 2); {backlog_done} of a's {FLOOD} flood messages delivered",
        counts()
    );
    assert!(
        backlog_done < FLOOD / 2,
        "the flood ({backlog_done} delivered) must still be under way, or the test proves nothing"
    );
}
