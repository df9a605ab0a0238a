//! Shared helpers for the queue's integration tests.
#![allow(dead_code)]

use sealpost_queue::{
    AcceptedPolicy, Attempt, Authentication, Lease, NewMessage, NewRecipient, Outcome, Queue,
    QueueOptions, Reason, RetryPolicy, StorageFaults,
};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const T0: u64 = 1_800_000_000;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

pub fn open(path: &Path) -> Queue {
    match Queue::open(path, QueueOptions::default()) {
        Ok(q) => q,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

/// A queue whose storage faults the test sets.
pub fn open_with_faults(path: &Path) -> (Queue, std::sync::Arc<StorageFaults>) {
    let faults = std::sync::Arc::new(StorageFaults::default());
    let options = QueueOptions {
        faults: faults.clone(),
        ..QueueOptions::default()
    };
    match Queue::open(path, options) {
        Ok(q) => (q, faults),
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

/// A message with recipients `(address, destination)` arriving at `at(0)`.
pub fn message(tenant: &str, rcpts: &[(&str, &str)], body: &[u8]) -> NewMessage {
    NewMessage {
        tenant: tenant.into(),
        mail_from: "sender@example.org".into(),
        mail_params: vec!["BODY=8BITMIME".into()],
        recipients: rcpts
            .iter()
            .map(|(a, d)| NewRecipient {
                address: (*a).into(),
                destination: (*d).into(),
                params: vec![],
            })
            .collect(),
        policy: AcceptedPolicy {
            level: "mandatory-dane".into(),
            min_tls: "1.2".into(),
            explanation: "tenant policy".into(),
        },
        body: body.to_vec(),
        arrived_at: at(0),
    }
}

/// The reply `code text` of `mx.example.net [192.0.2.1]`.
pub fn said(code: u16, text: &str) -> Reason {
    Reason::Remote {
        host: "mx.example.net".into(),
        ip: [192, 0, 2, 1].into(),
        code,
        status: None,
        text: text.into(),
    }
}

pub fn attempt(secs: u64, reply: Reason) -> Attempt {
    Attempt {
        at: at(secs),
        mx_host: Some("mx.example.net".into()),
        ip: Some("192.0.2.1".into()),
        tls_version: Some("TLSv1.3".into()),
        cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
        authentication: Authentication::Dane,
        reply_or_reason: reply,
    }
}

/// Records the attempt on `lease` that delivered recipient `index` with
/// `250 ok` at `at(secs)`, under the default retry policy.
pub fn record_delivered(q: &Queue, lease: Lease, index: u16, secs: u64) {
    let delivered = Outcome::Delivered {
        reply: said(250, "ok"),
    };
    if let Err(e) = q.record_attempt(
        lease,
        &[(index, delivered)],
        attempt(secs, said(250, "ok")),
        &RetryPolicy::default(),
    ) {
        panic!("record the delivery of recipient {index}: {e}");
    }
}

/// FNV-1a, to check bodies after a crash.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
