//! DSNs built by `sealpost::dsn` and parsed back with a minimal MIME and
//! header-field parser written here (independent of the builder).

use sealpost::dsn::{build, Action, DsnInput, DsnOutcome, RecipientReport};
use sealpost::smtp::{EnhancedCode, Host, Mailbox, Reply, ReversePath};
use support::dsn_parse::{fields, get, parse, Parsed};

mod support;

fn sender() -> ReversePath {
    ReversePath::Mailbox(Mailbox {
        local_part: "alice".into(),
        host: Host::Domain("src.test".into()),
    })
}

const ORIGINAL: &[u8] = b"From: Alice <alice@src.test>\r\nTo: bob@dest.test\r\n\
Subject: quarterly figures\r\nMessage-ID: <m1@src.test>\r\n\r\nSECRET BODY\r\n";

const NOV_23: u64 = 1_795_425_483; // Mon, 23 Nov 2026 09:18:03 +0000

fn failed(addr: &str, reply: Reply) -> RecipientReport {
    RecipientReport {
        final_recipient: addr.into(),
        original_recipient: Some(format!("orig-{addr}")),
        action: Action::Failed,
        status: reply.enhanced.unwrap_or(EnhancedCode(5, 0, 0)),
        remote_mta: Some("mx1.dest.test".into()),
        diagnostic: Some(reply),
        last_attempt: Some(NOV_23),
        will_retry_until: None,
        local_reason: None,
    }
}

fn delayed(addr: &str) -> RecipientReport {
    RecipientReport {
        final_recipient: addr.into(),
        original_recipient: None,
        action: Action::Delayed,
        status: EnhancedCode(4, 7, 5),
        remote_mta: None,
        diagnostic: None,
        last_attempt: Some(NOV_23),
        will_retry_until: Some(NOV_23 + 4 * 86_400),
        local_reason: None,
    }
}

fn bounce(recipients: &[RecipientReport]) -> (sealpost::dsn::Dsn, Parsed) {
    let from = sender();
    let input = DsnInput {
        reporting_mta: "gw.sealpost.test",
        original_sender: &from,
        arrival_date: NOV_23 - 3600,
        now: NOV_23 + 60,
        recipients,
        original_message: ORIGINAL,
        redact: false,
    };
    match build(&input).expect("built") {
        DsnOutcome::Bounce(dsn) => {
            let parsed = parse(&dsn.message);
            (dsn, parsed)
        }
        DsnOutcome::NoBounceForNullSender => panic!("sender is not null"),
    }
}

/// The delivery-status body: per-message block, then per-recipient blocks.
fn status_blocks(p: &Parsed) -> Vec<Vec<(String, String)>> {
    let (headers, body) = &p.parts[1];
    assert_eq!(
        get(headers, "content-type"),
        Some("message/delivery-status")
    );
    body.trim_end_matches("\r\n")
        .split("\r\n\r\n")
        .map(fields)
        .collect()
}

#[test]
fn failed_recipient_report() {
    let (dsn, p) = bounce(&[failed(
        "bob@dest.test",
        Reply::new(550, (5, 1, 1), "no such user here"),
    )]);
    assert_eq!(dsn.envelope_from, ReversePath::Null);
    assert_eq!(ReversePath::Mailbox(dsn.recipient.clone()), sender());
    let top = &p.top;
    assert_eq!(
        get(top, "from"),
        Some("Mail Delivery System <MAILER-DAEMON@gw.sealpost.test>")
    );
    assert_eq!(get(top, "to"), Some("<alice@src.test>"));
    assert_eq!(
        get(top, "subject"),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(get(top, "date"), Some("Mon, 23 Nov 2026 09:19:03 +0000"));
    assert_eq!(get(top, "message-id"), Some(dsn.message_id.as_str()));
    assert!(dsn.message_id.starts_with('<') && dsn.message_id.ends_with("@gw.sealpost.test>"));
    assert_eq!(get(top, "auto-submitted"), Some("auto-replied"));
    assert_eq!(get(top, "mime-version"), Some("1.0"));

    assert_eq!(p.parts.len(), 3);
    let types: Vec<&str> = p
        .parts
        .iter()
        .map(|(h, _)| get(h, "content-type").expect("part type"))
        .collect();
    assert_eq!(
        types,
        [
            "text/plain; charset=us-ascii",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let human = p.parts[0].1.replace("\r\n", " ");
    assert!(human.contains("<bob@dest.test>: failed (5.1.1)"), "{human}");
    assert!(human.contains("550 5.1.1 no such user here"), "{human}");

    let blocks = status_blocks(&p);
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        get(&blocks[0], "reporting-mta"),
        Some("dns; gw.sealpost.test")
    );
    assert_eq!(
        get(&blocks[0], "arrival-date"),
        Some("Mon, 23 Nov 2026 08:18:03 +0000")
    );
    let r = &blocks[1];
    assert_eq!(get(r, "final-recipient"), Some("rfc822; bob@dest.test"));
    assert_eq!(
        get(r, "original-recipient"),
        Some("rfc822; orig-bob@dest.test")
    );
    assert_eq!(get(r, "action"), Some("failed"));
    assert_eq!(get(r, "status"), Some("5.1.1"));
    assert_eq!(get(r, "remote-mta"), Some("dns; mx1.dest.test"));
    assert_eq!(
        get(r, "diagnostic-code"),
        Some("smtp; 550 5.1.1 no such user here")
    );
    assert_eq!(
        get(r, "last-attempt-date"),
        Some("Mon, 23 Nov 2026 09:18:03 +0000")
    );
    assert_eq!(get(r, "will-retry-until"), None);

    let (headers, original) = &p.parts[2];
    assert_eq!(get(headers, "content-type"), Some("text/rfc822-headers"));
    let original_fields = fields(original);
    assert_eq!(get(&original_fields, "subject"), Some("quarterly figures"));
    assert_eq!(get(&original_fields, "message-id"), Some("<m1@src.test>"));
    assert!(
        !String::from_utf8_lossy(&dsn.message).contains("SECRET BODY"),
        "headers only"
    );
    assert!(!original.contains(&p.boundary));
}

#[test]
fn delayed_only_report() {
    let (_, p) = bounce(&[delayed("carol@dest.test")]);
    assert_eq!(
        get(&p.top, "subject"),
        Some("Delayed Mail (still being retried)")
    );
    let blocks = status_blocks(&p);
    let r = &blocks[1];
    assert_eq!(get(r, "action"), Some("delayed"));
    assert_eq!(get(r, "status"), Some("4.7.5"));
    assert_eq!(
        get(r, "will-retry-until"),
        Some("Fri, 27 Nov 2026 09:18:03 +0000")
    );
    assert_eq!(get(r, "remote-mta"), None);
    assert_eq!(get(r, "diagnostic-code"), None);
    assert_eq!(get(r, "original-recipient"), None);
}

#[test]
fn mixed_report_has_one_block_per_recipient_in_order() {
    let (_, p) = bounce(&[
        failed("a@dest.test", Reply::new(550, (5, 7, 1), "policy")),
        delayed("b@dest.test"),
        failed("c@dest.test", Reply::new(552, (5, 2, 2), "mailbox full")),
    ]);
    assert_eq!(
        get(&p.top, "subject"),
        Some("Undelivered Mail Returned to Sender")
    );
    let blocks = status_blocks(&p);
    assert_eq!(blocks.len(), 4);
    let got: Vec<(Option<&str>, Option<&str>, Option<&str>)> = blocks[1..]
        .iter()
        .map(|b| {
            (
                get(b, "final-recipient"),
                get(b, "action"),
                get(b, "status"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("rfc822; a@dest.test"), Some("failed"), Some("5.7.1")),
            (Some("rfc822; b@dest.test"), Some("delayed"), Some("4.7.5")),
            (Some("rfc822; c@dest.test"), Some("failed"), Some("5.2.2")),
        ]
    );
    let human = p.parts[0].1.replace("\r\n", " ");
    assert!(human.contains("could not be delivered") && human.contains("delayed"));
}

#[test]
fn null_sender_gets_no_bounce() {
    let reports = [failed("bob@dest.test", Reply::new(550, (5, 1, 1), "x"))];
    let input = DsnInput {
        reporting_mta: "gw.sealpost.test",
        original_sender: &ReversePath::Null,
        arrival_date: NOV_23,
        now: NOV_23,
        recipients: &reports,
        original_message: ORIGINAL,
        redact: false,
    };
    assert_eq!(build(&input), Ok(DsnOutcome::NoBounceForNullSender));
}

#[test]
fn remote_reply_cannot_inject_fields() {
    let evil = Reply {
        code: 550,
        enhanced: Some(EnhancedCode(5, 1, 1)),
        lines: vec![
            "no\r\nBcc: victim@else.test\r\n\r\n--fake".into(),
            format!("{}\u{7}end", "long ".repeat(400)),
        ],
    };
    let (dsn, p) = bounce(&[failed("bob@dest.test", evil)]);
    let text = String::from_utf8(dsn.message).expect("utf8");
    assert!(!text.contains("\r\nBcc:"), "no injected header line");
    assert_eq!(get(&p.top, "bcc"), None);
    let blocks = status_blocks(&p);
    assert_eq!(blocks.len(), 2, "no extra recipient block injected");
    let diag = get(&blocks[1], "diagnostic-code").expect("diagnostic");
    assert!(
        diag.starts_with("smtp; 550 5.1.1 no Bcc: victim@else.test --fake long long"),
        "{diag}"
    );
    assert!(
        diag.len() <= 910 && diag.ends_with("..."),
        "truncated: {}",
        diag.len()
    );
    assert!(!diag.contains('\u{7}'));
}
