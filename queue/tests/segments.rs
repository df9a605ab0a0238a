//! Body segments under rotation: every acknowledged body stays readable while
//! segments roll over inside commit groups and other messages release theirs.

mod support;

use sealpost_queue::{Queue, QueueOptions};
use std::sync::{Arc, Barrier};
use support::{checksum, message, open_with_faults};

/// Segments far smaller than one record: every append rotates, so a commit
/// group of several writers crosses several rotations. Before the fix the
/// second append of a group unlinked the segment holding the first (its
/// record was not yet counted live), and that acknowledged body was lost.
#[test]
fn rotation_inside_a_commit_group_keeps_every_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = QueueOptions {
        segment_bytes: 64,
        ..QueueOptions::default()
    };
    let queue = Arc::new(Queue::open(dir.path(), options).expect("open"));
    let writers = 8;
    let per_writer = 25;
    let start = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let queue = queue.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut stored = Vec::new();
                for n in 0..per_writer {
                    let body = format!("writer {w} message {n} ")
                        .repeat(4 + n % 7)
                        .into_bytes();
                    let sum = checksum(&body);
                    let id = queue
                        .enqueue(message("t", &[("a@x.test", "x.test")], &body))
                        .expect("enqueue")
                        .wait()
                        .expect("durable");
                    stored.push((id, sum));
                    // Release an older message while others are mid-group.
                    if n % 3 == 2 {
                        let (old, _) = stored.remove(0);
                        queue.delete(old).expect("delete");
                    }
                }
                stored
            })
        })
        .collect();
    let stored: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer"))
        .collect();
    for (id, sum) in &stored {
        let body = queue
            .message_body(*id)
            .unwrap_or_else(|e| panic!("body of acknowledged message {id}: {e}"));
        assert_eq!(checksum(&body), *sum, "body of {id}");
    }
    drop(queue);
    let queue = Queue::open(dir.path(), QueueOptions::default()).expect("reopen");
    for (id, sum) in &stored {
        let body = queue
            .message_body(*id)
            .unwrap_or_else(|e| panic!("body of {id} after reopen: {e}"));
        assert_eq!(checksum(&body), *sum, "body of {id} after reopen");
    }
}

fn transaction(copies: usize, body: &[u8]) -> sealpost_queue::NewTransaction {
    let copies = (0..copies)
        .map(|i| {
            let dest = format!("d{i}.test");
            let m = message("t", &[(&format!("bob@{dest}"), &dest)], b"");
            m.into_copy(format!("Received: copy {i}\r\n")).0
        })
        .collect();
    sealpost_queue::NewTransaction {
        copies,
        body: body.to_vec().into(),
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("bodies"))
        .expect("bodies dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count()
}

/// A transaction's copies share one stored body: it is written once, each
/// copy reads its own trace header before it, and the record stays until
/// the last copy leaves the queue.
#[test]
fn a_transaction_stores_its_body_once_until_the_last_copy_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), QueueOptions::default()).expect("open");
    let body = vec![b'x'; 100_000];
    let ids = queue
        .enqueue_transaction(transaction(3, &body))
        .expect("enqueue")
        .wait()
        .expect("durable");
    assert_eq!(ids.len(), 3);
    let on_disk: u64 = std::fs::read_dir(dir.path().join("bodies"))
        .expect("bodies")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(
        on_disk < 2 * body.len() as u64,
        "{on_disk} bytes on disk for three copies of {} bytes",
        body.len()
    );
    for (i, id) in ids.iter().enumerate() {
        let mut want = format!("Received: copy {i}\r\n").into_bytes();
        want.extend_from_slice(&body);
        assert_eq!(queue.message_body(*id).expect("body"), want);
    }
    queue.delete(ids[0]).expect("delete the owner's copy");
    queue.delete(ids[1]).expect("delete");
    assert_eq!(
        queue.message_body(ids[2]).expect("last copy").len(),
        100_018
    );
    drop(queue);
    // After a restart the remaining copy still holds the shared record.
    let queue = Queue::open(dir.path(), QueueOptions::default()).expect("reopen");
    assert_eq!(
        queue.message_body(ids[2]).expect("after reopen").len(),
        100_018
    );
    // Force a rotation so the segment is no longer the one appended to.
    let options_small = QueueOptions {
        segment_bytes: 64,
        ..QueueOptions::default()
    };
    drop(queue);
    let queue = Queue::open(dir.path(), options_small).expect("reopen small");
    let other = queue
        .enqueue(message("t", &[("a@x.test", "x.test")], b"other"))
        .expect("enqueue")
        .wait()
        .expect("durable");
    assert_eq!(segment_files(dir.path()), 2);
    queue.delete(ids[2]).expect("delete the last copy");
    assert_eq!(
        segment_files(dir.path()),
        1,
        "the shared record's segment is gone"
    );
    assert_eq!(queue.message_body(other).expect("other"), b"other");
}

/// All copies of a transaction are stored, or none: a storage failure
/// refuses the whole transaction once, and nothing of it remains.
#[test]
fn a_transaction_commits_all_its_copies_or_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, faults) = open_with_faults(dir.path());
    faults
        .disk_full
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let refused = queue
        .enqueue_transaction(transaction(3, b"body"))
        .expect("enqueue")
        .wait();
    assert!(
        refused.as_ref().is_err_and(|e| e.is_disk_full()),
        "{refused:?}"
    );
    assert_eq!(queue.counts().by_state.values().sum::<u64>(), 0);
    faults
        .disk_full
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let ids = queue
        .enqueue_transaction(transaction(3, b"body"))
        .expect("enqueue")
        .wait()
        .expect("stored once the disk has room");
    assert_eq!(queue.counts().by_state.values().sum::<u64>(), 3);
    assert_eq!(ids.len(), 3);
}

/// A body spooled to `incoming/` as it arrives becomes a segment of its own
/// at commit (renamed, not copied), reads back whole with each copy's
/// trace, survives a reopen, and goes when its last copy leaves. A spool
/// never committed leaves nothing behind.
#[test]
fn a_spooled_body_becomes_its_own_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), QueueOptions::default()).expect("open");
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut spool = queue.spool();
    for _ in 0..40 {
        spool.write(&chunk);
    }
    assert_eq!(spool.len(), 40 * chunk.len() as u64);
    let want_body: Vec<u8> = chunk.repeat(40);
    let mut tx = transaction(2, b"");
    tx.body = sealpost_queue::Body::Spooled(spool);
    let ids = queue
        .enqueue_transaction(tx)
        .expect("enqueue")
        .wait()
        .expect("durable");
    let incoming = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("incoming"))
            .expect("incoming")
            .count()
    };
    assert_eq!(incoming(dir.path()), 0, "the spool was moved, not copied");
    for (i, id) in ids.iter().enumerate() {
        let mut want = format!("Received: copy {i}\r\n").into_bytes();
        want.extend_from_slice(&want_body);
        assert_eq!(queue.message_body(*id).expect("body"), want);
    }
    // A spool dropped without a commit deletes itself.
    let mut abandoned = queue.spool();
    abandoned.write(b"half a message");
    drop(abandoned);
    assert_eq!(incoming(dir.path()), 0);
    // One left behind by a dead process is removed at open.
    std::fs::write(dir.path().join("incoming/1-1.spool"), b"junk").expect("junk");
    drop(queue);
    let queue = Queue::open(dir.path(), QueueOptions::default()).expect("reopen");
    assert_eq!(incoming(dir.path()), 0);
    assert_eq!(
        queue.message_body(ids[1]).expect("after reopen").len(),
        want_body.len() + "Received: copy 1\r\n".len()
    );
    let before = segment_files(dir.path());
    queue.delete(ids[0]).expect("delete");
    queue.delete(ids[1]).expect("delete");
    assert_eq!(segment_files(dir.path()), before - 1);
}

/// A full disk while spooling refuses the transaction at commit with a
/// disk-full error (the SMTP server's 452), and stores nothing.
#[test]
fn a_spool_that_hit_a_full_disk_refuses_the_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (queue, faults) = open_with_faults(dir.path());
    let mut spool = queue.spool();
    spool.write(b"first part");
    faults
        .disk_full
        .store(true, std::sync::atomic::Ordering::Relaxed);
    spool.write(b"second part");
    let mut tx = transaction(1, b"");
    tx.body = sealpost_queue::Body::Spooled(spool);
    let refused = queue.enqueue_transaction(tx).map(|_| ());
    assert!(
        refused.as_ref().is_err_and(|e| e.is_disk_full()),
        "{refused:?}"
    );
    assert_eq!(queue.counts().by_state.values().sum::<u64>(), 0);
}
