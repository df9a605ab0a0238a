//! The fleet's limits in force on real delivery: three `sealpost serve`
//! nodes on loopback, one real `redis-server`, and one counting SMTP sink
//! every node delivers to (a route of `acme.test`, so no DNS is needed).
//! Each node starts with its own backlog already queued, so the three push
//! at once:
//!
//! 1. a destination limited to 4 connections fleet-wide never has more
//!    than 4 open at the sink, while each node alone would open 8;
//! 2. a tenant limited to 200 messages a second fleet-wide arrives at
//!    200/s within ±10 % over 10 s;
//! 3. Redis killed mid-run: every node's limits go local within 1 s (its
//!    `/metrics` and its log say so), mail keeps flowing under them, none
//!    is lost or bounced, and the limits are shared again after the
//!    restart.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sealpost_queue::{NewMessage, Queue, QueueOptions};
use support::redis::RedisServer;
use support::sealpost::{free_port, Sealpost, NO_DNS};
use support::sink::{Arrival, CountingSink};

/// Every node's own connection limit for one destination: more than the
/// fleet's, so only the fleet's limit can keep the sink at 4.
const NODE_CONNECTIONS: usize = 8;

struct Node {
    serve: Sealpost,
    metrics: u16,
}

/// The configuration of node `name`: acme.test routed to the sink, the
/// `[cluster]` keys `cluster` added.
fn node_config(
    port: u16,
    metrics: u16,
    name: &str,
    sink: SocketAddr,
    redis: &str,
    cluster: &str,
) -> String {
    format!(
        r#"
[server]
hostname = "{name}.sealpost.test"
data_dir = "data"

[[listeners]]
address = "127.0.0.1:{port}"

[admin]
metrics_listen = "127.0.0.1:{metrics}"

[delivery]
connections_per_destination = {NODE_CONNECTIONS}
first_retry = "1s"
max_retry_interval = "2s"
destination_backoff = "1s"
max_destination_backoff = "1s"
command_timeout = "20s"

{NO_DNS}
[[domains]]
name = "acme.test"
tenant = "acme"
route = {{ hosts = ["{sink}"], level = "opportunistic" }}

[cluster]
redis = "{redis}"
node = "{name}"
timeout = "750ms"
{cluster}
"#,
    )
}

/// Queues `count` messages of tenant acme, `Subject: <node>-<i>`, in a
/// data directory for node `name`.
fn queued_backlog(name: &str, count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path().join("data/queue"), QueueOptions::default()).expect("queue");
    let durable: Vec<_> = (0..count)
        .map(|i| {
            let subject = format!("{name}-{i}");
            queue
                .enqueue(NewMessage::to_one(
                    "acme",
                    "sender@acme.test",
                    &format!("u{i}@acme.test"),
                    "inbound:acme.test",
                    format!("Subject: {subject}\r\n\r\n{subject}\r\n").into_bytes(),
                ))
                .expect("enqueue")
        })
        .collect();
    for d in durable {
        d.wait().expect("durable");
    }
    dir
}

/// Three nodes, each with `per_node` messages queued, started one after
/// the other.
async fn start_fleet(
    redis: &RedisServer,
    sink: &CountingSink,
    per_node: usize,
    cluster: &str,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let metrics = free_port();
        let (url, cluster, sink) = (redis.url(), cluster.to_owned(), sink.addr);
        let config = move |port| node_config(port, metrics, name, sink, &url, &cluster);
        let serve = tokio::task::spawn_blocking(move || {
            Sealpost::start_in(queued_backlog(name, per_node), config)
        })
        .await
        .expect("sealpost");
        nodes.push(Node { serve, metrics });
    }
    nodes
}

/// `GET /metrics` of one node.
async fn metrics_text(port: u16) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = tcp.read_to_string(&mut text);
        text
    })
    .await
    .unwrap_or_default()
}

/// Whether every node's `/metrics` says `sealpost_cluster_limits_shared
/// <value>`.
async fn all_say_shared(nodes: &[Node], value: u8) -> bool {
    let line = format!("sealpost_cluster_limits_shared {value}");
    for node in nodes {
        if !metrics_text(node.metrics).await.contains(&line) {
            return false;
        }
    }
    true
}

/// Polls `done` every 20 ms for up to `limit`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// The distinct subjects received (a message delivered twice counts once).
fn distinct(arrivals: &[Arrival]) -> usize {
    arrivals
        .iter()
        .map(|a| a.subject.as_str())
        .collect::<HashSet<_>>()
        .len()
}

fn stop(nodes: Vec<Node>) -> Vec<String> {
    nodes
        .into_iter()
        .map(|mut n| {
            n.serve.stop();
            n.serve.log()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_limited_to_four_connections_never_sees_more() {
    const PER_NODE: usize = 1_000;
    let redis = RedisServer::start();
    // A little time per message, so that one connection cannot keep up.
    let sink = CountingSink::start(Duration::from_millis(5)).await;
    let nodes = start_fleet(&redis, &sink, PER_NODE, "connections_per_destination = 4").await;
    let all = 3 * PER_NODE;
    let delivered = until(Duration::from_secs(300), || {
        sink.received() >= all && distinct(&sink.arrivals()) >= all
    })
    .await;
    let (received, most, connections) = (sink.received(), sink.most_at_once(), sink.connections());
    let logs = stop(nodes);
    assert!(
        delivered,
        "{} distinct of {all} delivered ({received} in all)",
        distinct(&sink.arrivals())
    );
    let outages: Vec<usize> = logs
        .iter()
        .map(|l| l.matches("Redis failed").count())
        .collect();
    assert!(
        most <= 4,
        "the sink saw {most} connections at once (fleet limit 4; {connections} in all; \
         Redis outages seen per node {outages:?})"
    );
    // The limit was used, not undershot to one connection.
    assert!(most >= 2, "at most {most} connection(s) at once");
    assert!(sink.arrivals().iter().all(|a| !a.null_sender), "a bounce");
    for log in &logs {
        assert!(log.contains("joined the fleet"), "{log}");
    }
    eprintln!("{all} messages, at most {most} connections at once, {connections} in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_limited_to_200_messages_a_second_sends_200_a_second() {
    const PER_NODE: usize = 1_000;
    const RATE: f64 = 200.0;
    let redis = RedisServer::start();
    let sink = CountingSink::start(Duration::ZERO).await;
    let nodes = start_fleet(&redis, &sink, PER_NODE, "tenant_messages_per_second = 200").await;
    // The measured window starts 1 s after the first arrival (past the
    // nodes' staggered start and the first burst) and lasts 10 s.
    let first = until(Duration::from_secs(60), || sink.received() > 0).await;
    assert!(first, "nothing arrived");
    let start = sink.arrivals()[0].at + Duration::from_secs(1);
    let end = start + Duration::from_secs(10);
    let measured = until(Duration::from_secs(120), || {
        sink.arrivals().last().is_some_and(|a| a.at >= end)
    })
    .await;
    let arrivals = sink.arrivals();
    stop(nodes);
    assert!(
        measured,
        "the run ended before the window did: {} arrivals",
        arrivals.len()
    );
    let in_window = arrivals
        .iter()
        .filter(|a| a.at >= start && a.at < end)
        .count();
    let rate = in_window as f64 / 10.0;
    assert!(
        (RATE * 0.9..=RATE * 1.1).contains(&rate),
        "{rate} messages/s over 10 s (limit {RATE}/s fleet-wide)"
    );
    eprintln!("{rate} messages/s over 10 s (limit {RATE}/s fleet-wide)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_mid_run_loses_nothing_and_limits_come_back() {
    const PER_NODE: usize = 600;
    let mut redis = RedisServer::start();
    let sink = CountingSink::start(Duration::from_millis(5)).await;
    let nodes = start_fleet(
        &redis,
        &sink,
        PER_NODE,
        "connections_per_destination = 4\ntenant_messages_per_second = 150",
    )
    .await;
    let all = 3 * PER_NODE;
    assert!(
        until(Duration::from_secs(120), || sink.received() >= 300).await,
        "the run never got going: {}",
        sink.received()
    );

    let killing = Instant::now();
    redis.kill();
    let killed = Instant::now();
    let mut local = false;
    while !local && killed.elapsed() < Duration::from_secs(30) {
        local = all_say_shared(&nodes, 0).await;
    }
    let went_local = killed.elapsed();
    assert!(local, "limits never went local");
    // 1 s by design (a heartbeat every 250 ms, each call bounded by
    // `timeout`); the margin is the polling of three `/metrics` on a
    // loaded machine.
    assert!(
        went_local <= Duration::from_millis(1_500),
        "limits went local {went_local:?} after Redis was killed"
    );
    // Mail keeps going under the local limits.
    let before = sink.received();
    assert!(
        until(Duration::from_secs(60), || sink.received() >= before + 100).await,
        "no delivery during the outage ({before} before it)"
    );

    redis.restart();
    let restarted = Instant::now();
    let mut shared = false;
    while !shared && restarted.elapsed() < Duration::from_secs(30) {
        shared = all_say_shared(&nodes, 1).await;
    }
    assert!(shared, "limits never shared again");
    let delivered = until(Duration::from_secs(300), || {
        distinct(&sink.arrivals()) >= all
    })
    .await;
    let arrivals = sink.arrivals();
    let most = sink.most_at_once();
    let logs = stop(nodes);
    assert!(
        delivered,
        "{} distinct of {all} delivered",
        distinct(&arrivals)
    );
    assert!(
        arrivals.iter().all(|a| !a.null_sender),
        "a bounce reached the sink"
    );
    // Before the outage the fleet's limit holds exactly. While Redis is
    // out each node keeps what it held and opens new connections only
    // within its share (max(1, 4 / 3) = 1), closing those above it after
    // their message: at most 4 + 2 at once (two nodes held none when
    // Redis failed and the third held all 4), never 3 x 8.
    let peaks = sink.peaks();
    let before_outage: Vec<_> = peaks.iter().filter(|(at, _)| *at < killing).collect();
    assert!(
        before_outage.is_empty(),
        "more than 4 connections at once before the outage: {before_outage:?}"
    );
    let timeline: Vec<String> = peaks
        .iter()
        .map(|(at, n)| {
            let since = at.saturating_duration_since(killing);
            format!("{n} at {since:?} after the kill")
        })
        .collect();
    assert!(
        most <= 6,
        "{most} connections at once; Redis restarted {:?} after the kill: {timeline:?}",
        restarted.saturating_duration_since(killing)
    );
    for log in &logs {
        assert!(log.contains("Redis failed: limits are local now"), "{log}");
        assert!(log.contains("limits are shared by the fleet"), "{log}");
    }
    eprintln!(
        "limits went local {went_local:?} after Redis was killed; at most {most} connections at once"
    );
}

/// The MTA-STS cache of two nodes of one fleet: the policy one fetched is
/// used by the other without fetching, and kept in its own sled store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_fetched_by_one_node_is_used_by_another() {
    use sealpost::cluster::Cluster;
    use sealpost::config::ClusterConfig;
    use sealpost::mta_sts::{LookupReason, ManualClock, Mode, PolicyCache, PolicyStore};
    use std::sync::Arc;
    use support::sts::{MemoryTxt, ScriptedFetcher};

    const DOMAIN: &str = "shared.example";
    let redis = RedisServer::start();
    let txt = Arc::new(MemoryTxt::default());
    txt.publish(DOMAIN, "one");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut caches = Vec::new();
    let mut dirs = Vec::new();
    for name in ["a", "b"] {
        let cluster = Cluster::start(ClusterConfig::new(redis.url(), name), None)
            .await
            .expect("cluster");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PolicyStore::open(&dir.path().join("mta-sts")).expect("store");
        let fetcher = Arc::new(ScriptedFetcher::default());
        fetcher.serve(
            DOMAIN,
            "version: STSv1\nmode: enforce\nmx: mx.shared.example\nmax_age: 86400\n",
        );
        let cache = PolicyCache::new(
            txt.clone(),
            fetcher.clone(),
            store,
            Arc::new(ManualClock::new(now)),
        );
        cache.share_with(Arc::new(cluster));
        caches.push((cache, fetcher));
        dirs.push(dir);
    }
    let first = caches[0].0.policy_for(DOMAIN).await;
    assert_eq!(first.reason, LookupReason::Fetched);
    assert_eq!(caches[0].1.calls(), 1);

    let second = caches[1].0.policy_for(DOMAIN).await;
    assert_eq!(second.mode(), Some(Mode::Enforce));
    assert_eq!(second.id(), Some("one"));
    assert_eq!(caches[1].1.calls(), 0, "the second node fetched it again");
    // Its own store keeps the copy (the durable one).
    let kept = caches[1]
        .0
        .cached(DOMAIN)
        .expect("kept in the node's store");
    assert_eq!(kept.policy, first.policy.expect("policy").policy);
}
