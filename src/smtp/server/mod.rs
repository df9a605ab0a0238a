//! The inbound SMTP session as a sans-IO state machine: bytes in, replies
//! and events out.
//!
//! The I/O layer owns the socket, TLS and timers; it runs this loop:
//!
//! ```text
//! let mut s = Session::new(config);            // queues the 220 greeting
//! loop {
//!     match s.next_event() {
//!         Event::NeedInput => { write s.take_output(); read; s.receive(&bytes) }
//!         Event::Helo { .. } => {}              // informational
//!         Event::MailFrom { .. } | Event::Rcpt { .. } => s.answer(verdict)?,
//!         Event::Message { envelope, body } => { enqueue durably; s.answer(verdict)? }
//!         Event::StartTls => { write s.take_output(); handshake; s.tls_established() }
//!         Event::AwaitingAnswer => unreachable in this loop,
//!         Event::Close => { write s.take_output(); close; break }
//!     }
//! }
//! ```
//!
//! Rules encoded here:
//! - Command order (RFC 5321 section 4.1.4; 503 for a bad sequence), HELO or
//!   EHLO first, one MAIL per transaction, RSET and EHLO reset it.
//! - Pipelining (RFC 2920): commands are processed in order from whatever
//!   the peer sent; replies are batched until more input is needed.
//! - Recipients: at most `max_recipients`, then `452 4.5.3` (RFC 5321
//!   section 4.5.3.1.10); DATA with no accepted recipient gets `554`
//!   (RFC 2920 section 3.1), `503` if RCPT was never tried.
//! - STARTTLS (RFC 3207 section 4.2): after `220` any plaintext already
//!   received is discarded (command injection defence), and once TLS is up
//!   the session forgets HELO/EHLO and the transaction.
//! - Content: see [`super::data`] (smuggling defence, 552, line limit).
//! - Errors: after `max_errors` protocol errors or 5xx rejections the session
//!   answers `421 4.7.0` and closes.
//! - VRFY is disabled: `252 2.5.2` (RFC 5321 section 3.5.3).
//! - AUTH PLAIN and LOGIN (RFC 4954), when configured, only under TLS:
//!   see [`auth`].

mod auth;
mod commands;
mod types;

pub use types::{
    Envelope, Event, Recipient, SessionConfig, SessionError, SessionLimit, Transfer, Verdict,
};

pub(crate) use types::{AuthMechanism, Credentials, Transaction};

use auth::{AuthStep, MAX_AUTH_LINE};

use std::sync::Arc;

use super::address::{ForwardPath, ReversePath};
use super::command::{parse_command, CommandError, MailParams, RcptParams, MAX_COMMAND_LINE};
use super::data::{BdatReceiver, ContentError, DataProgress, DataReceiver};
use super::reply::Reply;

#[derive(Debug)]
enum Pending {
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Message,
    Auth {
        username: String,
    },
}

#[derive(Debug)]
enum Phase {
    Command,
    /// Dropping an overlong command line up to its LF.
    DiscardLine,
    Data(DataReceiver),
    Bdat {
        remaining: u64,
        last: bool,
        /// `None`: the chunk belongs to the transaction; `Some`: read and
        /// discard it, then send this reply.
        discard: Option<Reply>,
    },
    Pending(Pending),
    /// In an AUTH exchange, waiting for the client's next line.
    Auth(AuthStep),
    AwaitingTls,
    Closed,
}

/// One SMTP server session. See the module docs for the driving loop.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    phase: Phase,
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    helo: Option<(String, bool)>,
    tls: bool,
    transaction: Option<Transaction>,
    errors: u32,
    /// The user name accepted by AUTH.
    authenticated: Option<String>,
}

impl Session {
    /// A new session; the `220` greeting is already in the output.
    pub fn new(config: Arc<SessionConfig>) -> Session {
        let mut session = Session {
            phase: Phase::Command,
            input: Vec::new(),
            pos: 0,
            output: Vec::new(),
            helo: None,
            tls: false,
            transaction: None,
            errors: 0,
            authenticated: None,
            config,
        };
        let greeting = Reply::plain(220, format!("{} ESMTP sealpost", session.config.hostname));
        session.reply(greeting);
        session
    }

    /// Replaces the greeting with `reply` (e.g. `554` or `421` when a
    /// connection limit is hit) and closes.
    pub fn refuse(&mut self, reply: Reply) {
        self.output.clear();
        self.reply(reply);
        self.phase = Phase::Closed;
    }

    /// The I/O layer's read or data timeout fired: `421 4.4.2` and close.
    pub fn timed_out(&mut self) {
        let reply = Reply::new(
            421,
            (4, 4, 2),
            format!("{} Error: timeout exceeded", self.config.hostname),
        );
        self.reply(reply);
        self.phase = Phase::Closed;
    }

    /// The server is stopping (RFC 5321 section 3.8): `421 4.3.2` and
    /// close; a transaction in progress is abandoned (the client keeps the
    /// message and retries).
    pub(crate) fn shutting_down(&mut self) {
        let reply = Reply::new(
            421,
            (4, 3, 2),
            format!(
                "{} Service shutting down, try again later",
                self.config.hostname
            ),
        );
        self.reply(reply);
        self.transaction = None;
        self.phase = Phase::Closed;
    }

    /// The connection lived as long as it may (the I/O layer's session
    /// deadline): `421 4.4.2` and close, whatever the session was doing.
    pub fn deadline_reached(&mut self) {
        let reply = Reply::new(
            421,
            (4, 4, 2),
            format!(
                "{} Error: session time limit exceeded",
                self.config.hostname
            ),
        );
        self.reply(reply);
        self.transaction = None;
        self.phase = Phase::Closed;
    }

    /// Bytes received from the peer. Ignored after STARTTLS was accepted
    /// (until [`Session::tls_established`]) and after close.
    pub fn receive(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::AwaitingTls | Phase::Closed) {
            return;
        }
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Replies to send, in order.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Takes the replies to send, leaving the output empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The HELO/EHLO name, if one was given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_ref().map(|(name, _)| name.as_str())
    }

    /// The current transaction, if MAIL was accepted.
    pub fn transaction(&self) -> Option<&Transaction> {
        self.transaction.as_ref()
    }

    /// Content octets of the message in progress held by the session.
    pub(crate) fn body_buffered(&self) -> usize {
        self.transaction.as_ref().map_or(0, |t| t.body.len())
    }

    /// Takes the content received so far out of the session, for an I/O
    /// layer that spools a large message instead of holding it; the rest
    /// follows in [`Event::Message`]. The last two octets stay (the end of
    /// a BDAT message still looks at them), so pieces taken and the final
    /// body, in order, are the message.
    pub fn take_body(&mut self) -> Vec<u8> {
        let Some(t) = self.transaction.as_mut() else {
            return Vec::new();
        };
        let keep = t.body.len().min(2);
        let tail = t.body.split_off(t.body.len() - keep);
        std::mem::replace(&mut t.body, tail)
    }

    /// The user name AUTH succeeded with, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Protocol errors and rejections counted so far.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The TLS handshake after STARTTLS succeeded: the session starts over
    /// without HELO/EHLO (RFC 3207 section 4.2); no greeting is sent.
    pub fn tls_established(&mut self) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::AwaitingTls) {
            return Err(SessionError::NotAwaitingTls);
        }
        self.tls = true;
        self.helo = None;
        self.transaction = None;
        self.authenticated = None;
        self.input.clear();
        self.pos = 0;
        self.phase = Phase::Command;
        Ok(())
    }

    /// Answers the outstanding `MailFrom`, `Rcpt`, `Auth` or `Message` event.
    pub fn answer(&mut self, verdict: Verdict) -> Result<(), SessionError> {
        let Phase::Pending(pending) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return Err(SessionError::NotAwaitingAnswer);
        };
        let (accept, reply) = match verdict {
            Verdict::Accept => (true, None),
            Verdict::AcceptWith(reply) => (true, Some(reply)),
            Verdict::Reject(reply) => (false, Some(reply)),
        };
        let default = match (&pending, accept) {
            (Pending::Mail { .. }, _) => Reply::new(250, (2, 1, 0), "Ok"),
            (Pending::Rcpt { .. }, _) => Reply::new(250, (2, 1, 5), "Ok"),
            (Pending::Message, _) => Reply::new(250, (2, 0, 0), "Ok: queued"),
            (Pending::Auth { .. }, true) => Reply::new(235, (2, 7, 0), "Authentication successful"),
            (Pending::Auth { .. }, false) => {
                Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
            }
        };
        let reply = reply.unwrap_or(default);
        match pending {
            Pending::Mail { from, params } if accept => {
                self.transaction = Some(Transaction {
                    from,
                    params,
                    recipients: Vec::new(),
                    rcpt_attempts: 0,
                    bdat: None,
                    body: Vec::new(),
                });
            }
            Pending::Rcpt { to, params } if accept => {
                if let Some(t) = self.transaction.as_mut() {
                    t.recipients.push(Recipient { path: to, params });
                }
            }
            Pending::Message => self.transaction = None,
            Pending::Auth { username } if accept => self.authenticated = Some(username),
            _ => {}
        }
        if accept {
            self.reply(reply);
        } else {
            let closes = reply.code == 421;
            if reply.code >= 500 {
                self.errors += 1;
            }
            self.reply(reply);
            if closes {
                self.phase = Phase::Closed;
            } else {
                self.check_error_limit();
            }
        }
        Ok(())
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
    }

    /// Sends a protocol error reply and counts it.
    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        self.reply(reply);
        self.check_error_limit();
    }

    fn check_error_limit(&mut self) {
        if self.errors >= self.config.max_errors && !matches!(self.phase, Phase::Closed) {
            let text = format!("{} Error: too many errors", self.config.hostname);
            self.reply(Reply::new(421, (4, 7, 0), text));
            self.phase = Phase::Closed;
        }
    }

    /// Runs the machine over the buffered input until it needs something.
    pub fn next_event(&mut self) -> Event {
        loop {
            match &mut self.phase {
                Phase::Closed => return Event::Close,
                Phase::AwaitingTls => return Event::StartTls,
                Phase::Pending(_) => return Event::AwaitingAnswer,
                Phase::DiscardLine => {
                    let rest = &self.input[self.pos..];
                    match rest.iter().position(|&b| b == b'\n') {
                        None => {
                            self.pos = self.input.len();
                            return Event::NeedInput;
                        }
                        Some(nl) => {
                            self.pos += nl + 1;
                            self.phase = Phase::Command;
                            let len = MAX_COMMAND_LINE + 1;
                            self.error(CommandError::LineTooLong { len }.reply());
                        }
                    }
                }
                Phase::Auth(_) => {
                    let rest = &self.input[self.pos..];
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() >= MAX_AUTH_LINE {
                            // Ends the exchange: 500 once the line is over.
                            self.pos = self.input.len();
                            self.phase = Phase::DiscardLine;
                            continue;
                        }
                        return Event::NeedInput;
                    };
                    let line = rest[..nl].to_vec();
                    self.pos += nl + 1;
                    let Phase::Auth(step) = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        continue;
                    };
                    if line.len() + 1 > MAX_AUTH_LINE {
                        let text = "Authentication Exchange line is too long";
                        self.error(Reply::new(500, (5, 5, 6), text));
                        continue;
                    }
                    if let Some(event) = self.auth_line(step, &line) {
                        return event;
                    }
                }
                Phase::Data(rx) => {
                    let body = match self.transaction.as_mut() {
                        Some(t) => &mut t.body,
                        None => &mut Vec::new(),
                    };
                    match rx.receive(&self.input[self.pos..], body) {
                        DataProgress::NeedMore => {
                            self.pos = self.input.len();
                            return Event::NeedInput;
                        }
                        DataProgress::Done { consumed, result } => {
                            self.pos += consumed;
                            self.phase = Phase::Command;
                            match result {
                                Ok(()) => {
                                    if let Some(event) = self.complete_message(Transfer::Data) {
                                        return event;
                                    }
                                }
                                Err(e) => {
                                    self.transaction = None;
                                    self.reply(e.reply());
                                    if let Some(event) = limit_event(&e) {
                                        return event;
                                    }
                                }
                            }
                        }
                    }
                }
                Phase::Bdat {
                    remaining,
                    last,
                    discard,
                } => {
                    let available = (self.input.len() - self.pos) as u64;
                    let n = (*remaining).min(available) as usize;
                    let chunk = &self.input[self.pos..self.pos + n];
                    if discard.is_none() {
                        if let Some(t) = self.transaction.as_mut() {
                            let rx = t.bdat.get_or_insert_with(|| {
                                BdatReceiver::new(self.config.max_message_size)
                            });
                            rx.receive(chunk, &mut t.body);
                        }
                    }
                    self.pos += n;
                    *remaining -= n as u64;
                    if *remaining > 0 {
                        return Event::NeedInput;
                    }
                    let last = *last;
                    let discard = discard.take();
                    self.phase = Phase::Command;
                    if let Some(event) = self.complete_chunk(last, discard) {
                        return event;
                    }
                }
                Phase::Command => {
                    let rest = &self.input[self.pos..];
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() >= MAX_COMMAND_LINE {
                            self.pos = self.input.len();
                            self.phase = Phase::DiscardLine;
                            continue;
                        }
                        return Event::NeedInput;
                    };
                    let line_end = self.pos + nl;
                    let line_start = self.pos;
                    self.pos = line_end + 1;
                    let parsed = match self.input[line_start..line_end].strip_suffix(b"\r") {
                        Some(line) => parse_command(line),
                        None => Err(CommandError::BareLineFeed),
                    };
                    match parsed {
                        Ok(command) => {
                            if let Some(event) = self.command(command) {
                                return event;
                            }
                        }
                        Err(e) => self.error(e.reply()),
                    }
                }
            }
        }
    }

    fn complete_chunk(&mut self, last: bool, discard: Option<Reply>) -> Option<Event> {
        if let Some(reply) = discard {
            self.error(reply);
            return None;
        }
        let t = self.transaction.as_mut()?;
        let rx = t.bdat.as_mut()?;
        if let Some(e) = rx.error() {
            self.transaction = None;
            self.reply(e.reply());
            return limit_event(&e);
        }
        if !last {
            let size = rx.size();
            self.reply(Reply::new(
                250,
                (2, 0, 0),
                format!("Ok: {size} octets received"),
            ));
            return None;
        }
        if let Err(e) = rx.finish(&mut t.body) {
            self.transaction = None;
            self.reply(e.reply());
            return limit_event(&e);
        }
        self.complete_message(Transfer::Bdat)
    }

    fn complete_message(&mut self, transfer: Transfer) -> Option<Event> {
        let t = self.transaction.take()?;
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let envelope = Envelope {
            helo,
            esmtp,
            tls: self.tls,
            from: t.from,
            params: t.params,
            recipients: t.recipients,
            transfer,
        };
        self.phase = Phase::Pending(Pending::Message);
        Some(Event::Message {
            envelope,
            body: t.body,
        })
    }
}

/// The informational event for content refused for its size.
fn limit_event(error: &ContentError) -> Option<Event> {
    matches!(error, ContentError::TooBig { .. })
        .then_some(Event::LimitReached(SessionLimit::MessageSize))
}
