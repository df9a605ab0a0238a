//! The sender's TLS request (RFC 8689: REQUIRETLS, `TLS-Required: No`)
//! is stored with the message, survives a reopen, and reaches every lease
//! and the admin view; records written before the field existed read as
//! `TlsRequest::None`.
mod support;

use sealpost_queue::{NewTransaction, TlsRequest};
use support::{at, message, open};

#[test]
fn the_tls_request_is_kept_across_a_reopen_and_reaches_the_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = {
        let queue = open(dir.path());
        let copies = [
            TlsRequest::RequireTls,
            TlsRequest::TlsOptional,
            TlsRequest::None,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let dest = format!("d{i}.test");
            let (mut copy, _) =
                message("t", &[(&format!("bob@{dest}"), &dest)], b"").into_copy(String::new());
            copy.tls_request = request;
            copy
        })
        .collect();
        queue
            .enqueue_transaction(NewTransaction {
                copies,
                body: b"Subject: x\r\n\r\nbody\r\n".to_vec().into(),
            })
            .expect("enqueue")
            .wait()
            .expect("durable")
    };
    let queue = open(dir.path());
    let shown: Vec<TlsRequest> = ids
        .iter()
        .map(|id| queue.show(*id).expect("stored").tls_request)
        .collect();
    assert_eq!(
        shown,
        [
            TlsRequest::RequireTls,
            TlsRequest::TlsOptional,
            TlsRequest::None
        ]
    );
    let mut leased: Vec<(String, TlsRequest)> = queue
        .take_due_any(at(60), 10)
        .expect("leases")
        .into_iter()
        .map(|l| (l.destination.clone(), l.tls_request))
        .collect();
    leased.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        leased,
        [
            ("d0.test".to_string(), TlsRequest::RequireTls),
            ("d1.test".to_string(), TlsRequest::TlsOptional),
            ("d2.test".to_string(), TlsRequest::None),
        ]
    );
    assert!(TlsRequest::RequireTls.requires_tls());
    assert!(!TlsRequest::TlsOptional.requires_tls());
}

/// The bounce owed for a REQUIRETLS message says so (its DSN returns
/// none of the content, RFC 8689 section 5); bounce records written
/// before the field existed read as `TlsRequest::None`.
#[test]
fn the_owed_bounce_carries_the_tls_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let (mut copy, _) = message("t", &[("bob@d.test", "d.test")], b"").into_copy(String::new());
    copy.tls_request = TlsRequest::RequireTls;
    let ids = queue
        .enqueue_transaction(NewTransaction {
            copies: vec![copy],
            body: b"Subject: x\r\n\r\nbody\r\n".to_vec().into(),
        })
        .expect("enqueue")
        .wait()
        .expect("durable");
    queue.bounce_now(ids[0], "operator").expect("bounce");
    let owed = queue.take_bounces(10).expect("bounces");
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].tls_request, TlsRequest::RequireTls);

    let mut old = serde_json::to_value(&owed[0]).expect("json");
    old.as_object_mut().expect("object").remove("tls_request");
    let read: sealpost_queue::BounceDue = serde_json::from_value(old).expect("old form reads");
    assert_eq!(read.tls_request, TlsRequest::None);
}
