//! Tenant fairness at scale: the delivery engine in process, two loopback
//! receivers (one answers each message's data after 100 ms, one at once).
//! Tenant `b` queues 200 messages (half to each receiver, 10 every 250 ms);
//! the run is made without, then with, tenant `a`'s backlog of 20,000
//! messages to the slow receiver queued first (about two minutes of work
//! on its 16 connections). It prints `b`'s delivery latency (queued ->
//! received) per receiver: p50, p99, max.
//!
//! `cargo bench --bench fairness` (add `--profile dev` to skip the release
//! build: the latencies are set by the slow receiver, not by CPU).
//! `FAIRNESS_FLOOD=n` changes the backlog.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sealpost::actors::Engine;
use sealpost::config::Config;
use sealpost::inbound::{
    Body, ConnectionInfo, ConnectionLimits, Listener, SessionHandler, Timeouts,
};
use sealpost::live::LiveConfig;
use sealpost::metrics::Metrics;
use sealpost::smtp::{
    Envelope, ForwardPath, MailParams, RcptParams, Reply, ReversePath, SessionConfig, Verdict,
};
use sealpost_queue::{AcceptedPolicy, NewMessage, NewRecipient, Queue, QueueOptions};

const B_MESSAGES: usize = 200;
const B_BURST: usize = 10;
const B_EVERY: Duration = Duration::from_millis(250);
const SLOW_REPLY: Duration = Duration::from_millis(100);
const GIVE_UP: Duration = Duration::from_secs(600);

/// A receiver that notes when each message (by its `Subject`) arrived.
struct Receiver {
    delay: Duration,
    arrived: Mutex<HashMap<String, Instant>>,
}

impl SessionHandler for Receiver {
    fn mail_from(&self, _: &ConnectionInfo, _: &ReversePath, _: &MailParams) -> Verdict {
        Verdict::Accept
    }

    fn rcpt(
        &self,
        _: &ConnectionInfo,
        _: &ReversePath,
        _: usize,
        _: &ForwardPath,
        _: &RcptParams,
    ) -> Verdict {
        Verdict::Accept
    }

    async fn message(&self, _: &ConnectionInfo, _: Envelope, body: Body) -> Verdict {
        tokio::time::sleep(self.delay).await;
        let Ok(body) = body.into_bytes() else {
            return Verdict::Reject(Reply::new(451, (4, 3, 0), "body"));
        };
        let text = String::from_utf8_lossy(&body);
        if let Some(subject) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
            let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
            arrived
                .entry(subject.to_string())
                .or_insert_with(Instant::now);
        }
        Verdict::AcceptWith(Reply::new(250, (2, 0, 0), "Ok"))
    }
}

impl Receiver {
    fn count(&self, prefix: &str) -> usize {
        let arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        arrived.keys().filter(|k| k.starts_with(prefix)).count()
    }

    fn at(&self, subject: &str) -> Option<Instant> {
        let arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        arrived.get(subject).copied()
    }
}

async fn receiver(delay: Duration) -> (SocketAddr, Arc<Receiver>) {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let listener = Listener::bind(&[listen]).await.expect("bind");
    let addr = listener.local_addrs()[0];
    let handler = Arc::new(Receiver {
        delay,
        arrived: Mutex::new(HashMap::new()),
    });
    let config = Arc::new(SessionConfig {
        hostname: "receiver.bench.invalid".into(),
        ..SessionConfig::default()
    });
    let limits = ConnectionLimits {
        max_connections: 10_000,
        max_per_ip: 10_000,
        ..ConnectionLimits::default()
    };
    tokio::spawn(listener.serve(
        handler.clone(),
        config,
        None,
        limits,
        Timeouts::default(),
        std::future::pending(),
    ));
    (addr, handler)
}

fn message(tenant: &str, to: &str, destination: &str, subject: &str) -> NewMessage {
    NewMessage {
        tenant: tenant.into(),
        mail_from: format!("sender@{tenant}.bench.invalid"),
        mail_params: Vec::new(),
        recipients: vec![NewRecipient {
            address: to.into(),
            destination: destination.into(),
            params: Vec::new(),
        }],
        policy: AcceptedPolicy::default(),
        body: format!("Subject: {subject}\r\n\r\nfairness bench\r\n").into_bytes(),
        arrived_at: SystemTime::now(),
    }
}

struct Latencies {
    slow: Vec<Duration>,
    fast: Vec<Duration>,
    flood_delivered: usize,
    took: Duration,
}

async fn scenario(flood: usize) -> Latencies {
    let (slow_addr, slow) = receiver(SLOW_REPLY).await;
    let (fast_addr, fast) = receiver(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[server]
hostname = "gw.bench.invalid"
data_dir = "{data}"

[dns]
nameservers = ["127.0.0.1:9"]

[[domains]]
name = "slow.bench.invalid"
tenant = "a"
route = {{ hosts = ["{slow_addr}"], level = "opportunistic" }}

[[domains]]
name = "fast.bench.invalid"
tenant = "b"
route = {{ hosts = ["{fast_addr}"], level = "opportunistic" }}
"#,
        data = dir.path().display(),
    );
    let config = Config::parse(&text, "bench.toml", None).expect("config");
    let queue =
        Arc::new(Queue::open(dir.path().join("queue"), QueueOptions::default()).expect("queue"));
    let pending: Vec<_> = (0..flood)
        .map(|i| {
            let m = message(
                "a",
                &format!("u{i}@slow.bench.invalid"),
                "inbound:slow.bench.invalid",
                &format!("a-{i}"),
            );
            queue.enqueue(m).expect("enqueue")
        })
        .collect();
    for durable in pending {
        durable.wait().expect("durable");
    }
    let live = Arc::new(LiveConfig::new(config.clone()));
    let shared =
        sealpost::server::delivery_shared(&config, live, queue.clone(), Arc::new(Metrics::new()))
            .expect("shared");
    let engine = Engine::start(Arc::new(shared), 2).expect("engine");
    engine.wake();
    if flood > 0 {
        // The backlog is under way before b's mail comes.
        while slow.count("a-") < 32 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let start = Instant::now();
    let mut queued: Vec<(String, bool, Instant)> = Vec::new();
    for i in 0..B_MESSAGES {
        let to_slow = i % 2 == 0;
        let (to, destination) = if to_slow {
            ("x@slow.bench.invalid", "inbound:slow.bench.invalid")
        } else {
            ("x@fast.bench.invalid", "inbound:fast.bench.invalid")
        };
        let subject = format!("b-{i}");
        queue
            .enqueue(message("b", to, destination, &subject))
            .expect("enqueue")
            .wait()
            .expect("durable");
        queued.push((subject, to_slow, Instant::now()));
        engine.wake();
        if (i + 1) % B_BURST == 0 {
            tokio::time::sleep(B_EVERY).await;
        }
    }
    while slow.count("b-") + fast.count("b-") < B_MESSAGES && start.elapsed() < GIVE_UP {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed();
    let flood_delivered = slow.count("a-");
    engine.stop(Duration::from_secs(1));
    let mut latencies = Latencies {
        slow: Vec::new(),
        fast: Vec::new(),
        flood_delivered,
        took,
    };
    for (subject, to_slow, at) in queued {
        let receiver = if to_slow { &slow } else { &fast };
        let latency = receiver.at(&subject).map_or(GIVE_UP, |t| t - at);
        if to_slow {
            latencies.slow.push(latency);
        } else {
            latencies.fast.push(latency);
        }
    }
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(run: &str, to: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "| {run} | {to} | {} | {} | {} | {} |",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too,
    // where a two-minute run is not wanted.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fairness bench: run with `cargo bench --bench fairness`");
        return;
    }
    let flood: usize = std::env::var("FAIRNESS_FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "b: {B_MESSAGES} messages, half to each receiver; slow receiver answers data after {} ms",
        SLOW_REPLY.as_millis()
    );
    println!("| run | b's mail to | messages | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for flood in [0, flood] {
        let result = runtime.block_on(scenario(flood));
        let run = if flood == 0 {
            "no flood".to_string()
        } else {
            format!("a floods {flood} to the slow one")
        };
        row(&run, "slow receiver", result.slow);
        row(&run, "fast receiver", result.fast);
        eprintln!(
            "{run}: b done in {:.1} s; {} of a's messages delivered meanwhile",
            result.took.as_secs_f64(),
            result.flood_delivered
        );
    }
}
