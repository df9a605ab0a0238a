//! `Durable` as a `std::future::Future`: awaited from a minimal executor
//! (thread-parking waker), many at once, as the async SMTP server does.

mod support;

use sealpost_queue::{MessageId, QueueError};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use support::{message, open};

struct Unpark(Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn durable_resolves_when_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let durables: Vec<_> = (0..20)
        .map(|i| {
            q.enqueue(message(
                "t",
                &[("a@x.test", "x.test")],
                format!("body {i}").as_bytes(),
            ))
            .unwrap()
        })
        .collect();
    let expected: Vec<MessageId> = durables.iter().map(|d| d.id()).collect();
    let ids = block_on(async {
        let mut ids = Vec::new();
        for d in durables {
            ids.push(d.await?);
        }
        Ok::<_, QueueError>(ids)
    })
    .unwrap();
    assert_eq!(ids, expected);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids are time-ordered");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(q.message_body(*id).unwrap(), format!("body {i}").as_bytes());
    }
}

#[test]
fn message_without_recipients_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let result = q.enqueue(message("t", &[], b"b"));
    assert!(
        matches!(result, Err(QueueError::NoRecipients)),
        "{:?}",
        result.err()
    );
}

#[test]
fn queue_and_durable_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<sealpost_queue::Queue>();
    send::<sealpost_queue::Durable>();
    send_sync::<QueueError>();
}
