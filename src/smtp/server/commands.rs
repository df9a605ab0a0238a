//! How the session reacts to each command: order checks (RFC 5321 4.1.4),
//! parameter checks (RFC 1870, 6152, 6531), the EHLO reply, STARTTLS.

use super::{Event, Pending, Phase, Session, SessionLimit};
use crate::smtp::address::{ForwardPath, ReversePath};
use crate::smtp::command::Command;
use crate::smtp::data::{BdatReceiver, DataReceiver};
use crate::smtp::reply::Reply;

pub(super) fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, (5, 5, 1), text)
}

impl Session {
    fn transaction_order_error(&self) -> Option<Reply> {
        if self.helo.is_none() {
            return Some(bad_sequence("Error: send HELO/EHLO first"));
        }
        let Some(t) = &self.transaction else {
            return Some(bad_sequence("Error: need MAIL command"));
        };
        if t.recipients.is_empty() {
            if t.rcpt_attempts > 0 {
                return Some(Reply::new(554, (5, 5, 1), "Error: no valid recipients"));
            }
            return Some(bad_sequence("Error: need RCPT command"));
        }
        None
    }

    fn unsupported_param(&self, params: &[(String, Option<String>)]) -> Option<Reply> {
        let unknown = params.iter().find(|(k, _)| {
            // MAIL's AUTH= (RFC 4954 section 5) is accepted and ignored
            // where AUTH is offered.
            let auth_param = self.config.auth_available && k.eq_ignore_ascii_case("AUTH");
            !auth_param
                && !self
                    .config
                    .extra_params
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(k))
        })?;
        Some(Reply::new(
            555,
            (5, 5, 4),
            format!("Unsupported parameter {}", unknown.0),
        ))
    }

    pub(super) fn command(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Ehlo { domain } => {
                self.transaction = None;
                self.helo = Some((domain.clone(), true));
                let reply = self.ehlo_reply();
                self.reply(reply);
                Some(Event::Helo {
                    domain,
                    esmtp: true,
                })
            }
            Command::Helo { domain } => {
                self.transaction = None;
                self.helo = Some((domain.clone(), false));
                self.reply(Reply::plain(250, self.config.hostname.clone()));
                Some(Event::Helo {
                    domain,
                    esmtp: false,
                })
            }
            Command::Mail { from, params } => {
                let esmtp = self.helo.as_ref().is_some_and(|(_, esmtp)| *esmtp);
                let has_params = params.size.is_some()
                    || params.body.is_some()
                    || params.smtputf8
                    || params.requiretls;
                let refusal = if self.helo.is_none() {
                    Some(bad_sequence("Error: send HELO/EHLO first"))
                } else if self.transaction.is_some() {
                    Some(bad_sequence("Error: nested MAIL command"))
                } else if !esmtp && (has_params || !params.other.is_empty()) {
                    Some(Reply::new(555, (5, 5, 4), "Parameters need EHLO"))
                } else if let Some(reply) = self.unsupported_param(&params.other) {
                    Some(reply)
                } else if params.requiretls && !self.config.requiretls_available {
                    Some(Reply::new(555, (5, 5, 4), "REQUIRETLS is not supported"))
                } else if params.requiretls && !self.tls {
                    // RFC 8689 section 4.1: REQUIRETLS is offered, and
                    // accepted, only in a TLS session.
                    Some(Reply::new(
                        530,
                        (5, 7, 10),
                        "REQUIRETLS needs a TLS session: send STARTTLS first",
                    ))
                } else if params
                    .size
                    .is_some_and(|s| s > self.config.max_message_size)
                {
                    Some(Reply::new(
                        552,
                        (5, 3, 4),
                        "Message size exceeds fixed maximum message size",
                    ))
                } else if matches!(&from, ReversePath::Mailbox(m) if m.is_utf8())
                    && !params.smtputf8
                {
                    Some(Reply::new(
                        553,
                        (5, 6, 7),
                        "Non-ASCII address needs SMTPUTF8",
                    ))
                } else {
                    None
                };
                if let Some(reply) = refusal {
                    if reply.code == 552 {
                        // A limit, not a protocol error.
                        self.reply(reply);
                        return Some(Event::LimitReached(SessionLimit::MessageSize));
                    }
                    self.error(reply);
                    return None;
                }
                self.phase = Phase::Pending(Pending::Mail {
                    from: from.clone(),
                    params: params.clone(),
                });
                Some(Event::MailFrom { from, params })
            }
            Command::Rcpt { to, params } => {
                let refusal = match (&self.helo, &self.transaction) {
                    (None, _) => Some(bad_sequence("Error: send HELO/EHLO first")),
                    (_, None) => Some(bad_sequence("Error: need MAIL command")),
                    (_, Some(t)) => {
                        let utf8 = matches!(&to, ForwardPath::Mailbox(m) if m.is_utf8());
                        if let Some(reply) = self.unsupported_param(&params.other) {
                            Some(reply)
                        } else if utf8 && !t.params.smtputf8 {
                            Some(Reply::new(
                                553,
                                (5, 6, 7),
                                "Non-ASCII address needs SMTPUTF8",
                            ))
                        } else {
                            None
                        }
                    }
                };
                if let Some(reply) = refusal {
                    self.error(reply);
                    return None;
                }
                let t = self.transaction.as_mut()?;
                if t.recipients.len() >= self.config.max_recipients {
                    // Not an error: the client sends the rest later (RFC 5321 4.5.3.1.10).
                    self.reply(Reply::new(452, (4, 5, 3), "Error: too many recipients"));
                    return Some(Event::LimitReached(SessionLimit::Recipients));
                }
                t.rcpt_attempts += 1;
                self.phase = Phase::Pending(Pending::Rcpt {
                    to: to.clone(),
                    params: params.clone(),
                });
                Some(Event::Rcpt { to, params })
            }
            Command::Data => {
                if let Some(reply) = self.transaction_order_error() {
                    self.error(reply);
                } else if self.transaction.as_ref().is_some_and(|t| t.bdat.is_some()) {
                    self.error(bad_sequence("Error: DATA not allowed after BDAT"));
                } else {
                    self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
                    self.phase = Phase::Data(DataReceiver::new(self.config.max_message_size));
                }
                None
            }
            Command::Bdat { size, last } => {
                let discard = self.transaction_order_error();
                if size == 0 && discard.is_none() {
                    if let Some(t) = self.transaction.as_mut() {
                        t.bdat
                            .get_or_insert_with(|| BdatReceiver::new(self.config.max_message_size));
                    }
                }
                self.phase = Phase::Bdat {
                    remaining: size,
                    last,
                    discard,
                };
                None
            }
            Command::Rset => {
                self.transaction = None;
                self.reply(Reply::new(250, (2, 0, 0), "Ok"));
                None
            }
            Command::Noop => {
                self.reply(Reply::new(250, (2, 0, 0), "Ok"));
                None
            }
            Command::Quit => {
                self.reply(Reply::new(221, (2, 0, 0), "Bye"));
                self.phase = Phase::Closed;
                Some(Event::Close)
            }
            Command::Vrfy { .. } => {
                let text = "Cannot VRFY user, but will accept message and attempt delivery";
                self.reply(Reply::new(252, (2, 5, 2), text));
                None
            }
            Command::Help { .. } => {
                let text =
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS HELP";
                self.reply(Reply::new(214, (2, 0, 0), text));
                None
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth_command(mechanism, initial_response),
            Command::StartTls => {
                if self.tls {
                    self.error(bad_sequence("Error: TLS already active"));
                    None
                } else if !self.config.tls_available {
                    self.error(Reply::new(502, (5, 5, 1), "Error: command not implemented"));
                    None
                } else if self.helo.is_none() {
                    self.error(bad_sequence("Error: send EHLO first"));
                    None
                } else {
                    self.reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
                    // RFC 3207 4.2 / CVE-2011-0411: drop anything pipelined after STARTTLS.
                    self.input.clear();
                    self.pos = 0;
                    self.phase = Phase::AwaitingTls;
                    Some(Event::StartTls)
                }
            }
        }
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            self.config.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.config.tls_available && !self.tls {
            lines.push("STARTTLS".to_string());
        }
        // RFC 4954 section 4 allows AUTH before TLS; offering it only
        // under TLS keeps passwords off plaintext connections.
        if self.config.auth_available && self.tls {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines.push("SMTPUTF8".to_string());
        lines.push("CHUNKING".to_string());
        // RFC 8689 section 2: advertised only after TLS is established.
        if self.tls && self.config.requiretls_available {
            lines.push("REQUIRETLS".to_string());
        }
        lines.extend(self.config.extensions.iter().cloned());
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }
}
