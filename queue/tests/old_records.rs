//! Records written before reasons were typed hold plain strings where a
//! typed reason now stands: a queue directory in that form still opens,
//! shows its attempts, and hands out its bounces.

mod support;

use sealpost_queue::{Outcome, Reason, RecipientState, RetryPolicy};
use support::{at, attempt, message, open, said};

/// Rewrites every reason in a stored JSON record to the text it renders
/// as, which is how the old code stored it.
fn to_old_form(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let is_reason = matches!(key.as_str(), "reply_or_reason" | "reply" | "reason");
                if is_reason && field.is_object() {
                    let typed: Reason =
                        serde_json::from_value(field.clone()).expect("a typed reason");
                    *field = serde_json::Value::String(typed.to_string());
                } else {
                    to_old_form(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(to_old_form),
        _ => {}
    }
}

/// Opens the sled store under `dir` and rewrites each record of `tree` to
/// the old form; returns how many reasons it rewrote.
fn rewrite(dir: &std::path::Path, tree: &str) -> usize {
    let db = sled::open(dir.join("meta")).expect("open the store");
    let tree = db.open_tree(tree).expect("tree");
    let mut rewritten = 0;
    for item in tree.iter() {
        let (key, value) = item.expect("record");
        let mut json: serde_json::Value = serde_json::from_slice(&value).expect("json");
        let before = json.clone();
        to_old_form(&mut json);
        if json != before {
            rewritten += 1;
        }
        tree.insert(key, serde_json::to_vec(&json).expect("encode"))
            .expect("insert");
    }
    db.flush().expect("flush");
    rewritten
}

#[test]
fn a_queue_written_with_string_reasons_still_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = RetryPolicy {
        lifetime: std::time::Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let (deferred, bounced) = {
        let q = open(dir.path());
        let deferred = q
            .enqueue(message("t", &[("a@x.test", "x.test")], b"one"))
            .expect("enqueue")
            .wait()
            .expect("durable");
        let bounced = q
            .enqueue(message("t", &[("b@y.test", "y.test")], b"two"))
            .expect("enqueue")
            .wait()
            .expect("durable");
        let lease = q.take_due(at(0), "x.test", 1).expect("due").remove(0);
        let later = Outcome::Deferred {
            reason: said(451, "greylisted"),
        };
        q.record_attempt(
            lease,
            &[(0, later)],
            attempt(1, said(451, "greylisted")),
            &policy,
        )
        .expect("record");
        let lease = q.take_due(at(0), "y.test", 1).expect("due").remove(0);
        let failed = Outcome::Failed {
            reason: said(550, "no such user"),
        };
        q.record_attempt(
            lease,
            &[(0, failed)],
            attempt(1, said(550, "no such user")),
            &policy,
        )
        .expect("record");
        (deferred, bounced)
    };
    assert_eq!(
        rewrite(dir.path(), "messages"),
        2,
        "both messages held reasons"
    );
    assert_eq!(
        rewrite(dir.path(), "bounces"),
        1,
        "the owed bounce held one"
    );

    let q = open(dir.path());
    let info = q.show(deferred).expect("the old record reads");
    let record = &info.recipients[0].attempts[0];
    let old_text = "mx.example.net [192.0.2.1] said: 451 greylisted";
    assert_eq!(
        record.outcome,
        Outcome::Deferred {
            reason: Reason::Legacy {
                text: old_text.into()
            }
        }
    );
    assert_eq!(record.attempt.reply_or_reason.to_string(), old_text);
    assert!(matches!(
        info.recipients[0].state,
        RecipientState::Deferred { .. }
    ));
    let owed = q.take_bounces(10).expect("bounces");
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].id, bounced);
    assert_eq!(
        owed[0].recipients[0].reason,
        Reason::Legacy {
            text: "mx.example.net [192.0.2.1] said: 550 no such user".into()
        }
    );
    // A new attempt on the old record is stored typed beside the old one.
    let lease = q.take_due(at(3600), "x.test", 1).expect("due").remove(0);
    let again = Outcome::Deferred {
        reason: said(452, "mailbox full"),
    };
    q.record_attempt(
        lease,
        &[(0, again.clone())],
        attempt(3600, said(452, "mailbox full")),
        &policy,
    )
    .expect("record on an old record");
    let info = q.show(deferred).expect("reads");
    assert_eq!(info.recipients[0].attempts.len(), 2);
    assert_eq!(info.recipients[0].attempts[1].outcome, again);
}
