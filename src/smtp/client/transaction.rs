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
//! server lacks it) and REQUIRETLS (RFC 8689 section 4.2.1: the
//! parameter goes on MAIL FROM, and a server that does not advertise it
//! after STARTTLS is refused the message).

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
    /// The message was received with REQUIRETLS (RFC 8689): it goes only
    /// over authenticated TLS to a server advertising REQUIRETLS, and
    /// MAIL FROM carries the parameter.
    pub requiretls: bool,
}

impl OutboundMessage<'_> {
    /// True if any body byte has the high bit set.
    pub(crate) fn is_8bit(&self) -> bool {
        self.body.iter().any(|&b| b >= 0x80)
    }

    /// True if any address is non-ASCII (RFC 6531 section 3.4).
    pub(crate) fn needs_smtputf8(&self) -> bool {
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
    #[error("message requires REQUIRETLS and the server does not advertise it")]
    RequireTlsNotSupported,
    #[error("message requires REQUIRETLS and the connection's TLS is not authenticated")]
    RequireTlsUnauthenticated,
}

impl MessageRefusal {
    /// The enhanced status code for a DSN (RFC 3463).
    pub fn status(&self) -> (u8, u16, u16) {
        match self {
            MessageRefusal::EightBitUnsupported => (5, 6, 3),
            MessageRefusal::Smtputf8Unsupported => (5, 6, 7),
            MessageRefusal::TooBig { .. } => (5, 3, 4),
            MessageRefusal::NoRecipients => (5, 5, 1),
            // RFC 8689 section 4.2.1.
            MessageRefusal::RequireTlsNotSupported => (5, 7, 30),
            MessageRefusal::RequireTlsUnauthenticated => (5, 7, 10),
        }
    }

    /// A refusal because of the message's REQUIRETLS.
    pub(crate) fn is_requiretls(&self) -> bool {
        matches!(
            self,
            MessageRefusal::RequireTlsNotSupported | MessageRefusal::RequireTlsUnauthenticated
        )
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
    /// Parameters added to each RCPT command, by recipient.
    rcpt_params: Vec<String>,
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
        if message.requiretls && !caps.requiretls {
            return Err(MessageRefusal::RequireTlsNotSupported);
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
        if message.requiretls {
            mail.push_str(" REQUIRETLS");
        }
        mail.push_str("\r\n");
        Ok(Transaction {
            message,
            mail_command: mail.into_bytes(),
            rcpt_params: vec![String::new(); message.to.len()],
            pipelining: use_pipelining && caps.pipelining,
            awaiting: VecDeque::new(),
            mail_reply: None,
            rcpt_replies: vec![None; message.to.len()],
            data_reply: None,
            final_reply: None,
            closing: None,
        })
    }

    /// Adds `mail` to the MAIL command and `rcpt[i]` to the RCPT command
    /// of recipient `i`, each as ` PARAM` words, e.g. DSN parameters (RFC
    /// 3461) or the transfer extension's records.
    pub(crate) fn with_params(mut self, mail: &[String], rcpt: &[Vec<String>]) -> Transaction<'a> {
        if !mail.is_empty() {
            let end = self.mail_command.len().saturating_sub(2);
            let added: String = mail.iter().map(|p| format!(" {p}")).collect();
            self.mail_command.splice(end..end, added.into_bytes());
        }
        for (slot, params) in self.rcpt_params.iter_mut().zip(rcpt) {
            *slot = params.iter().map(|p| format!(" {p}")).collect();
        }
        self
    }

    fn rcpt_command(&self, i: usize, out: &mut Vec<u8>) {
        let params = self.rcpt_params.get(i).map_or("", String::as_str);
        out.extend_from_slice(format!("RCPT TO:{}{params}\r\n", self.message.to[i]).as_bytes());
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
    pub(crate) fn server_closing(&self) -> bool {
        self.closing.is_some()
    }

    fn any_accepted(&self) -> bool {
        self.rcpt_replies
            .iter()
            .any(|r| r.as_ref().is_some_and(Reply::is_positive))
    }

    /// Feeds the next reply; returns what to do next.
    pub(crate) fn on_reply(&mut self, reply: Reply) -> Step {
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
mod tests;
