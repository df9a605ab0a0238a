//! Property tests: SMTP input split at arbitrary byte boundaries gives the
//! same result as the same input in one piece (DATA receiver, reply parser,
//! whole server sessions); dot-stuffing round-trips; parsers never panic.
mod support;

use proptest::prelude::*;
use sealpost::smtp::{
    encode_data, parse_command, reply::parse_reply, DataProgress, DataReceiver, ReplyParser,
    SessionConfig,
};
use support::smtp::{accept_all, run_script};

/// Cuts `bytes` at the given (sorted, deduplicated) points.
fn cut(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points {
        pieces.push(bytes[start..p].to_vec());
        start = p;
    }
    pieces.push(bytes[start..].to_vec());
    pieces
}

/// Where the data ended (input offset, result), and the body.
type Received = (
    Option<(usize, Result<(), sealpost::smtp::ContentError>)>,
    Vec<u8>,
);

fn receive_all(pieces: &[Vec<u8>], max: u64) -> Received {
    let mut rx = DataReceiver::new(max);
    let mut body = Vec::new();
    let mut offset = 0;
    for piece in pieces {
        match rx.receive(piece, &mut body) {
            DataProgress::NeedMore => offset += piece.len(),
            DataProgress::Done { consumed, result } => {
                return (Some((offset + consumed, result)), body)
            }
        }
    }
    (None, body)
}

/// Bytes rich in the characters that matter to DATA: CR, LF, dots.
fn data_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(b'a'),
            3 => Just(b'.'),
            3 => Just(b'\r'),
            3 => Just(b'\n'),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

/// Command and content pieces a client (or attacker) might send.
fn script_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "EHLO c.test\r\n",
        "HELO c.test\r\n",
        "MAIL FROM:<a@s.test>\r\n",
        "MAIL FROM:<a@s.test> SIZE=50\r\n",
        "RCPT TO:<b@ours.test>\r\n",
        "DATA\r\n",
        "BDAT 4\r\n",
        "BDAT 3 LAST\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "VRFY x\r\n",
        "STARTTLS\r\n",
        "AUTH PLAIN AHUAcA==\r\n",
        "AUTH LOGIN\r\n",
        "dXNlcg==\r\n",
        "*\r\n",
        "HELP\r\n",
        "bogus\r\n",
        "line of text\r\n",
        "..stuffed\r\n",
        ".\r\n",
        "\n.\n",
        "\r.\r",
        "bare\nlf",
        "xy",
        "QUIT\r\n",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn data_receiver_is_split_invariant(input in data_bytes(), points in prop::collection::vec(any::<usize>(), 0..8), max in 0u64..150) {
        let whole = receive_all(std::slice::from_ref(&input), max);
        let split = receive_all(&cut(&input, &points), max);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn data_ends_only_at_crlf_dot_crlf(input in data_bytes()) {
        let mut wire = b"\r\n".to_vec(); // the DATA command's CRLF
        wire.extend_from_slice(&input);
        if let (Some((consumed, _)), _) = receive_all(std::slice::from_ref(&input), u64::MAX) {
            prop_assert!(wire[..consumed + 2].ends_with(b"\r\n.\r\n"), "ended at {consumed} in {input:?}");
            // and it is the first such terminator
            let first = wire.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 5 - 2);
            prop_assert_eq!(first, Some(consumed));
        } else {
            prop_assert!(!wire.windows(5).any(|w| w == b"\r\n.\r\n"));
        }
    }

    #[test]
    fn dot_stuffing_round_trips(lines in prop::collection::vec("[a-z. ]{0,40}", 0..20)) {
        let original: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
        let mut wire = Vec::new();
        for line in &lines {
            if line.starts_with('.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        let (done, body) = receive_all(&[wire.clone()], u64::MAX);
        prop_assert_eq!(done, Some((wire.len(), Ok(()))));
        prop_assert_eq!(body, original);
    }

    #[test]
    fn encode_data_round_trips(lines in prop::collection::vec("[a-z. ]{0,40}", 0..20), tail in "[a-z.]{0,5}") {
        let mut body: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
        body.extend_from_slice(tail.as_bytes());
        let mut wire = Vec::new();
        encode_data(&body, &mut wire);
        let (done, received) = receive_all(&[wire.clone()], u64::MAX);
        prop_assert_eq!(done, Some((wire.len(), Ok(()))));
        if !tail.is_empty() {
            body.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(received, body);
    }

    #[test]
    fn sessions_are_split_invariant(
        segments in prop::collection::vec(prop::collection::vec(script_piece(), 1..6), 1..10),
        points in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let segments: Vec<Vec<u8>> = segments.iter().map(|s| s.concat().into_bytes()).collect();
        let config = SessionConfig { max_message_size: 60, max_recipients: 2, max_errors: 8, tls_available: true, auth_available: true, ..SessionConfig::default() };
        let whole = run_script(config.clone(), &segments, &|s| vec![s.to_vec()], &accept_all);
        let split = run_script(config, &segments, &|s| cut(s, &points), &accept_all);
        prop_assert_eq!(&whole.replies, &split.replies);
        prop_assert_eq!(&whole.messages, &split.messages);
        prop_assert_eq!(whole.closed, split.closed);
        for (_, body) in &whole.messages {
            prop_assert!(!body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF stored");
        }
    }

    #[test]
    fn reply_parser_is_split_invariant(codes in prop::collection::vec((200u16..560, 1usize..4), 1..6), points in prop::collection::vec(any::<usize>(), 0..6)) {
        let mut wire = Vec::new();
        for (code, lines) in &codes {
            for i in 0..*lines {
                let sep = if i + 1 == *lines { ' ' } else { '-' };
                wire.extend_from_slice(format!("{code}{sep}line {i}\r\n").as_bytes());
            }
        }
        let parse = |pieces: Vec<Vec<u8>>| {
            let mut parser = ReplyParser::new();
            let mut out = Vec::new();
            for piece in pieces {
                parser.push(&piece);
                while let Some(r) = parser.next_reply() {
                    out.push(r);
                }
            }
            out
        };
        let whole = parse(vec![wire.clone()]);
        prop_assert_eq!(whole.len(), codes.len());
        prop_assert_eq!(whole, parse(cut(&wire, &points)));
    }

    #[test]
    fn parsers_never_panic(line in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_command(&line);
        let _ = parse_reply(&line);
    }

    #[test]
    fn mail_commands_never_panic(s in "(?i)(mail from:|rcpt to:)[<>\"@.a-z\\\\:, =\\[\\]0-9]{0,60}") {
        let _ = parse_command(s.as_bytes());
    }
}

/// Feeds `input` to a session in `pieces`, answering everything with
/// Accept; after each piece, when `take[i]` says so, the content so far is
/// taken out as a spooling I/O layer does. Returns each message's content:
/// the pieces taken, then the final body.
fn messages_with_takes(input: &[u8], points: &[usize], take: &[bool]) -> Vec<Vec<u8>> {
    use sealpost::smtp::{Event, Session, Verdict};
    let mut session = Session::new(std::sync::Arc::new(SessionConfig::default()));
    let mut messages = Vec::new();
    let mut taken = Vec::new();
    for (i, piece) in cut(input, points).iter().enumerate() {
        session.receive(piece);
        loop {
            match session.next_event() {
                Event::NeedInput => break,
                Event::MailFrom { .. } | Event::Rcpt { .. } => {
                    taken.clear();
                    session.answer(Verdict::Accept).expect("answer");
                }
                Event::Message { body, .. } => {
                    taken.extend_from_slice(&body);
                    messages.push(std::mem::take(&mut taken));
                    session.answer(Verdict::Accept).expect("answer");
                }
                Event::Close => return messages,
                _ => {}
            }
        }
        if take.get(i).copied().unwrap_or(false) {
            taken.extend(session.take_body());
        }
        let _ = session.take_output();
    }
    messages
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Content taken out of the session while it arrives (the spool), then
    /// the rest, is exactly the message the session would have held whole,
    /// for DATA and for BDAT (whose end looks at the last octets).
    #[test]
    fn content_taken_while_it_arrives_is_the_whole_message(
        content in data_bytes(),
        chunk in 1usize..40,
        points in prop::collection::vec(any::<usize>(), 0..12),
        take in prop::collection::vec(any::<bool>(), 0..14),
    ) {
        let lines: Vec<u8> = content
            .split(|&b| b == b'\n' || b == b'\r')
            .flat_map(|line| {
                let mut l: Vec<u8> = line.iter().filter(|&&b| b != b'.').copied().collect();
                l.extend_from_slice(b"\r\n");
                l
            })
            .collect();
        let mut data = b"EHLO c.test\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@o.test>\r\nDATA\r\n".to_vec();
        data.extend_from_slice(&lines);
        data.extend_from_slice(b".\r\n");
        let mut bdat = b"EHLO c.test\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<b@o.test>\r\n".to_vec();
        let mut rest = &content[..];
        while rest.len() > chunk {
            bdat.extend_from_slice(format!("BDAT {chunk}\r\n").as_bytes());
            bdat.extend_from_slice(&rest[..chunk]);
            rest = &rest[chunk..];
        }
        bdat.extend_from_slice(format!("BDAT {} LAST\r\n", rest.len()).as_bytes());
        bdat.extend_from_slice(rest);
        let whole_data = messages_with_takes(&data, &[], &[]);
        prop_assert_eq!(whole_data.len(), 1, "DATA of clean lines is accepted");
        for script in [data, bdat] {
            let whole = messages_with_takes(&script, &[], &[]);
            let taken = messages_with_takes(&script, &points, &take);
            // (A BDAT body with a bare CR is refused: no message either way.)
            prop_assert!(whole.len() <= 1);
            prop_assert_eq!(taken, whole);
        }
    }
}
