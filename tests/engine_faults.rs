//! The delivery engine in process, on a queue with injected storage
//! faults: a lease whose attempt record cannot be written is given back
//! and retried after the first retry interval, in this process (before, it
//! stayed leased until sealpost restarted).
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sealpost::config::Config;
use sealpost_queue::{NewMessage, Queue, QueueOptions, StateKind, StorageFaults};
use support::outbound::until;
use support::sealpost::NO_DNS;
use support::smtp::{accept_all, TestSmtpServer};

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_whose_record_failed_is_retried_in_process() {
    let receiver = TestSmtpServer::start("downstream.test", None, Arc::new(accept_all)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[server]
hostname = "gw.sealpost.test"
data_dir = "{data}"

[delivery]
first_retry = "1s"
max_retry_interval = "2s"

{NO_DNS}
[[domains]]
name = "open.test"
tenant = "t"
route = {{ hosts = ["{addr}"], level = "opportunistic" }}
"#,
        data = dir.path().display(),
        addr = receiver.addr
    );
    let config = Config::parse(&text, "test.toml", None).expect("config");
    let faults = Arc::new(StorageFaults::default());
    let options = QueueOptions {
        faults: faults.clone(),
        ..QueueOptions::default()
    };
    let queue = Arc::new(Queue::open(dir.path().join("queue"), options).expect("queue"));
    queue
        .enqueue(NewMessage::to_one(
            "t",
            "a@sender.test",
            "bob@open.test",
            "inbound:open.test",
            b"Subject: t\r\n\r\nhello\r\n".to_vec(),
        ))
        .expect("enqueue")
        .wait()
        .expect("durable");
    faults.fail_records.store(true, Ordering::SeqCst);

    let engine = sealpost::server::start_engine(&config, queue.clone(), 1).expect("engine");
    engine.wake();

    // Delivered once, and the record of it failed.
    assert!(
        until(Duration::from_secs(20), || faults
            .records_failed
            .load(Ordering::SeqCst)
            >= 1)
        .await
    );
    faults.fail_records.store(false, Ordering::SeqCst);
    assert_eq!(receiver.received().len(), 1);
    // Given back, due again after first_retry, delivered again (at least
    // once: the first 250 was never recorded) and recorded this time.
    let empty = || queue.counts().by_state.values().sum::<u64>() == 0;
    assert!(
        until(Duration::from_secs(20), empty).await,
        "still queued: {:?}",
        queue.counts().by_state
    );
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(queue.counts().by_state.get(&StateKind::Active), None);
    engine.stop(Duration::from_secs(1));
}
