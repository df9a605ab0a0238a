//! SMTP parsing hot paths: one command line, a 10 KiB DATA body through the
//! receiver, and a whole pipelined session in memory.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealpost::smtp::{
    parse_command, DataProgress, DataReceiver, Event, Session, SessionConfig, Verdict,
};

/// A 10 KiB message in wire form (dot-stuffed, terminated).
fn data_10k() -> Vec<u8> {
    let mut wire = b"From: a@s.test\r\nTo: b@ours.test\r\nSubject: bench\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while wire.len() < 10 * 1024 {
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"..a stuffed line\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("command_mail_from", |b| {
        b.iter(|| {
            parse_command(black_box(
                b"MAIL FROM:<sender.name@example.com> SIZE=10240 BODY=8BITMIME",
            ))
        })
    });
    group.bench_function("command_rcpt_to", |b| {
        b.iter(|| parse_command(black_box(b"RCPT TO:<rcpt@example.net>")))
    });

    let wire = data_10k();
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("data_receive_10k", |b| {
        b.iter(|| {
            let mut rx = DataReceiver::new(1 << 20);
            let mut body = Vec::with_capacity(wire.len());
            let done = rx.receive(black_box(&wire), &mut body);
            assert!(matches!(done, DataProgress::Done { result: Ok(()), .. }));
            body
        })
    });

    let mut session_input =
        b"EHLO c.test\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@ours.test>\r\nDATA\r\n".to_vec();
    session_input.extend_from_slice(&wire);
    session_input.extend_from_slice(b"QUIT\r\n");
    let config = Arc::new(SessionConfig::default());
    group.bench_function("session_message_10k", |b| {
        b.iter(|| {
            let mut session = Session::new(config.clone());
            session.receive(black_box(&session_input));
            loop {
                match session.next_event() {
                    Event::MailFrom { .. } | Event::Rcpt { .. } | Event::Message { .. } => {
                        session.answer(Verdict::Accept).expect("pending")
                    }
                    Event::Helo { .. } => {}
                    _ => break,
                }
            }
            session.take_output()
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // `cargo test --all-targets` runs benches once in test mode: keep it short.
    if std::env::args().any(|a| a == "--bench") {
        Criterion::default()
    } else {
        Criterion::default()
            .warm_up_time(Duration::from_millis(10))
            .measurement_time(Duration::from_millis(20))
            .sample_size(10)
    }
}

criterion_group! { name = benches; config = config(); targets = bench }
criterion_main!(benches);
