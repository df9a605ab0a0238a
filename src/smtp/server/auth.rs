//! SMTP AUTH in the session (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
//! mechanisms: only after EHLO, only under TLS (`538 5.7.11` otherwise,
//! RFC 4954 section 6), not during a transaction and not twice (`503`).
//! Challenges and responses are base64 lines (section 4); `*` cancels
//! (`501 5.7.0`). The credentials go to the caller as [`Event::Auth`];
//! its verdict becomes `235 2.7.0` or the refusal (`535 5.7.8`), which
//! counts toward the session's error limit like every other 5xx.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::commands::bad_sequence;
use super::{Event, Pending, Phase, Session};
use crate::smtp::command::CommandError;
use crate::smtp::reply::Reply;
use crate::smtp::server::{AuthMechanism, Credentials};

/// Longest line of an AUTH exchange, CRLF included (RFC 4954 section 4).
pub(super) const MAX_AUTH_LINE: usize = 12_288;

/// What the next client line answers.
#[derive(Debug)]
pub(super) enum AuthStep {
    /// PLAIN after an empty challenge.
    Plain,
    /// LOGIN: the user name.
    LoginUsername,
    /// LOGIN: the password for this user name.
    LoginPassword { username: String },
}

/// `Username:` and `Password:`, the prompts LOGIN clients expect.
const USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
const PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

impl Session {
    /// The AUTH command.
    pub(super) fn auth_command(
        &mut self,
        mechanism: String,
        initial_response: Option<String>,
    ) -> Option<Event> {
        let refusal = if !self.config.auth_available {
            Some(Reply::new(502, (5, 5, 1), "Error: command not implemented"))
        } else if self.helo.is_none() {
            Some(bad_sequence("Error: send EHLO first"))
        } else if !self.tls {
            Some(Reply::new(
                538,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            ))
        } else if self.authenticated.is_some() {
            Some(bad_sequence("Error: already authenticated"))
        } else if self.transaction.is_some() {
            Some(bad_sequence(
                "Error: AUTH not permitted during a mail transaction",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.error(reply);
            return None;
        }
        let (mechanism, first_step) = match mechanism.as_str() {
            "PLAIN" => (AuthMechanism::Plain, AuthStep::Plain),
            "LOGIN" => (AuthMechanism::Login, AuthStep::LoginUsername),
            _ => {
                self.error(Reply::new(
                    504,
                    (5, 5, 4),
                    "Unrecognized authentication type",
                ));
                return None;
            }
        };
        match initial_response {
            Some(response) => self.auth_data(first_step, &response),
            None => {
                // An empty PLAIN challenge is written `334` (RFC 5321 4.2).
                let prompt = match mechanism {
                    AuthMechanism::Plain => "",
                    AuthMechanism::Login => USERNAME_PROMPT,
                };
                self.reply(Reply::plain(334, prompt));
                self.phase = Phase::Auth(first_step);
                None
            }
        }
    }

    /// One client line during the exchange, without its LF.
    pub(super) fn auth_line(&mut self, step: AuthStep, line: &[u8]) -> Option<Event> {
        let Some(line) = line.strip_suffix(b"\r") else {
            self.error(CommandError::BareLineFeed.reply());
            return None;
        };
        match std::str::from_utf8(line) {
            Ok("*") => {
                self.error(Reply::new(501, (5, 7, 0), "Authentication cancelled"));
                None
            }
            Ok(text) => self.auth_data(step, text),
            Err(_) => {
                self.error(Reply::new(501, (5, 5, 2), "Cannot decode response"));
                None
            }
        }
    }

    /// A base64 response (`=` is the empty one) to `step`.
    fn auth_data(&mut self, step: AuthStep, text: &str) -> Option<Event> {
        let decoded = if text == "=" {
            Ok(Vec::new())
        } else {
            STANDARD.decode(text.trim())
        };
        let Ok(data) = decoded else {
            self.error(Reply::new(501, (5, 5, 2), "Cannot decode response"));
            return None;
        };
        let credentials = match step {
            AuthStep::Plain => parse_plain(&data),
            AuthStep::LoginUsername => {
                match String::from_utf8(data).ok().filter(|u| !u.is_empty()) {
                    Some(username) => {
                        self.reply(Reply::plain(334, PASSWORD_PROMPT));
                        self.phase = Phase::Auth(AuthStep::LoginPassword { username });
                    }
                    None => self.error(Reply::new(501, (5, 5, 2), "Cannot decode response")),
                }
                return None;
            }
            AuthStep::LoginPassword { username } => String::from_utf8(data)
                .ok()
                .map(|password| Credentials::new(AuthMechanism::Login, None, username, password)),
        };
        let Some(credentials) = credentials else {
            self.error(Reply::new(501, (5, 5, 2), "Cannot decode response"));
            return None;
        };
        self.phase = Phase::Pending(Pending::Auth {
            username: credentials.username.clone(),
        });
        Some(Event::Auth { credentials })
    }
}

/// `[authzid] NUL authcid NUL passwd` in UTF-8 (RFC 4616 section 2).
fn parse_plain(data: &[u8]) -> Option<Credentials> {
    let mut parts = data.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).ok();
    let (authzid, username, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if username.is_empty() || password.is_empty() {
        return None;
    }
    Some(Credentials::new(
        AuthMechanism::Plain,
        (!authzid.is_empty()).then_some(authzid),
        username,
        password,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::smtp::server::{SessionConfig, Verdict};

    fn config(auth: bool) -> SessionConfig {
        SessionConfig {
            hostname: "mx.test".into(),
            max_errors: 4,
            tls_available: true,
            auth_available: auth,
            ..SessionConfig::default()
        }
    }

    /// A session after EHLO, STARTTLS and EHLO again (when `tls`).
    fn session(auth: bool, tls: bool) -> Session {
        let mut s = Session::new(Arc::new(config(auth)));
        s.receive(b"EHLO client.test\r\n");
        assert!(matches!(s.next_event(), Event::Helo { .. }));
        if tls {
            s.receive(b"STARTTLS\r\n");
            assert!(matches!(s.next_event(), Event::StartTls));
            s.tls_established().expect("awaiting TLS");
            s.receive(b"EHLO client.test\r\n");
            assert!(matches!(s.next_event(), Event::Helo { .. }));
        }
        let _ = s.take_output();
        s
    }

    /// Feeds `input`, answers every `Auth` with `verdict` (recording the
    /// credentials) and every MAIL with Accept; returns the reply lines.
    fn run(s: &mut Session, input: &str, verdict: &Verdict) -> (Vec<String>, Vec<Credentials>) {
        s.receive(input.as_bytes());
        let mut seen = Vec::new();
        loop {
            match s.next_event() {
                Event::Auth { credentials } => {
                    seen.push(credentials);
                    s.answer(verdict.clone()).expect("pending");
                }
                Event::MailFrom { .. } => s.answer(Verdict::Accept).expect("pending"),
                Event::NeedInput | Event::Close => break,
                Event::Helo { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let out = String::from_utf8(s.take_output()).expect("utf-8");
        (out.lines().map(str::to_string).collect(), seen)
    }

    fn b64(data: &[u8]) -> String {
        STANDARD.encode(data)
    }

    #[test]
    fn offered_and_accepted_only_under_tls() {
        let mut plain = session(true, false);
        let (ehlo, _) = run(&mut plain, "EHLO again.test\r\n", &Verdict::Accept);
        assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
        let (lines, seen) = run(
            &mut plain,
            &format!("AUTH PLAIN {}\r\n", b64(b"\0u\0p")),
            &Verdict::Accept,
        );
        assert_eq!(
            lines,
            ["538 5.7.11 Encryption required for requested authentication mechanism"]
        );
        assert!(seen.is_empty());

        let mut off = session(false, true);
        let (ehlo, _) = run(&mut off, "EHLO again.test\r\n", &Verdict::Accept);
        assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
        let (lines, _) = run(&mut off, "AUTH LOGIN\r\n", &Verdict::Accept);
        assert_eq!(lines, ["502 5.5.1 Error: command not implemented"]);

        let mut tls = session(true, true);
        let (ehlo, _) = run(&mut tls, "EHLO again.test\r\n", &Verdict::Accept);
        assert!(ehlo.iter().any(|l| l == "250-AUTH PLAIN LOGIN"), "{ehlo:?}");
    }

    #[test]
    fn plain_and_login_exchanges() {
        let table: &[(&str, &[&str])] = &[
            // PLAIN with an initial response.
            (
                "AUTH PLAIN AHJlbGF5QHQAc2VjcmV0\r\n",
                &["235 2.7.0 Authentication successful"],
            ),
            // PLAIN after an empty challenge.
            (
                "AUTH plain\r\nAHJlbGF5QHQAc2VjcmV0\r\n",
                &["334", "235 2.7.0 Authentication successful"],
            ),
            // LOGIN, both prompts.
            (
                "AUTH LOGIN\r\ncmVsYXlAdA==\r\nc2VjcmV0\r\n",
                &[
                    "334 VXNlcm5hbWU6",
                    "334 UGFzc3dvcmQ6",
                    "235 2.7.0 Authentication successful",
                ],
            ),
            // LOGIN with the user name as initial response.
            (
                "AUTH LOGIN cmVsYXlAdA==\r\nc2VjcmV0\r\n",
                &["334 UGFzc3dvcmQ6", "235 2.7.0 Authentication successful"],
            ),
        ];
        for (input, want) in table {
            let mut s = session(true, true);
            let (lines, seen) = run(&mut s, input, &Verdict::Accept);
            assert_eq!(&lines, want, "{input:?}");
            assert_eq!(seen.len(), 1, "{input:?}");
            assert_eq!(
                (seen[0].username.as_str(), seen[0].password()),
                ("relay@t", "secret")
            );
            assert_eq!(s.authenticated(), Some("relay@t"));
            // Once is enough; MAIL may carry AUTH= (RFC 4954 section 5).
            let (lines, _) = run(
                &mut s,
                "AUTH PLAIN AHJlbGF5QHQAc2VjcmV0\r\nMAIL FROM:<a@t> AUTH=<>\r\nAUTH LOGIN\r\n",
                &Verdict::Accept,
            );
            assert_eq!(
                lines,
                [
                    "503 5.5.1 Error: already authenticated",
                    "250 2.1.0 Ok",
                    "503 5.5.1 Error: already authenticated",
                ]
            );
        }
    }

    #[test]
    fn refusals_and_malformed_exchanges() {
        let table: &[(&str, &str)] = &[
            (
                "AUTH CRAM-MD5\r\n",
                "504 5.5.4 Unrecognized authentication type",
            ),
            ("AUTH PLAIN\r\n*\r\n", "501 5.7.0 Authentication cancelled"),
            ("AUTH PLAIN !!!\r\n", "501 5.5.2 Cannot decode response"),
            ("AUTH PLAIN =\r\n", "501 5.5.2 Cannot decode response"),
            (
                "AUTH PLAIN dXNlcg==\r\n",
                "501 5.5.2 Cannot decode response",
            ),
            ("AUTH LOGIN\r\n=\r\n", "501 5.5.2 Cannot decode response"),
            (
                "AUTH PLAIN\r\nAHUAcA==\n",
                "500 5.5.2 Error: bare <LF> received, lines end in <CR><LF>",
            ),
            (
                "MAIL FROM:<a@t>\r\nAUTH PLAIN AHUAcA==\r\n",
                "503 5.5.1 Error: AUTH not permitted during a mail transaction",
            ),
        ];
        for (input, want) in table {
            let mut s = session(true, true);
            let (lines, seen) = run(&mut s, input, &Verdict::Accept);
            assert_eq!(
                lines.last().map(String::as_str),
                Some(*want),
                "{input:?}: {lines:?}"
            );
            assert!(seen.is_empty(), "{input:?}");
            assert_eq!(s.authenticated(), None);
            assert_eq!(s.errors(), 1, "{input:?}");
        }
        // Before EHLO.
        let mut s = Session::new(Arc::new(config(true)));
        let (lines, _) = run(&mut s, "AUTH LOGIN\r\n", &Verdict::Accept);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("503 5.5.1 Error: send EHLO first")
        );
        // The session goes on normally after a cancelled exchange.
        let mut s = session(true, true);
        let (lines, _) = run(&mut s, "AUTH LOGIN\r\n*\r\nNOOP\r\n", &Verdict::Accept);
        assert_eq!(lines.last().map(String::as_str), Some("250 2.0.0 Ok"));
    }

    #[test]
    fn failed_attempts_count_toward_the_error_limit() {
        let mut s = session(true, true);
        let refuse = Verdict::Reject(Reply::new(
            535,
            (5, 7, 8),
            "Authentication credentials invalid",
        ));
        let attempt = "AUTH PLAIN AHJlbGF5QHQAd3Jvbmc=\r\n";
        let (lines, seen) = run(&mut s, &attempt.repeat(5), &refuse);
        assert_eq!(seen.len(), 4, "the fifth is never read");
        assert_eq!(
            lines,
            [
                "535 5.7.8 Authentication credentials invalid",
                "535 5.7.8 Authentication credentials invalid",
                "535 5.7.8 Authentication credentials invalid",
                "535 5.7.8 Authentication credentials invalid",
                "421 4.7.0 mx.test Error: too many errors",
            ]
        );
        assert_eq!(s.authenticated(), None);
        // A temporary failure (454) is not a protocol error.
        let mut s = session(true, true);
        let later = Verdict::Reject(Reply::new(
            454,
            (4, 7, 0),
            "Temporary authentication failure",
        ));
        let (lines, _) = run(&mut s, attempt, &later);
        assert_eq!(lines, ["454 4.7.0 Temporary authentication failure"]);
        assert_eq!(s.errors(), 0);
    }

    #[test]
    fn overlong_exchange_lines_end_it() {
        let long = "A".repeat(MAX_AUTH_LINE + 10);
        // Arriving whole.
        let mut s = session(true, true);
        let (lines, _) = run(
            &mut s,
            &format!("AUTH PLAIN\r\n{long}\r\nNOOP\r\n"),
            &Verdict::Accept,
        );
        assert_eq!(
            lines,
            [
                "334",
                "500 5.5.6 Authentication Exchange line is too long",
                "250 2.0.0 Ok"
            ]
        );
        // Arriving in pieces: dropped up to its end.
        let mut s = session(true, true);
        let (lines, _) = run(&mut s, &format!("AUTH PLAIN\r\n{long}"), &Verdict::Accept);
        assert_eq!(lines, ["334"]);
        let (lines, _) = run(&mut s, "AAAA\r\nNOOP\r\n", &Verdict::Accept);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("500 5.5.2"), "{lines:?}");
        assert_eq!(lines[1], "250 2.0.0 Ok");
        assert_eq!(s.authenticated(), None);
    }

    #[test]
    fn plain_responses() {
        let ok = parse_plain(b"\0relay@t\0secret").expect("valid");
        assert_eq!(
            (ok.authzid.as_deref(), ok.username.as_str(), ok.password()),
            (None, "relay@t", "secret")
        );
        let proxy = parse_plain(b"admin\0relay@t\0secret").expect("valid");
        assert_eq!(proxy.authzid.as_deref(), Some("admin"));
        for bad in [
            &b""[..],
            b"relay@t\0secret",
            b"\0\0secret",
            b"\0relay@t\0",
            b"\0relay@t\0sec\0ret",
            b"\0rel\xffay\0secret",
        ] {
            assert!(parse_plain(bad).is_none(), "{bad:?}");
        }
        assert!(!format!("{ok:?}").contains("secret"));
    }
}
