//! One mail transaction as a state machine over [`Reply`]s, free of I/O.
//!
//! MAIL FROM, one RCPT per recipient, DATA when at least one recipient was
//! accepted, the dot-stuffed body ([`encode_data`]) and the final reply
//! (RFC 5321 sections 3.3 and 4.1.1.2–4.1.1.4). With PIPELINING (RFC 2920
//! section 3.1) MAIL, every RCPT and DATA go out in one write and the
//! replies are paired with them in order; when the server answers DATA with
//! 354 although no recipient was accepted, the client sends a lone `.` and
//! ignores the reply (RFC 2920 section 3.1).
//!
//! Before anything is sent, [`Transaction::new`] checks what the message
//! needs against the server's EHLO capabilities: SIZE (RFC 1870: the
//! declared size, a refusal when over the server's limit), 8-bit content
//! (RFC 6152: `BODY=8BITMIME`, a permanent refusal when the server lacks
//! 8BITMIME; sealpost does not downgrade to 7 bit) and SMTPUTF8 (RFC 6531
//! section 3.4: a permanent refusal when the envelope needs it and the
//! server lacks it).

use std::collections::VecDeque;

use super::super::address::{ForwardPath, ReversePath};
use super::super::data::encode_data;
use super::super::ehlo::EhloCapabilities;
use super::super::reply::Reply;

/// A message to send: envelope and body (CRLF line ends, as stored).
#[derive(Debug, Clone, Copy)]
pub struct OutboundMessage<'a> {
    pub from: &'a ReversePath,
    pub to: &'a [ForwardPath],
    pub body: &'a [u8],
}

impl OutboundMessage<'_> {
    /// True if any body byte has the high bit set.
    pub fn is_8bit(&self) -> bool {
        self.body.iter().any(|&b| b >= 0x80)
    }

    /// True if any address is non-ASCII (RFC 6531 section 3.4).
    pub fn needs_smtputf8(&self) -> bool {
        let from = matches!(self.from, ReversePath::Mailbox(m) if m.is_utf8());
        from || self
            .to
            .iter()
            .any(|t| matches!(t, ForwardPath::Mailbox(m) if m.is_utf8()))
    }
}

/// Why a message was not offered to this server at all. Each is permanent
/// for this server: the engine fails the recipients (or tries another MX).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageRefusal {
    #[error("message has 8-bit content and the server does not advertise 8BITMIME")]
    EightBitUnsupported,
    #[error("envelope has non-ASCII addresses and the server does not advertise SMTPUTF8")]
    Smtputf8Unsupported,
    #[error("message is {size} octets, the server accepts at most {limit}")]
    TooBig { size: u64, limit: u64 },
    #[error("message has no recipients")]
    NoRecipients,
}

impl MessageRefusal {
    /// The enhanced status code for a DSN (RFC 3463).
    pub fn status(&self) -> (u8, u16, u16) {
        match self {
            MessageRefusal::EightBitUnsupported => (5, 6, 3),
            MessageRefusal::Smtputf8Unsupported => (5, 6, 7),
            MessageRefusal::TooBig { .. } => (5, 3, 4),
            MessageRefusal::NoRecipients => (5, 5, 1),
        }
    }
}

/// The result for one recipient, with the reply that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// 2xx to the final reply after the body.
    Delivered(Reply),
    /// 4xx (or an unexpected reply): retry later.
    TempFail(Reply),
    /// 5xx: do not retry.
    PermFail(Reply),
}

impl RecipientOutcome {
    fn failure(reply: &Reply) -> RecipientOutcome {
        if reply.is_permanent() {
            RecipientOutcome::PermFail(reply.clone())
        } else {
            RecipientOutcome::TempFail(reply.clone())
        }
    }

    /// The deciding reply.
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Delivered(r)
            | RecipientOutcome::TempFail(r)
            | RecipientOutcome::PermFail(r) => r,
        }
    }
}

/// Which reply the transaction waits for (the I/O layer picks the RFC 5321
/// 4.5.3.2 timeout from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    Mail,
    Rcpt(usize),
    Data,
    /// The reply after `<CRLF>.<CRLF>`.
    Body,
    /// The reply to a lone `.` sent after an unwanted 354.
    Discard,
}

/// The transaction's next step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes, then read the next reply.
    Send(Vec<u8>),
    /// Read the next reply.
    Read,
    /// The transaction is over; [`Transaction::outcomes`] has the results.
    Done,
}

/// One MAIL transaction.
#[derive(Debug)]
pub struct Transaction<'a> {
    message: OutboundMessage<'a>,
    mail_command: Vec<u8>,
    pipelining: bool,
    awaiting: VecDeque<Awaiting>,
    mail_reply: Option<Reply>,
    rcpt_replies: Vec<Option<Reply>>,
    data_reply: Option<Reply>,
    final_reply: Option<Reply>,
    /// The 421 with which the server announced it is closing the channel
    /// (RFC 5321 section 3.8).
    closing: Option<Reply>,
}

impl<'a> Transaction<'a> {
    /// Checks the message against `caps` and prepares the commands.
    /// `use_pipelining` lets the caller turn PIPELINING off even when
    /// advertised.
    pub fn new(
        message: OutboundMessage<'a>,
        caps: &EhloCapabilities,
        use_pipelining: bool,
    ) -> Result<Transaction<'a>, MessageRefusal> {
        if message.to.is_empty() {
            return Err(MessageRefusal::NoRecipients);
        }
        let size = message.body.len() as u64;
        if let Some(limit) = caps.size_limit() {
            if size > limit {
                return Err(MessageRefusal::TooBig { size, limit });
            }
        }
        let eight_bit = message.is_8bit();
        if eight_bit && !caps.eight_bit_mime {
            return Err(MessageRefusal::EightBitUnsupported);
        }
        let utf8 = message.needs_smtputf8();
        if utf8 && !caps.smtputf8 {
            return Err(MessageRefusal::Smtputf8Unsupported);
        }
        let mut mail = format!("MAIL FROM:{}", message.from);
        if caps.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        Ok(Transaction {
            message,
            mail_command: mail.into_bytes(),
            pipelining: use_pipelining && caps.pipelining,
            awaiting: VecDeque::new(),
            mail_reply: None,
            rcpt_replies: vec![None; message.to.len()],
            data_reply: None,
            final_reply: None,
            closing: None,
        })
    }

    fn rcpt_command(&self, i: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("RCPT TO:{}\r\n", self.message.to[i]).as_bytes());
    }

    /// The first write: MAIL, or with PIPELINING MAIL + RCPTs + DATA.
    pub fn start(&mut self) -> Step {
        let mut out = self.mail_command.clone();
        self.awaiting.push_back(Awaiting::Mail);
        if self.pipelining {
            for i in 0..self.message.to.len() {
                self.rcpt_command(i, &mut out);
                self.awaiting.push_back(Awaiting::Rcpt(i));
            }
            out.extend_from_slice(b"DATA\r\n");
            self.awaiting.push_back(Awaiting::Data);
        }
        Step::Send(out)
    }

    /// The reply the transaction waits for next, if any.
    pub fn awaiting(&self) -> Option<Awaiting> {
        self.awaiting.front().copied()
    }

    /// True once the server said it is closing (421, RFC 5321 3.8): the
    /// connection must not be reused.
    pub fn server_closing(&self) -> bool {
        self.closing.is_some()
    }

    fn any_accepted(&self) -> bool {
        self.rcpt_replies
            .iter()
            .any(|r| r.as_ref().is_some_and(Reply::is_positive))
    }

    /// Feeds the next reply; returns what to do next.
    pub fn on_reply(&mut self, reply: Reply) -> Step {
        let Some(what) = self.awaiting.pop_front() else {
            return Step::Done;
        };
        if reply.code == 421 {
            // The server closes after this reply: nothing more will come.
            self.closing = Some(reply.clone());
            self.awaiting.clear();
            match what {
                Awaiting::Mail => self.mail_reply = Some(reply),
                Awaiting::Rcpt(i) => self.rcpt_replies[i] = Some(reply),
                Awaiting::Data => self.data_reply = Some(reply),
                Awaiting::Body => self.final_reply = Some(reply),
                Awaiting::Discard => {}
            }
            return Step::Done;
        }
        match what {
            Awaiting::Mail => {
                let ok = reply.is_positive();
                self.mail_reply = Some(reply);
                if !self.pipelining {
                    if !ok {
                        return Step::Done;
                    }
                    let mut out = Vec::new();
                    self.rcpt_command(0, &mut out);
                    self.awaiting.push_back(Awaiting::Rcpt(0));
                    return Step::Send(out);
                }
            }
            Awaiting::Rcpt(i) => {
                self.rcpt_replies[i] = Some(reply);
                if !self.pipelining {
                    let mut out = Vec::new();
                    if i + 1 < self.message.to.len() {
                        self.rcpt_command(i + 1, &mut out);
                        self.awaiting.push_back(Awaiting::Rcpt(i + 1));
                    } else if self.any_accepted() {
                        out.extend_from_slice(b"DATA\r\n");
                        self.awaiting.push_back(Awaiting::Data);
                    } else {
                        return Step::Done;
                    }
                    return Step::Send(out);
                }
            }
            Awaiting::Data => {
                let go = reply.code == 354;
                self.data_reply = Some(reply);
                if go {
                    let mut out = Vec::new();
                    let mail_ok = self.mail_reply.as_ref().is_some_and(Reply::is_positive);
                    if mail_ok && self.any_accepted() {
                        encode_data(self.message.body, &mut out);
                        self.awaiting.push_back(Awaiting::Body);
                    } else {
                        out.extend_from_slice(b".\r\n");
                        self.awaiting.push_back(Awaiting::Discard);
                    }
                    return Step::Send(out);
                }
            }
            Awaiting::Body => self.final_reply = Some(reply),
            Awaiting::Discard => {}
        }
        if self.awaiting.is_empty() {
            Step::Done
        } else {
            Step::Read
        }
    }

    /// One outcome per recipient, in envelope order. A recipient whose
    /// command got no reply (the server closed with 421 first) is a
    /// temporary failure with that 421.
    pub fn outcomes(&self) -> Vec<RecipientOutcome> {
        let fallback = self
            .closing
            .clone()
            .unwrap_or_else(|| Reply::new(451, (4, 4, 2), "transaction not completed"));
        let mail = self.mail_reply.as_ref();
        (0..self.message.to.len())
            .map(|i| {
                if let Some(m) = mail.filter(|m| !m.is_positive()) {
                    return RecipientOutcome::failure(m);
                }
                match &self.rcpt_replies[i] {
                    Some(r) if !r.is_positive() => return RecipientOutcome::failure(r),
                    None => return RecipientOutcome::failure(&fallback),
                    Some(_) => {}
                }
                match (&self.data_reply, &self.final_reply) {
                    (_, Some(f)) if f.is_positive() => RecipientOutcome::Delivered(f.clone()),
                    (_, Some(f)) => RecipientOutcome::failure(f),
                    (Some(d), None) if d.code != 354 => RecipientOutcome::failure(d),
                    _ => RecipientOutcome::failure(&fallback),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
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
            let msg = OutboundMessage { from: &from, to: &to, body: b"BODY\r\n" };
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
}
