use super::*;
use crate::smtp::address::{Host, Mailbox};

fn mb(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local_part: local.into(),
        host: Host::Domain(domain.into()),
    }
}

fn caps(pipelining: bool) -> EhloCapabilities {
    EhloCapabilities {
        domain: "mx.test".into(),
        pipelining,
        size: Some(1000),
        eight_bit_mime: true,
        ..EhloCapabilities::default()
    }
}

fn r(code: u16) -> Reply {
    let class = (code / 100) as u8;
    Reply::new(code, (class.min(5), 0, 0), format!("reply {code}"))
}

/// Drives a transaction against scripted replies (`reply_for(command)`)
/// and returns (writes, outcome codes).
fn drive(
    pipelining: bool,
    to: &[ForwardPath],
    body: &[u8],
    reply_for: &dyn Fn(&str) -> u16,
) -> (Vec<String>, Vec<RecipientOutcome>) {
    let from = ReversePath::Mailbox(mb("a", "x.test"));
    let msg = OutboundMessage {
        from: &from,
        to,
        body,
        requiretls: false,
    };
    let mut t = Transaction::new(msg, &caps(pipelining), true).expect("fits");
    let mut writes = Vec::new();
    let mut queue: VecDeque<u16> = VecDeque::new();
    let mut step = t.start();
    for _ in 0..100 {
        match step {
            Step::Send(bytes) => {
                let text = String::from_utf8(bytes).expect("ascii");
                for line in text.split_inclusive("\r\n") {
                    if t.awaiting() == Some(Awaiting::Body) && !line.starts_with('.') {
                        continue;
                    }
                    queue.push_back(reply_for(line));
                }
                writes.push(text);
                step = Step::Read;
            }
            Step::Read => {
                let code = queue.pop_front().expect("a reply is due");
                step = t.on_reply(r(code));
            }
            Step::Done => return (writes, t.outcomes()),
        }
    }
    panic!("transaction did not finish");
}

fn script(line: &str) -> u16 {
    if line.starts_with("RCPT TO:<temp") {
        450
    } else if line.starts_with("RCPT TO:<perm") {
        550
    } else if line.starts_with("DATA") {
        354
    } else {
        250
    }
}

fn codes(outcomes: &[RecipientOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            RecipientOutcome::Delivered(r) => format!("delivered {}", r.code),
            RecipientOutcome::TempFail(r) => format!("temp {}", r.code),
            RecipientOutcome::PermFail(r) => format!("perm {}", r.code),
        })
        .collect()
}

fn rcpts(names: &[&str]) -> Vec<ForwardPath> {
    names
        .iter()
        .map(|n| ForwardPath::Mailbox(mb(n, "y.test")))
        .collect()
}

#[test]
fn mixed_recipients_both_modes() {
    let to = rcpts(&["ok", "temp", "perm"]);
    for pipelining in [true, false] {
        let (writes, outcomes) = drive(pipelining, &to, b"Subject: x\r\n\r\nhi\r\n", &script);
        assert_eq!(
            codes(&outcomes),
            ["delivered 250", "temp 450", "perm 550"],
            "pipelining {pipelining}"
        );
        if pipelining {
            assert_eq!(
                writes[0],
                "MAIL FROM:<a@x.test> SIZE=18\r\nRCPT TO:<ok@y.test>\r\n\
                 RCPT TO:<temp@y.test>\r\nRCPT TO:<perm@y.test>\r\nDATA\r\n"
            );
            assert_eq!(writes.len(), 2);
        } else {
            assert_eq!(writes[0], "MAIL FROM:<a@x.test> SIZE=18\r\n");
            assert_eq!(writes.len(), 6, "{writes:?}");
        }
        assert!(writes.last().expect("body").ends_with("hi\r\n.\r\n"));
    }
}

#[test]
fn mail_refused_fails_everyone() {
    let to = rcpts(&["a", "b"]);
    for (pipelining, code) in [(true, 451), (false, 451), (true, 550), (false, 550)] {
        let (writes, outcomes) = drive(pipelining, &to, b"x\r\n", &|l| {
            if l.starts_with("MAIL") {
                code
            } else {
                503
            }
        });
        let kind = if code == 451 { "temp" } else { "perm" };
        assert_eq!(
            codes(&outcomes),
            [format!("{kind} {code}"), format!("{kind} {code}")]
        );
        assert_eq!(writes.len(), 1, "no DATA body after a refused MAIL");
    }
}

#[test]
fn no_recipient_accepted_sends_no_body() {
    let to = rcpts(&["perm1", "perm2"]);
    // Non-pipelined: no DATA at all.
    let (writes, outcomes) = drive(false, &to, b"secret\r\n", &script);
    assert_eq!(codes(&outcomes), ["perm 550", "perm 550"]);
    assert!(writes
        .iter()
        .all(|w| !w.contains("DATA") && !w.contains("secret")));
    // Pipelined, server wrongly answers DATA with 354: a lone dot.
    let (writes, _) = drive(true, &to, b"secret\r\n", &script);
    assert_eq!(writes.last().map(String::as_str), Some(".\r\n"));
    assert!(writes.iter().all(|w| !w.contains("secret")));
}

#[test]
fn data_and_final_replies_decide_accepted_recipients() {
    let to = rcpts(&["ok", "perm"]);
    let (_, outcomes) = drive(false, &to, b"x\r\n", &|l| {
        if l.starts_with("DATA") {
            452
        } else {
            script(l)
        }
    });
    assert_eq!(codes(&outcomes), ["temp 452", "perm 550"]);
    let (_, outcomes) = drive(true, &to, b"x\r\n", &|l| {
        if l.starts_with('.') {
            554
        } else {
            script(l)
        }
    });
    assert_eq!(codes(&outcomes), ["perm 554", "perm 550"]);
}

type RefusalRow<'a> = (
    &'a [ForwardPath],
    &'a [u8],
    &'a EhloCapabilities,
    Option<MessageRefusal>,
);

#[test]
fn refusals_from_capabilities() {
    let from = ReversePath::Mailbox(mb("a", "x.test"));
    let utf8_to = vec![ForwardPath::Mailbox(mb("jörg", "y.test"))];
    let to = rcpts(&["b"]);
    let plain = EhloCapabilities::default();
    let limited = caps(true);
    let table: Vec<RefusalRow<'_>> = vec![
        (
            &to,
            b"caf\xc3\xa9\r\n",
            &plain,
            Some(MessageRefusal::EightBitUnsupported),
        ),
        (
            &utf8_to,
            b"x\r\n",
            &plain,
            Some(MessageRefusal::Smtputf8Unsupported),
        ),
        (&[], b"x\r\n", &plain, Some(MessageRefusal::NoRecipients)),
        (
            &to,
            &[b'x'; 1001],
            &limited,
            Some(MessageRefusal::TooBig {
                size: 1001,
                limit: 1000,
            }),
        ),
        (&to, b"x\r\n", &plain, None),
    ];
    for (i, (to, body, caps, expect)) in table.into_iter().enumerate() {
        let msg = OutboundMessage {
            from: &from,
            to,
            body,
            requiretls: false,
        };
        let got = Transaction::new(msg, caps, true).err();
        assert_eq!(got, expect, "row {i}");
    }
}

#[test]
fn mail_parameters() {
    let from = ReversePath::Mailbox(mb("ä", "x.test"));
    let to = rcpts(&["b"]);
    let c = EhloCapabilities {
        smtputf8: true,
        eight_bit_mime: true,
        size: Some(0),
        ..EhloCapabilities::default()
    };
    let body = b"caf\xc3\xa9\r\n";
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body,
        requiretls: false,
    };
    let mut t = Transaction::new(msg, &c, true).expect("fits");
    assert_eq!(
        t.start(),
        Step::Send(b"MAIL FROM:<\xc3\xa4@x.test> SIZE=7 BODY=8BITMIME SMTPUTF8\r\n".to_vec())
    );
    // No SIZE when not advertised.
    let c = EhloCapabilities::default();
    let from = ReversePath::Null;
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: b"x\r\n",
        requiretls: false,
    };
    let mut t = Transaction::new(msg, &c, true).expect("fits");
    assert_eq!(t.start(), Step::Send(b"MAIL FROM:<>\r\n".to_vec()));
}

#[test]
fn closing_during_pipelined_rcpts_ends_the_transaction() {
    let to = rcpts(&["a", "b", "c"]);
    let from = ReversePath::Null;
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: b"x\r\n",
        requiretls: false,
    };
    let mut t = Transaction::new(msg, &caps(true), true).expect("fits");
    t.start();
    assert_eq!(t.on_reply(r(250)), Step::Read);
    assert_eq!(t.on_reply(r(250)), Step::Read);
    assert_eq!(t.on_reply(r(421)), Step::Done);
    assert!(t.server_closing());
    assert_eq!(codes(&t.outcomes()), ["temp 421", "temp 421", "temp 421"]);
}

#[test]
fn server_closing_marks_transaction() {
    let to = rcpts(&["a"]);
    let from = ReversePath::Null;
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: b"x\r\n",
        requiretls: false,
    };
    let mut t = Transaction::new(msg, &caps(false), true).expect("fits");
    t.start();
    assert_eq!(t.on_reply(r(421)), Step::Done);
    assert!(t.server_closing());
    assert_eq!(codes(&t.outcomes()), ["temp 421"]);
}

proptest::proptest! {
    /// Whatever the server answers, the transaction ends, pairs one
    /// reply per command, gives one outcome per recipient, and writes
    /// the body only after a 2xx MAIL, at least one 2xx RCPT and a 354.
    #[test]
    fn any_replies_are_safe(
        codes in proptest::collection::vec(
            proptest::sample::select(vec![250u16, 251, 354, 421, 450, 452, 503, 550, 554]),
            1..12,
        ),
        pipelining in proptest::bool::ANY,
        n in 1usize..4,
    ) {
        let to: Vec<ForwardPath> = (0..n)
            .map(|i| ForwardPath::Mailbox(mb(&format!("r{i}"), "y.test")))
            .collect();
        let from = ReversePath::Null;
        let msg = OutboundMessage { from: &from, to: &to, body: b"BODY\r\n", requiretls: false };
        let mut t = Transaction::new(msg, &caps(pipelining), true).expect("fits");
        let mut replies = codes.iter().copied().chain(std::iter::repeat(250));
        let (mut mail_ok, mut rcpt_ok, mut last) = (None, false, 0u16);
        let mut step = t.start();
        for _ in 0..64 {
            match step {
                Step::Send(bytes) => {
                    if bytes.starts_with(b"BODY") {
                        proptest::prop_assert!(mail_ok == Some(true) && rcpt_ok && last == 354);
                    }
                    step = Step::Read;
                }
                Step::Read => {
                    let what = t.awaiting();
                    let code = replies.next().unwrap_or(250);
                    match what {
                        Some(Awaiting::Mail) => mail_ok = Some((200..300).contains(&code)),
                        Some(Awaiting::Rcpt(_)) => rcpt_ok |= (200..300).contains(&code),
                        _ => {}
                    }
                    last = code;
                    step = t.on_reply(r(code));
                }
                Step::Done => break,
            }
        }
        proptest::prop_assert_eq!(step, Step::Done);
        proptest::prop_assert_eq!(t.outcomes().len(), n);
    }
}

#[test]
fn requiretls_goes_on_mail_from_and_only_to_a_server_advertising_it() {
    let to = rcpts(&["a"]);
    let from = ReversePath::Mailbox(mb("a", "x.test"));
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: b"x\r\n",
        requiretls: true,
    };
    // RFC 8689 section 4.2.1: not advertised, not sent (5.7.30).
    let refusal = Transaction::new(msg, &caps(false), true).expect_err("refused");
    assert_eq!(refusal, MessageRefusal::RequireTlsNotSupported);
    assert_eq!(refusal.status(), (5, 7, 30));
    assert!(refusal.is_requiretls());
    assert!(!MessageRefusal::NoRecipients.is_requiretls());
    // Advertised: the parameter goes on MAIL FROM.
    let mut with = caps(false);
    with.requiretls = true;
    let mut t = Transaction::new(msg, &with, true).expect("fits");
    assert_eq!(
        t.start(),
        Step::Send(b"MAIL FROM:<a@x.test> SIZE=3 REQUIRETLS\r\n".to_vec())
    );
}

#[test]
fn added_parameters_go_on_mail_and_each_rcpt() {
    let to = rcpts(&["ok", "ok2"]);
    let from = ReversePath::Mailbox(mb("a", "x.test"));
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: b"hi\r\n",
        requiretls: false,
    };
    let mut t = Transaction::new(msg, &caps(true), true)
        .expect("fits")
        .with_params(
            &["RET=HDRS".into(), "ENVID=e1".into()],
            &[vec!["NOTIFY=NEVER".into()], Vec::new()],
        );
    let Step::Send(first) = t.start() else {
        panic!("a write first");
    };
    assert_eq!(
        String::from_utf8(first).expect("ascii"),
        "MAIL FROM:<a@x.test> SIZE=4 RET=HDRS ENVID=e1\r\n\
         RCPT TO:<ok@y.test> NOTIFY=NEVER\r\nRCPT TO:<ok2@y.test>\r\nDATA\r\n"
    );
}
