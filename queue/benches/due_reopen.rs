//! Taking due messages from a queue of 100,000, and reopening it (recovery
//! scan and index rebuild). Scaled down to 2,000 messages when not run with
//! `--bench` (e.g. `cargo test --all-targets`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealpost_queue::{AcceptedPolicy, NewMessage, NewRecipient, Queue, QueueOptions};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const BODY: usize = 10 * 1024;

fn fill(path: &std::path::Path, count: usize) {
    let queue = Arc::new(Queue::open(path, QueueOptions::default()).expect("open"));
    let writers = 64;
    let per = count.div_ceil(writers);
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let q = queue.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let n = w * per + i;
                    let msg = NewMessage {
                        tenant: format!("tenant{}", n % 7),
                        mail_from: "sender@example.org".into(),
                        mail_params: vec![],
                        recipients: vec![NewRecipient {
                            address: format!("user{n}@dest{}.test", n % 50),
                            destination: format!("dest{}.test", n % 50),
                            params: vec![],
                        }],
                        policy: AcceptedPolicy::default(),
                        body: vec![b'y'; BODY],
                        arrived_at: SystemTime::UNIX_EPOCH + Duration::from_secs(n as u64),
                    };
                    q.enqueue(msg).expect("enqueue").wait().expect("durable");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
}

/// Resident set size from /proc (0 where unavailable).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn due_and_reopen(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let count = if full { 100_000 } else { 2_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), count);
    let now = SystemTime::now();

    let mut group = c.benchmark_group(format!("queue_of_{count}"));
    group.sample_size(10);
    let before = rss_kib();
    let started = Instant::now();
    let mut queue = Some(Queue::open(dir.path(), QueueOptions::default()).expect("open"));
    eprintln!(
        "reopen of {count} x {BODY} B: {:?}, resident memory {before} KiB before, {} KiB after",
        started.elapsed(),
        rss_kib()
    );
    group.throughput(Throughput::Elements(100));
    group.bench_function("take_due_any_100", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let leases = queue
                    .as_ref()
                    .map(|q| q.take_due_any(now, 100).expect("take"))
                    .unwrap_or_default();
                spent += start.elapsed();
                if leases.len() < 100 {
                    // Drained: reopen (untimed), which makes every lease due again.
                    drop(queue.take());
                    queue = Some(Queue::open(dir.path(), QueueOptions::default()).expect("open"));
                }
            }
            spent
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("take_due_one_destination_100", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let dest = format!("dest{}.test", i % 50);
                let start = Instant::now();
                let leases = queue
                    .as_ref()
                    .map(|q| q.take_due(now, &dest, 100).expect("take"))
                    .unwrap_or_default();
                spent += start.elapsed();
                if leases.is_empty() {
                    drop(queue.take());
                    queue = Some(Queue::open(dir.path(), QueueOptions::default()).expect("open"));
                }
            }
            spent
        })
    });
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("reopen", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                drop(queue.take());
                let start = Instant::now();
                queue = Some(Queue::open(dir.path(), QueueOptions::default()).expect("open"));
                spent += start.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, due_and_reopen);
criterion_main!(benches);
