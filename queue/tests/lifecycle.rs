//! End-to-end behaviour of the queue on real sled and segment files.

mod support;

use sealpost_queue::{
    ListFilter, MessageId, Outcome, QueueError, QueueOptions, RecipientState, RetryPolicy,
    StateKind,
};
use std::sync::atomic::Ordering;
use support::{at, attempt, message, open, record_delivered, said};

#[test]
fn enqueue_take_deliver_removes_message_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let id = q
        .enqueue(message(
            "t1",
            &[("a@x.test", "x.test"), ("b@y.test", "y.test")],
            b"hello",
        ))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(q.counts().by_state.get(&StateKind::Queued), Some(&2));
    let leases = q.take_due(at(1), "x.test", 10).unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].id, id);
    assert_eq!(leases[0].recipients.len(), 1);
    assert_eq!(q.read_body(&leases[0]).unwrap(), b"hello");
    // Leased recipients are not due again.
    assert!(q.take_due(at(1), "x.test", 10).unwrap().is_empty());
    let lease = leases.into_iter().next().unwrap();
    record_delivered(&q, lease, 0, 1);
    let other = q.take_due_any(at(1), 10).unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].destination, "y.test");
    let lease = other.into_iter().next().unwrap();
    record_delivered(&q, lease, 1, 2);
    assert!(matches!(q.show(id), Err(QueueError::NotFound { .. })));
    assert!(q.counts().by_state.is_empty());
    let segments = std::fs::read_dir(dir.path().join("bodies"))
        .unwrap()
        .count();
    assert!(
        segments <= 1,
        "only the current segment may remain, found {segments}"
    );
}

#[test]
fn deferral_schedules_retry_and_expiry_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let id = q
        .enqueue(message("t1", &[("a@x.test", "x.test")], b"body"))
        .unwrap()
        .wait()
        .unwrap();
    let policy = RetryPolicy {
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let lease = q.take_due(at(0), "x.test", 1).unwrap().remove(0);
    q.record_attempt(lease, &[], attempt(10, said(421, "busy")), &policy)
        .unwrap();
    let info = q.show(id).unwrap();
    assert_eq!(
        info.recipients[0].state,
        RecipientState::Deferred {
            next_attempt: at(310)
        }
    );
    assert!(q.take_due(at(309), "x.test", 1).unwrap().is_empty());
    let lease = q.take_due(at(310), "x.test", 1).unwrap().remove(0);
    assert_eq!(lease.recipients[0].attempts, 1);
    // Past the lifetime: expired, a bounce is owed, message kept for the DSN.
    let late = 5 * 24 * 3600 + 1;
    q.record_attempt(
        lease,
        &[(
            0,
            Outcome::Deferred {
                reason: said(451, "later"),
            },
        )],
        attempt(late, said(451, "later")),
        &policy,
    )
    .unwrap();
    assert_eq!(
        q.show(id).unwrap().recipients[0].state,
        RecipientState::Expired
    );
    let bounces = q.take_bounces(10).unwrap();
    assert_eq!(bounces.len(), 1);
    assert!(bounces[0].recipients[0].expired);
    assert!(
        q.take_bounces(10).unwrap().is_empty(),
        "handed out once per process"
    );
    // A bounce whose DSN could not be queued is handed back and out again.
    q.untake_bounce(&bounces[0]);
    let again = q.take_bounces(10).unwrap();
    assert_eq!(again, bounces);
    assert_eq!(q.message_body(id).unwrap(), b"body");
    q.bounce_done(&bounces[0]).unwrap();
    assert!(matches!(q.show(id), Err(QueueError::NotFound { .. })));
}

#[test]
fn leases_survive_restart_as_due() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let q = open(dir.path());
        id = q
            .enqueue(message("t1", &[("a@x.test", "x.test")], b"body"))
            .unwrap()
            .wait()
            .unwrap();
        let leases = q.take_due(at(0), "x.test", 1).unwrap();
        assert_eq!(leases.len(), 1);
        // Dropped without record_attempt: like a crash mid-delivery.
    }
    let q = open(dir.path());
    let leases = q.take_due(at(0), "x.test", 1).unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].id, id);
    assert_eq!(q.read_body(&leases[0]).unwrap(), b"body");
}

#[test]
fn operations_hold_release_retry_bounce_delete_list() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let mut ids = Vec::new();
    for (i, tenant) in ["t1", "t2", "t1"].iter().enumerate() {
        let rcpt = format!("r{i}@d{i}.test");
        let dest = format!("d{i}.test");
        ids.push(
            q.enqueue(message(tenant, &[(&rcpt, &dest)], b"b"))
                .unwrap()
                .wait()
                .unwrap(),
        );
    }
    assert_eq!(q.counts().by_tenant.get("t1"), Some(&2));
    assert_eq!(q.hold(ids[0]).unwrap(), 1);
    assert!(q.take_due(at(0), "d0.test", 1).unwrap().is_empty());
    let held = ListFilter {
        state: Some(StateKind::Held),
        ..ListFilter::default()
    };
    assert_eq!(q.list(&held, None, 10).unwrap().items.len(), 1);
    assert_eq!(q.release(ids[0], at(50)).unwrap(), 1);
    assert_eq!(q.take_due_any(at(100), 10).unwrap().len(), 3);
    // All leased: bounce one (its lease is lost), delete another.
    assert_eq!(q.bounce_now(ids[1], "operator").unwrap(), 1);
    q.delete(ids[2]).unwrap();
    assert!(matches!(q.delete(ids[2]), Err(QueueError::NotFound { .. })));
    let by_tenant = ListFilter {
        tenant: Some("t1".into()),
        ..ListFilter::default()
    };
    let page = q.list(&by_tenant, None, 10).unwrap();
    assert_eq!(
        page.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let by_domain = ListFilter {
        recipient: Some("D1.test".into()),
        ..ListFilter::default()
    };
    assert_eq!(q.list(&by_domain, None, 10).unwrap().items[0].id, ids[1]);
    // Pagination.
    let first = q.list(&ListFilter::default(), None, 1).unwrap();
    assert_eq!(first.items.len(), 1);
    let second = q.list(&ListFilter::default(), first.next, 1).unwrap();
    assert_eq!(second.items[0].id, ids[1]);
    assert_eq!(second.next, None);
}

#[test]
fn disk_full_is_a_typed_error_and_the_queue_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions::default();
    let faults = options.faults.clone();
    let q = sealpost_queue::Queue::open(dir.path(), options).unwrap();
    faults.disk_full.store(true, Ordering::Relaxed);
    let err = q
        .enqueue(message("t1", &[("a@x.test", "x.test")], b"b"))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    faults.disk_full.store(false, Ordering::Relaxed);
    q.enqueue(message("t1", &[("a@x.test", "x.test")], b"b"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(q.counts().by_state.get(&StateKind::Queued), Some(&1));
}

#[test]
fn oversized_and_bad_ids_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        max_body_bytes: 4,
        ..QueueOptions::default()
    };
    let q = sealpost_queue::Queue::open(dir.path(), options).unwrap();
    let too_big = q.enqueue(message("t", &[("a@x", "x")], b"12345"));
    assert!(matches!(
        too_big,
        Err(QueueError::TooLarge { size: 5, limit: 4 })
    ));
    for bad in ["", "xyz", "0123456789ABCDEF", "0123456789abcdef0"] {
        assert!(bad.parse::<MessageId>().is_err(), "{bad}");
    }
}

#[test]
fn corrupt_body_record_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.enqueue(message("t", &[("a@x", "x")], b"precious body"))
        .unwrap()
        .wait()
        .unwrap();
    let seg = std::fs::read_dir(dir.path().join("bodies"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mut bytes = std::fs::read(seg.path()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(seg.path(), bytes).unwrap();
    let lease = q.take_due(at(0), "x", 1).unwrap().remove(0);
    assert!(matches!(
        q.read_body(&lease),
        Err(QueueError::CorruptBody { .. })
    ));
}

#[test]
fn corrupt_store_at_open_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        q.enqueue(message("t", &[("a@x", "x")], b"b"))
            .unwrap()
            .wait()
            .unwrap();
    }
    let db = dir.path().join("meta").join("db");
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().take(len) {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    match sealpost_queue::Queue::open(dir.path(), QueueOptions::default()) {
        Err(e @ QueueError::CorruptStore { .. }) => {
            let text = e.to_string();
            assert!(text.contains("meta"), "{text}");
            assert!(text.contains("move the directory aside"), "{text}");
        }
        Err(other) => panic!("expected CorruptStore, got {other}"),
        Ok(_) => panic!("opened a corrupt store"),
    }
}

#[test]
fn a_store_in_use_by_another_queue_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    match sealpost_queue::Queue::open(dir.path(), QueueOptions::default()) {
        Err(e @ QueueError::InUse { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
            assert!(text.contains("another sealpost"), "{text}");
        }
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("opened a store another queue holds"),
    }
}

#[test]
fn finished_message_attempt_log_is_retained_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        retain_done: Some(std::time::Duration::from_secs(3600)),
        ..QueueOptions::default()
    };
    let q = sealpost_queue::Queue::open(dir.path(), options).unwrap();
    let id = q
        .enqueue(message("t", &[("a@x", "x")], b"b"))
        .unwrap()
        .wait()
        .unwrap();
    let lease = q.take_due(at(0), "x", 1).unwrap().remove(0);
    let delivered = Outcome::Delivered {
        reply: said(250, "2.0.0 queued as 42"),
    };
    q.record_attempt(
        lease,
        &[(0, delivered.clone())],
        attempt(1, said(250, "")),
        &RetryPolicy::default(),
    )
    .unwrap();
    let info = q.show(id).unwrap();
    assert_eq!(info.recipients[0].state, RecipientState::Delivered);
    assert_eq!(info.recipients[0].attempts[0].outcome, delivered);
    assert!(
        q.counts().by_state.is_empty(),
        "finished messages are not counted"
    );
    assert!(matches!(
        q.message_body(id),
        Err(QueueError::NotFound { .. })
    ));
}

#[test]
fn due_tenants_names_each_tenant_with_due_mail_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    for (tenant, n) in [("flood", 3), ("quiet", 1)] {
        for _ in 0..n {
            q.enqueue(message(tenant, &[("a@x.test", "x.test")], b"m"))
                .unwrap()
                .wait()
                .unwrap();
        }
    }
    assert_eq!(q.due_tenants(at(1)), vec!["flood", "quiet"]);
    // Leasing every message of a tenant leaves its keys in the index until
    // the attempt is recorded; take_due_tenant then finds nothing new.
    let leases = q.take_due_tenant(at(1), "quiet", 10).unwrap();
    assert_eq!(leases.len(), 1);
    assert!(q.take_due_tenant(at(1), "quiet", 10).unwrap().is_empty());
    let lease = leases.into_iter().next().unwrap();
    record_delivered(&q, lease, 0, 2);
    assert_eq!(q.due_tenants(at(3)), vec!["flood"]);
}

/// A lease given back without an outcome (its attempt panicked, or its
/// record could not be written) is due again after the delay asked for, in
/// this process: not stuck until a restart, not due again at once.
#[test]
fn a_returned_lease_is_due_again_after_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let id = q
        .enqueue(message(
            "t1",
            &[("a@x.test", "x.test"), ("b@x.test", "x.test")],
            b"body",
        ))
        .unwrap()
        .wait()
        .unwrap();
    let lease = q.take_due(at(1), "x.test", 10).unwrap().remove(0);
    assert_eq!(q.return_lease(&lease.key(), at(61)), 2);
    // Returning twice changes nothing: the recipients are no longer leased.
    assert_eq!(q.return_lease(&lease.key(), at(61)), 0);
    assert_eq!(q.counts().by_state.get(&StateKind::Queued), Some(&2));
    assert!(q.take_due(at(30), "x.test", 10).unwrap().is_empty());
    assert!(q.take_due_any(at(30), 10).unwrap().is_empty());
    assert!(q.due_tenants(at(30)).is_empty());
    let again = q.take_due(at(61), "x.test", 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].recipients.len(), 2);
    let lease = again.into_iter().next().unwrap();
    record_delivered(&q, lease, 0, 62);
    // The other recipient was deferred by that record; the delay is gone.
    assert!(matches!(
        q.show(id).unwrap().recipients[1].state,
        RecipientState::Deferred { .. }
    ));
}

/// A tenant with a backlog to one destination and a little mail to another:
/// with the first capped, leasing passes over it (without giving up) and
/// takes the other's mail, oldest first.
#[test]
fn take_due_tenant_within_keeps_to_each_destinations_room() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    for _ in 0..20 {
        q.enqueue(message("t1", &[("a@slow.test", "slow.test")], b"m"))
            .unwrap()
            .wait()
            .unwrap();
    }
    let mut fast = Vec::new();
    for _ in 0..2 {
        let id = q
            .enqueue(message("t1", &[("b@fast.test", "fast.test")], b"m"))
            .unwrap()
            .wait()
            .unwrap();
        fast.push(id);
    }
    let room = |d: &str| if d == "slow.test" { 3 } else { 10 };
    let leases = q.take_due_tenant_within(at(1), "t1", 100, &room).unwrap();
    let slow = leases
        .iter()
        .filter(|l| l.destination == "slow.test")
        .count();
    let got: Vec<_> = leases
        .iter()
        .filter(|l| l.destination == "fast.test")
        .map(|l| l.id)
        .collect();
    assert_eq!(slow, 3);
    assert_eq!(got, fast);
    // No room left anywhere: nothing, though 17 messages are due.
    let none = |_: &str| 0;
    assert!(q
        .take_due_tenant_within(at(1), "t1", 100, &none)
        .unwrap()
        .is_empty());
    assert_eq!(q.due_tenants(at(1)), vec!["t1"]);
    // `max` bounds the whole call.
    assert_eq!(
        q.take_due_tenant_within(at(1), "t1", 2, &room)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn take_pending_leases_waiting_mail_whenever_due_but_not_held_or_leased() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let enqueue = |tenant: &str, rcpt: (&str, &str)| {
        q.enqueue(message(tenant, &[rcpt], b"body"))
            .unwrap()
            .wait()
            .unwrap()
    };
    let deferred = enqueue("t1", ("a@x.test", "x.test"));
    let held = enqueue("t1", ("b@x.test", "x.test"));
    let other = enqueue("t2", ("c@y.test", "y.test"));
    // Defer the first far into the future; hold the second.
    let lease = q.take_due(at(1), "x.test", 1).unwrap().pop().unwrap();
    assert_eq!(lease.id, deferred);
    let later = Outcome::Deferred {
        reason: said(451, "later"),
    };
    q.record_attempt(
        lease,
        &[(0, later)],
        attempt(1, said(451, "later")),
        &RetryPolicy::default(),
    )
    .unwrap();
    q.hold(held).unwrap();
    assert!(q.take_due_tenant(at(2), "t1", 10).unwrap().is_empty());

    let t1 = q.take_pending(Some("t1"), 10).unwrap();
    assert_eq!(t1.leased, 0);
    assert_eq!(
        t1.leases.iter().map(|l| l.id).collect::<Vec<_>>(),
        [deferred]
    );
    // Leased now: not taken twice, and counted as leased.
    let again = q.take_pending(Some("t1"), 10).unwrap();
    assert!(again.leases.is_empty());
    assert_eq!(again.leased, 1);
    let all = q.take_pending(None, 10).unwrap();
    assert_eq!(all.leases.iter().map(|l| l.id).collect::<Vec<_>>(), [other]);
    assert!(q
        .take_pending(Some("nobody"), 10)
        .unwrap()
        .leases
        .is_empty());
}
