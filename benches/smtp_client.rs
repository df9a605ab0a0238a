//! SMTP client and DSN builder: one 10 KiB message over an open loopback
//! connection to the bench sink (cleartext with and without PIPELINING,
//! TLS 1.3), a connect with STARTTLS and QUIT, and building a DSN.
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealpost::dsn::{build, Action, DsnInput, RecipientReport};
use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{
    ClientConfig, Connection, Delivery, OutboundMessage, Peer, TlsParams, TlsRequirement,
};
use sealpost::smtp::{EnhancedCode, ForwardPath, Host, Mailbox, Reply, ReversePath};
use sealpost_bench::{Sink, SinkOptions};

fn body_10k() -> Vec<u8> {
    let mut body = b"From: a@s.test\r\nTo: b@d.test\r\nSubject: bench\r\n\r\n".to_vec();
    while body.len() < 10 * 1024 {
        body.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again.\r\n",
        );
    }
    body
}

fn mailbox(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local_part: local.into(),
        host: Host::Domain(domain.into()),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sink = rt
        .block_on(Sink::bind(SinkOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            tls_self_signed: true,
            expect: None,
            idle_timeout: Duration::from_secs(3600),
        }))
        .expect("sink");
    let peer = Peer {
        mx_host: "localhost".into(),
        addr: sink.local_addr().expect("addr"),
        local: None,
    };
    rt.spawn(sink.run());

    let body = body_10k();
    let from = ReversePath::Mailbox(mailbox("a", "s.test"));
    let to = vec![ForwardPath::Mailbox(mailbox("b", "d.test"))];
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: &body,
        requiretls: false,
    };
    let mut group = c.benchmark_group("smtp_client");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "send_10k_cleartext_pipelined",
            TlsRequirement::Cleartext,
            true,
        ),
        (
            "send_10k_cleartext_lockstep",
            TlsRequirement::Cleartext,
            false,
        ),
        (
            "send_10k_tls13_pipelined",
            TlsRequirement::RequireUnauthenticated,
            true,
        ),
    ];
    for (name, requirement, pipelining) in cases {
        let params = TlsParams::new(requirement, MinTlsVersion::Tls13, "localhost").expect("name");
        let mut config = ClientConfig::new("bench.test");
        config.pipelining = pipelining;
        let mut conn = rt
            .block_on(Connection::connect(peer.clone(), &params, Arc::new(config)))
            .expect("connect");
        group.bench_function(name, |b| {
            b.iter(|| {
                let got = rt.block_on(conn.send(black_box(&msg))).expect("send");
                assert!(matches!(got, Delivery::Attempted(_)));
            })
        });
        rt.block_on(conn.quit());
    }
    let params = TlsParams::new(
        TlsRequirement::RequireUnauthenticated,
        MinTlsVersion::Tls13,
        "localhost",
    )
    .expect("name");
    let config = Arc::new(ClientConfig::new("bench.test"));
    group.bench_function("connect_starttls_quit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let conn = Connection::connect(peer.clone(), &params, config.clone())
                    .await
                    .expect("connect");
                conn.quit().await;
            })
        })
    });

    let reports: Vec<RecipientReport> = (0..3)
        .map(|i| RecipientReport {
            final_recipient: format!("user{i}@d.test"),
            original_recipient: None,
            action: Action::Failed,
            status: EnhancedCode(5, 1, 1),
            remote_mta: Some("mx1.d.test".into()),
            diagnostic: Some(Reply::new(550, (5, 1, 1), "no such user here")),
            last_attempt: Some(1_795_425_483),
            will_retry_until: None,
            local_reason: None,
        })
        .collect();
    let input = DsnInput {
        reporting_mta: "gw.test",
        original_sender: &from,
        arrival_date: 1_795_425_000,
        now: 1_795_425_483,
        recipients: &reports,
        original_message: &body,
        redact: false,
    };
    group.bench_function("dsn_build_3_recipients", |b| {
        b.iter(|| build(black_box(&input)).expect("dsn"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
