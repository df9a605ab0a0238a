//! Session table: byte scripts through the sans-IO server session, asserting
//! every reply code the machine produces (RFC 5321, 2920, 3030, 3207, 1870,
//! 6531) and the SMTP smuggling defence.
mod support;

use std::sync::Arc;

use sealpost::smtp::{
    ForwardPath, Reply, ReversePath, Session, SessionConfig, SessionError, Transfer, Verdict,
};
use support::smtp::{accept_all, run_script, Ask, Transcript};

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.sealpost.test".into(),
        max_message_size: 100,
        max_recipients: 3,
        max_errors: 5,
        tls_available: true,
        auth_available: false,
        requiretls_available: true,
        extra_params: vec!["ENVID".into()],
        extensions: Vec::new(),
    }
}

/// Plays the lead's policy: some senders must use TLS, some recipients are
/// unknown, others not ours, one makes the server close.
fn policy(ask: Ask<'_>) -> Verdict {
    match ask {
        Ask::Mail(ReversePath::Mailbox(m)) if m.local_part == "mandatory" => Verdict::Reject(
            Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first"),
        ),
        Ask::Rcpt(ForwardPath::Mailbox(m)) => match m.local_part.as_str() {
            "unknown" => Verdict::Reject(Reply::new(550, (5, 1, 1), "User unknown")),
            "later" => Verdict::Reject(Reply::new(450, (4, 2, 0), "Try later")),
            "close" => Verdict::Reject(Reply::new(421, (4, 3, 0), "Shutting down")),
            _ if m.host.to_string() != "ours.test" => {
                Verdict::Reject(Reply::new(554, (5, 7, 1), "Relay access denied"))
            }
            _ => Verdict::Accept,
        },
        other => accept_all(other),
    }
}

fn whole(segment: &[u8]) -> Vec<Vec<u8>> {
    vec![segment.to_vec()]
}

fn bytewise(segment: &[u8]) -> Vec<Vec<u8>> {
    segment.iter().map(|&b| vec![b]).collect()
}

fn run_with(config: SessionConfig, segments: &[&str]) -> Transcript {
    let segments: Vec<Vec<u8>> = segments.iter().map(|s| s.as_bytes().to_vec()).collect();
    let at_once = run_script(config.clone(), &segments, &whole, &policy);
    let by_byte = run_script(config, &segments, &bytewise, &policy);
    assert_eq!(
        at_once.replies, by_byte.replies,
        "split input changed the replies"
    );
    assert_eq!(
        at_once.messages, by_byte.messages,
        "split input changed the messages"
    );
    at_once
}

fn run(segments: &[&str]) -> Transcript {
    run_with(config(), segments)
}

const EHLO: &str = "EHLO client.test\r\n";
const MAIL: &str = "MAIL FROM:<a@sender.test>\r\n";
const RCPT: &str = "RCPT TO:<b@ours.test>\r\n";

#[test]
fn session_table() {
    let bdat_smuggle = "RCPT TO:<evil@ours.test>\r\n";
    let bdat_no_mail = format!("BDAT {}\r\n{bdat_smuggle}", bdat_smuggle.len());
    let long_cmd = format!("NOOP {}\r\n", "x".repeat(600));
    let zs = "z".repeat(98);
    let bdat_big = format!("BDAT 101 LAST\r\n{}", "q".repeat(101));
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "full transaction",
            vec![EHLO, MAIL, RCPT, "DATA\r\n", "Subject: x\r\n\r\nhi\r\n.\r\n", "QUIT\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"],
        ),
        (
            "pipelined group (RFC 2920)",
            vec!["EHLO c\r\n", "MAIL FROM:<a@s.test>\r\nRCPT TO:<b@ours.test>\r\nRCPT TO:<c@ours.test>\r\nDATA\r\n", "x\r\n.\r\nQUIT\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"],
        ),
        ("HELO", vec!["HELO c\r\n", MAIL], vec!["220", "250", "250 2.1.0"]),
        ("MAIL before HELO", vec![MAIL], vec!["220", "503 5.5.1"]),
        ("RCPT before MAIL", vec![EHLO, RCPT], vec!["220", "250", "503 5.5.1"]),
        ("RCPT before HELO", vec![RCPT], vec!["220", "503 5.5.1"]),
        ("DATA before RCPT", vec![EHLO, MAIL, "DATA\r\n"], vec!["220", "250", "250 2.1.0", "503 5.5.1"]),
        ("DATA before MAIL", vec![EHLO, "DATA\r\n"], vec!["220", "250", "503 5.5.1"]),
        (
            "DATA with no valid recipient",
            vec![EHLO, MAIL, "RCPT TO:<unknown@ours.test>\r\n", "DATA\r\n"],
            vec!["220", "250", "250 2.1.0", "550 5.1.1", "554 5.5.1"],
        ),
        ("nested MAIL", vec![EHLO, MAIL, MAIL], vec!["220", "250", "250 2.1.0", "503 5.5.1"]),
        ("RSET ends the transaction", vec![EHLO, MAIL, "RSET\r\n", RCPT, MAIL], vec!["220", "250", "250 2.1.0", "250 2.0.0", "503 5.5.1", "250 2.1.0"]),
        ("EHLO resets the transaction", vec![EHLO, MAIL, EHLO, RCPT], vec!["220", "250", "250 2.1.0", "250", "503 5.5.1"]),
        ("unknown command", vec!["FOO\r\n"], vec!["220", "500 5.5.2"]),
        ("known but not implemented", vec!["EXPN list\r\n"], vec!["220", "502 5.5.1"]),
        ("argument syntax", vec!["EHLO\r\n", "DATA x\r\n"], vec!["220", "501 5.5.4", "501 5.5.4"]),
        ("bad sender", vec![EHLO, "MAIL FROM:<a b@c>\r\n"], vec!["220", "250", "501 5.1.7"]),
        ("bad recipient", vec![EHLO, MAIL, "RCPT TO:<>\r\n"], vec!["220", "250", "250 2.1.0", "501 5.1.3"]),
        ("command line too long, then recovers", vec![long_cmd.as_str(), "NOOP\r\n"], vec!["220", "500 5.5.2", "250 2.0.0"]),
        ("bare LF ends no command", vec!["NOOP\n", "NOOP\r\n"], vec!["220", "500 5.5.2", "250 2.0.0"]),
        (
            "too many recipients (452 4.5.3), DATA still fine",
            vec![EHLO, MAIL, RCPT, RCPT, RCPT, RCPT, "DATA\r\n", "x\r\n.\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"],
        ),
        ("declared SIZE too big", vec![EHLO, "MAIL FROM:<a@s.test> SIZE=101\r\n"], vec!["220", "250", "552 5.3.4"]),
        ("SIZE within limit", vec![EHLO, "MAIL FROM:<a@s.test> SIZE=100 BODY=8BITMIME\r\n"], vec!["220", "250", "250 2.1.0"]),
        (
            "message too big: read to the end, then 552",
            vec![EHLO, MAIL, RCPT, "DATA\r\n", &zs, "\r\nmore\r\n.\r\n", "NOOP\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "354", "552 5.3.4", "250 2.0.0"],
        ),
        (
            "smuggling <LF>.<LF>: no second message",
            vec![EHLO, MAIL, RCPT, "DATA\r\n", "a\n.\nMAIL FROM:<e@x.test>\r\nRCPT TO:<v@ours.test>\r\nDATA\r\nevil\r\n.\r\n", "NOOP\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "354", "554 5.6.0", "250 2.0.0"],
        ),
        (
            "smuggling <LF>.<CR><LF>",
            vec![EHLO, MAIL, RCPT, "DATA\r\n", "a\n.\r\nMAIL FROM:<e@x.test>\r\n.\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "354", "554 5.6.0"],
        ),
        (
            "smuggling <CR>.<CR>",
            vec![EHLO, MAIL, RCPT, "DATA\r\n", "a\r.\rMAIL FROM:<e@x.test>\r\n.\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "354", "554 5.6.0"],
        ),
        ("VRFY disabled", vec!["VRFY root\r\n"], vec!["220", "252 2.5.2"]),
        ("NOOP, HELP", vec!["NOOP\r\n", "HELP\r\n"], vec!["220", "250 2.0.0", "214 2.0.0"]),
        (
            "error limit: 421 and close, the rest ignored",
            vec!["A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n"],
            vec!["220", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "421 4.7.0"],
        ),
        (
            "STARTTLS discards pipelined plaintext and needs EHLO again",
            vec![EHLO, "STARTTLS\r\nMAIL FROM:<inject@x.test>\r\n", MAIL, EHLO, "STARTTLS\r\n"],
            vec!["220", "250", "220 2.0.0", "503 5.5.1", "250", "503 5.5.1"],
        ),
        ("STARTTLS needs EHLO", vec!["STARTTLS\r\n"], vec!["220", "503 5.5.1"]),
        ("STARTTLS takes no argument", vec![EHLO, "STARTTLS now\r\n"], vec!["220", "250", "501 5.5.4"]),
        ("mandatory peer without TLS: 530", vec![EHLO, "MAIL FROM:<mandatory@s.test>\r\n"], vec!["220", "250", "530 5.7.0"]),
        ("relay denied: 554 5.7.1", vec![EHLO, MAIL, "RCPT TO:<x@elsewhere.test>\r\n"], vec!["220", "250", "250 2.1.0", "554 5.7.1"]),
        ("temporary rejection", vec![EHLO, MAIL, "RCPT TO:<later@ours.test>\r\n"], vec!["220", "250", "250 2.1.0", "450 4.2.0"]),
        ("421 verdict closes", vec![EHLO, MAIL, "RCPT TO:<close@ours.test>\r\nNOOP\r\n"], vec!["220", "250", "250 2.1.0", "421 4.3.0"]),
        ("Postmaster without domain", vec![EHLO, MAIL, "RCPT TO:<Postmaster>\r\n"], vec!["220", "250", "250 2.1.0", "250 2.1.5"]),
        ("unsupported MAIL parameter", vec![EHLO, "MAIL FROM:<a@s.test> XFOO=1\r\n"], vec!["220", "250", "555 5.5.4"]),
        ("configured extra parameter", vec![EHLO, "MAIL FROM:<a@s.test> ENVID=x\r\n"], vec!["220", "250", "250 2.1.0"]),
        ("REQUIRETLS without TLS", vec![EHLO, "MAIL FROM:<a@s.test> REQUIRETLS\r\n", MAIL], vec!["220", "250", "530 5.7.10", "250 2.1.0"]),
        ("REQUIRETLS after STARTTLS", vec![EHLO, "STARTTLS\r\n", EHLO, "MAIL FROM:<a@s.test> REQUIRETLS\r\n"], vec!["220", "250", "220 2.0.0", "250", "250 2.1.0"]),
        ("REQUIRETLS needs EHLO", vec!["HELO c.test\r\n", "MAIL FROM:<a@s.test> REQUIRETLS\r\n"], vec!["220", "250", "555 5.5.4"]),
        ("parameters need EHLO", vec!["HELO c\r\n", "MAIL FROM:<a@s.test> SIZE=1\r\n"], vec!["220", "250", "555 5.5.4"]),
        ("UTF-8 address without SMTPUTF8", vec![EHLO, "MAIL FROM:<ü@s.test>\r\n"], vec!["220", "250", "553 5.6.7"]),
        (
            "UTF-8 addresses with SMTPUTF8",
            vec![EHLO, "MAIL FROM:<ü@s.test> SMTPUTF8\r\n", "RCPT TO:<ü@ours.test>\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5"],
        ),
        (
            "UTF-8 recipient in an ASCII transaction",
            vec![EHLO, MAIL, "RCPT TO:<ü@ours.test>\r\n"],
            vec!["220", "250", "250 2.1.0", "553 5.6.7"],
        ),
        (
            "BDAT chunks",
            vec![EHLO, MAIL, RCPT, "BDAT 5\r\nhello", "BDAT 2 LAST\r\n\r\n", "QUIT\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "221 2.0.0"],
        ),
        (
            "BDAT 0 LAST ends a chunked message",
            vec![EHLO, MAIL, RCPT, "BDAT 3\r\nx\r\n", "BDAT 0 LAST\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0"],
        ),
        (
            "BDAT without MAIL: the chunk is read, never run as commands",
            vec![EHLO, bdat_no_mail.as_str(), "NOOP\r\n"],
            vec!["220", "250", "503 5.5.1", "250 2.0.0"],
        ),
        (
            "BDAT too big",
            vec![EHLO, MAIL, RCPT, &bdat_big, "NOOP\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "552 5.3.4", "250 2.0.0"],
        ),
        (
            "bare LF in BDAT",
            vec![EHLO, MAIL, RCPT, "BDAT 4 LAST\r\na\nb\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "554 5.6.0"],
        ),
        (
            "DATA after BDAT",
            vec![EHLO, MAIL, RCPT, "BDAT 3\r\nx\r\n", "DATA\r\n"],
            vec!["220", "250", "250 2.1.0", "250 2.1.5", "250 2.0.0", "503 5.5.1"],
        ),
        ("BDAT syntax", vec![EHLO, "BDAT x\r\n"], vec!["220", "250", "501 5.5.4"]),
    ];
    for (name, segments, want) in &cases {
        let transcript = run(segments);
        assert_eq!(transcript.codes(), *want, "case {name:?}");
    }
}

#[test]
fn data_line_over_1000_octets() {
    let big = SessionConfig {
        max_message_size: 10_000,
        ..config()
    };
    let ok_line = format!("{}\r\n.\r\n", "y".repeat(998));
    let long_line = format!("{}\r\n.\r\n", "y".repeat(999));
    let t = run_with(big.clone(), &[EHLO, MAIL, RCPT, "DATA\r\n", &ok_line]);
    assert_eq!(t.codes()[5], "250 2.0.0");
    let t = run_with(big, &[EHLO, MAIL, RCPT, "DATA\r\n", &long_line, "NOOP\r\n"]);
    assert_eq!(t.codes()[4..], ["354", "554 5.6.0", "250 2.0.0"]);
}

#[test]
fn messages_carry_envelope_and_unstuffed_body() {
    let t = run(&[
        EHLO,
        "MAIL FROM:<> BODY=8BITMIME\r\n",
        RCPT,
        "RCPT TO:<c@ours.test>\r\n",
        "DATA\r\n",
        "..dot\r\nx\r\n.\r\n",
    ]);
    assert_eq!(t.messages.len(), 1);
    let (envelope, body) = &t.messages[0];
    assert_eq!(envelope.helo, "client.test");
    assert!(envelope.esmtp && !envelope.tls);
    assert_eq!(envelope.from, ReversePath::Null);
    assert_eq!(envelope.recipients.len(), 2);
    assert_eq!(envelope.transfer, Transfer::Data);
    assert_eq!(body, b".dot\r\nx\r\n");
    assert_eq!(
        t.replies.last().map(|r| r.text()),
        Some("Ok: queued as TEST".into())
    );

    let t = run(&[EHLO, "STARTTLS\r\n", EHLO, MAIL, RCPT, "BDAT 3 LAST\r\nabc"]);
    assert_eq!(t.tls_handshakes, 1);
    let (envelope, body) = &t.messages[0];
    assert!(envelope.tls);
    assert_eq!(envelope.transfer, Transfer::Bdat);
    assert_eq!(body, b"abc\r\n");
}

#[test]
fn smuggled_commands_never_become_transactions() {
    let t = run(&[
        EHLO,
        MAIL,
        RCPT,
        "DATA\r\n",
        "legit\r\n\n.\nMAIL FROM:<e@x.test>\r\nRCPT TO:<v@ours.test>\r\nDATA\r\nevil\r\n\n.\n",
        "\r\n.\r\n",
    ]);
    assert!(
        t.messages.is_empty(),
        "a smuggled message was accepted: {:?}",
        t.messages
    );
    assert_eq!(t.codes().last().map(String::as_str), Some("554 5.6.0"));
}

#[test]
fn ehlo_advertises_extensions_and_starttls_only_before_tls() {
    let t = run(&[EHLO, "STARTTLS\r\n", EHLO]);
    let before = &t.replies[1].lines;
    let after = &t.replies[3].lines;
    let want = [
        "PIPELINING",
        "SIZE 100",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "SMTPUTF8",
        "CHUNKING",
    ];
    assert_eq!(before[0], "mx.sealpost.test");
    assert_eq!(&before[1..], want);
    assert!(!after.iter().any(|l| l == "STARTTLS"));
    // RFC 8689 section 2: REQUIRETLS only once TLS is up.
    assert!(after.iter().any(|l| l == "REQUIRETLS"), "{after:?}");

    let plain = run_with(
        SessionConfig {
            tls_available: false,
            ..config()
        },
        &[EHLO, "STARTTLS\r\n"],
    );
    assert!(!plain.replies[1].lines.iter().any(|l| l == "STARTTLS"));
    assert_eq!(plain.codes()[2], "502 5.5.1");
}

#[test]
fn refusal_timeout_and_api_misuse() {
    let mut s = Session::new(Arc::new(config()));
    assert_eq!(
        s.answer(Verdict::Accept),
        Err(SessionError::NotAwaitingAnswer)
    );
    assert_eq!(s.tls_established(), Err(SessionError::NotAwaitingTls));
    s.refuse(Reply::new(421, (4, 7, 0), "Too many connections"));
    assert_eq!(s.take_output(), b"421 4.7.0 Too many connections\r\n");
    assert!(matches!(s.next_event(), sealpost::smtp::Event::Close));

    let mut s = Session::new(Arc::new(config()));
    s.take_output();
    s.timed_out();
    assert_eq!(
        s.take_output(),
        b"421 4.4.2 mx.sealpost.test Error: timeout exceeded\r\n"
    );
    assert!(matches!(s.next_event(), sealpost::smtp::Event::Close));

    let mut s = Session::new(Arc::new(config()));
    s.receive(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\n");
    assert!(matches!(s.next_event(), sealpost::smtp::Event::Helo { .. }));
    assert!(matches!(
        s.next_event(),
        sealpost::smtp::Event::MailFrom { .. }
    ));
    assert!(matches!(
        s.next_event(),
        sealpost::smtp::Event::AwaitingAnswer
    ));
    s.answer(Verdict::Accept).expect("pending");
    assert!(s.transaction().is_some());
    assert!(matches!(s.next_event(), sealpost::smtp::Event::NeedInput));
}

#[test]
fn limits_reached_are_reported_to_the_io_layer() {
    use sealpost::smtp::SessionLimit;
    let body = format!("{}\r\n.\r\n", "z".repeat(120));
    let t = run(&[
        EHLO,
        "MAIL FROM:<a@s.test> SIZE=101\r\n",
        MAIL,
        RCPT,
        RCPT,
        RCPT,
        RCPT,
        "DATA\r\n",
        &body,
        "MAIL FROM:<a@s.test>\r\n",
        RCPT,
        "BDAT 101 LAST\r\n",
        &"q".repeat(101),
        "NOOP\r\n",
    ]);
    assert_eq!(
        t.codes(),
        [
            "220",
            "250",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354",
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "552 5.3.4",
            "250 2.0.0",
        ]
    );
    assert_eq!(
        t.limits,
        [
            SessionLimit::MessageSize,
            SessionLimit::Recipients,
            SessionLimit::MessageSize,
            SessionLimit::MessageSize,
        ]
    );
    assert!(t.messages.is_empty());
}

#[test]
fn the_session_deadline_sends_421_4_4_2_and_closes_even_mid_data() {
    let mut s = Session::new(Arc::new(config()));
    s.receive(format!("{EHLO}{MAIL}{RCPT}DATA\r\npart of a body\r\n").as_bytes());
    loop {
        match s.next_event() {
            sealpost::smtp::Event::MailFrom { .. } | sealpost::smtp::Event::Rcpt { .. } => {
                s.answer(Verdict::Accept).expect("pending")
            }
            sealpost::smtp::Event::NeedInput => break,
            sealpost::smtp::Event::Helo { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    s.take_output();
    s.deadline_reached();
    let out = String::from_utf8(s.take_output()).expect("ascii");
    assert!(out.starts_with("421 4.4.2 "), "{out}");
    assert!(out.contains("time limit"), "{out}");
    assert!(matches!(s.next_event(), sealpost::smtp::Event::Close));
    s.receive(b".\r\n");
    assert!(matches!(s.next_event(), sealpost::smtp::Event::Close));
    assert!(s.transaction().is_none());
}

/// A server configured without REQUIRETLS (as the delivery tests play a
/// receiver that lacks it) neither advertises nor accepts it, even under
/// TLS.
#[test]
fn requiretls_can_be_left_out() {
    let t = run_with(
        SessionConfig {
            requiretls_available: false,
            ..config()
        },
        &[
            EHLO,
            "STARTTLS\r\n",
            EHLO,
            "MAIL FROM:<a@s.test> REQUIRETLS\r\n",
            MAIL,
        ],
    );
    assert!(
        !t.replies[3].lines.iter().any(|l| l == "REQUIRETLS"),
        "{:?}",
        t.replies[3]
    );
    assert_eq!(
        t.codes(),
        ["220", "250", "220 2.0.0", "250", "555 5.5.4", "250 2.1.0"]
    );
}
