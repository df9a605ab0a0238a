//! Durable enqueue of 10 KiB messages with 1, 16 and 64 concurrent writers.
//! Each writer blocks on `Durable::wait`, like an SMTP session waiting to
//! answer 250; group commit makes writers share fsyncs.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealpost_queue::{AcceptedPolicy, NewMessage, NewRecipient, Queue, QueueOptions};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn message(n: usize) -> NewMessage {
    NewMessage {
        tenant: format!("tenant{}", n % 7),
        mail_from: "sender@example.org".into(),
        mail_params: vec![],
        recipients: vec![NewRecipient {
            address: format!("user{n}@dest{}.test", n % 50),
            destination: format!("dest{}.test", n % 50),
            params: vec![],
        }],
        policy: AcceptedPolicy::default(),
        body: vec![b'x'; 10 * 1024],
        arrived_at: SystemTime::now(),
    }
}

fn run(writers: usize, total: u64) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(Queue::open(dir.path(), QueueOptions::default()).expect("open"));
    let per_writer = (total as usize).div_ceil(writers);
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let q = queue.clone();
            std::thread::spawn(move || {
                for i in 0..per_writer {
                    let durable = q.enqueue(message(w * per_writer + i)).expect("enqueue");
                    durable.wait().expect("durable");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    let elapsed = start.elapsed();
    // Scale to the requested count (per_writer * writers may round up).
    elapsed.mul_f64(total as f64 / (per_writer * writers) as f64)
}

fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_enqueue_10k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    for writers in [1usize, 16, 64] {
        group.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| run(writers, iters.max(writers as u64)))
        });
    }
    group.finish();
}

criterion_group!(benches, enqueue);
criterion_main!(benches);
