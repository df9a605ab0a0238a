//! SMTP commands: parsing one command line into sealpost's `Command`.
//!
//! Verbs are case-insensitive (RFC 5321 section 2.4). Command syntax:
//! RFC 5321 section 4.1.1; MAIL parameters SIZE (RFC 1870), BODY (RFC 6152),
//! SMTPUTF8 (RFC 6531); BDAT (RFC 3030); STARTTLS (RFC 3207). A command line
//! is at most 512 octets including CRLF (RFC 5321 section 4.5.3.1.4); the
//! session frames lines and enforces that, this module parses one line
//! without its CRLF. Every parse error maps to the reply RFC 5321 section
//! 4.2.4 asks for: 500 (unrecognised / line too long), 501 (bad arguments),
//! 502 (not implemented).

use thiserror::Error;

use super::address::{self, ForwardPath, PathError, ReversePath};
use super::reply::Reply;

/// Longest command line including CRLF, RFC 5321 4.5.3.1.4.
pub(crate) const MAX_COMMAND_LINE: usize = 512;

/// The BODY parameter of MAIL (RFC 6152). BINARYMIME is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// MAIL FROM parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// SIZE=n, the client's estimate of the message size (RFC 1870).
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    /// SMTPUTF8 (RFC 6531 3.4).
    pub smtputf8: bool,
    /// REQUIRETLS (RFC 8689 section 4): deliver only over authenticated
    /// TLS to servers that also advertise it.
    pub requiretls: bool,
    /// Every other parameter, keyword upper-cased, value as sent.
    pub other: Vec<(String, Option<String>)>,
}

/// RCPT TO parameters (none are interpreted yet: NOTIFY, ORCPT ... are kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    pub other: Vec<(String, Option<String>)>,
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo {
        domain: String,
    },
    Helo {
        domain: String,
    },
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Data,
    /// `BDAT size [LAST]` (RFC 3030 section 2).
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy {
        argument: String,
    },
    StartTls,
    Help {
        topic: Option<String>,
    },
    /// `AUTH mechanism [initial-response]` (RFC 4954 section 4); the
    /// mechanism upper-cased, the response as sent (base64, or `=`).
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
}

/// Which address a path error concerns, for the enhanced code
/// (RFC 3463: X.1.7 bad sender syntax, X.1.3 bad destination syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRole {
    Sender,
    Recipient,
}

/// Why a command line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("command line of {len} octets exceeds {MAX_COMMAND_LINE}")]
    LineTooLong { len: usize },
    #[error("command line ends in a bare LF")]
    BareLineFeed,
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    #[error("command {verb:?} not recognized")]
    Unrecognized { verb: String },
    #[error("command {verb} not implemented")]
    NotImplemented { verb: String },
    #[error("{verb} takes no argument")]
    UnexpectedArgument { verb: &'static str },
    #[error("{verb} needs an argument")]
    MissingArgument { verb: &'static str },
    #[error("{verb}: expected {expected:?}")]
    Syntax {
        verb: &'static str,
        expected: &'static str,
    },
    #[error("bad {role:?} address: {error}")]
    Path { role: PathRole, error: PathError },
    #[error("bad parameter {param:?}: {reason}")]
    Parameter { param: String, reason: &'static str },
}

impl CommandError {
    /// The reply a server sends for this error.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::LineTooLong { .. } => Reply::new(500, (5, 5, 2), "Error: line too long"),
            CommandError::BareLineFeed => Reply::new(
                500,
                (5, 5, 2),
                "Error: bare <LF> received, lines end in <CR><LF>",
            ),
            CommandError::NotUtf8 | CommandError::Unrecognized { .. } => {
                Reply::new(500, (5, 5, 2), "Error: command not recognized")
            }
            CommandError::NotImplemented { .. } => {
                Reply::new(502, (5, 5, 1), "Error: command not implemented")
            }
            CommandError::UnexpectedArgument { .. }
            | CommandError::MissingArgument { .. }
            | CommandError::Syntax { .. } => Reply::new(501, (5, 5, 4), format!("Syntax: {self}")),
            CommandError::Path { role, error } => {
                let detail = match role {
                    PathRole::Sender => 7,
                    PathRole::Recipient => 3,
                };
                Reply::new(501, (5, 1, detail), format!("Bad address syntax: {error}"))
            }
            CommandError::Parameter { .. } => Reply::new(501, (5, 5, 4), format!("Syntax: {self}")),
        }
    }
}

/// Verbs we know but do not offer (RFC 5321 4.2.4: 502).
const NOT_IMPLEMENTED: &[&str] = &["EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"];

/// Parses one command line without its CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    if line.len() + 2 > MAX_COMMAND_LINE {
        return Err(CommandError::LineTooLong {
            len: line.len() + 2,
        });
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let upper = verb.to_ascii_uppercase();
    let arg = rest.trim_matches(' ');
    let no_arg = |verb: &'static str, cmd: Command| {
        if arg.is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::UnexpectedArgument { verb })
        }
    };
    match upper.as_str() {
        "EHLO" | "HELO" => {
            let name: &'static str = if upper == "EHLO" { "EHLO" } else { "HELO" };
            let domain = arg.split(' ').next().unwrap_or("");
            if domain.is_empty() {
                return Err(CommandError::MissingArgument { verb: name });
            }
            // RFC 5321 4.1.1.1: a domain or an address literal. Be lenient
            // about the exact form (many clients send odd names) but reject
            // control characters.
            if domain.chars().any(char::is_control) {
                return Err(CommandError::Syntax {
                    verb: name,
                    expected: "a domain name or address literal",
                });
            }
            let domain = domain.to_string();
            Ok(if name == "EHLO" {
                Command::Ehlo { domain }
            } else {
                Command::Helo { domain }
            })
        }
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_arg("DATA", Command::Data),
        "BDAT" => parse_bdat(arg),
        "RSET" => no_arg("RSET", Command::Rset),
        // NOOP may carry a string, which is ignored (RFC 5321 4.1.1.9).
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_arg("QUIT", Command::Quit),
        "STARTTLS" => no_arg("STARTTLS", Command::StartTls),
        "VRFY" => {
            if arg.is_empty() {
                Err(CommandError::MissingArgument { verb: "VRFY" })
            } else {
                Ok(Command::Vrfy {
                    argument: arg.to_string(),
                })
            }
        }
        "AUTH" => parse_auth(arg),
        "HELP" => Ok(Command::Help {
            topic: (!arg.is_empty()).then(|| arg.to_string()),
        }),
        v if NOT_IMPLEMENTED.contains(&v) => Err(CommandError::NotImplemented { verb: upper }),
        _ => Err(CommandError::Unrecognized {
            verb: verb.chars().take(32).collect(),
        }),
    }
}

/// Strips `keyword:` (case-insensitive) and any spaces after the colon;
/// clients often send `MAIL FROM: <a@b>`, which we accept.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(rest[keyword.len()..].trim_start_matches(' '))
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    let after = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax {
        verb: "MAIL",
        expected: "MAIL FROM:<address>",
    })?;
    let path_error = |error| CommandError::Path {
        role: PathRole::Sender,
        error,
    };
    let (path, params) = address::split_path(after).map_err(path_error)?;
    let from = address::parse_reverse_path(path).map_err(path_error)?;
    let mut parsed = MailParams::default();
    for (keyword, value) in parse_params(params)? {
        let duplicate = || CommandError::Parameter {
            param: keyword.clone(),
            reason: "given twice",
        };
        match keyword.as_str() {
            "SIZE" => {
                if parsed.size.is_some() {
                    return Err(duplicate());
                }
                let size = value
                    .as_deref()
                    .filter(|v| {
                        !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(CommandError::Parameter {
                        param: keyword.clone(),
                        reason: "SIZE needs a decimal number",
                    })?;
                parsed.size = Some(size);
            }
            "BODY" => {
                if parsed.body.is_some() {
                    return Err(duplicate());
                }
                let body = match value.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    Some("7BIT") => BodyType::SevenBit,
                    Some("8BITMIME") => BodyType::EightBitMime,
                    _ => {
                        return Err(CommandError::Parameter {
                            param: keyword.clone(),
                            reason: "BODY must be 7BIT or 8BITMIME",
                        })
                    }
                };
                parsed.body = Some(body);
            }
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(CommandError::Parameter {
                        param: keyword.clone(),
                        reason: "SMTPUTF8 takes no value",
                    });
                }
                if parsed.smtputf8 {
                    return Err(duplicate());
                }
                parsed.smtputf8 = true;
            }
            "REQUIRETLS" => {
                if value.is_some() {
                    return Err(CommandError::Parameter {
                        param: keyword.clone(),
                        reason: "REQUIRETLS takes no value",
                    });
                }
                if parsed.requiretls {
                    return Err(duplicate());
                }
                parsed.requiretls = true;
            }
            _ => {
                if parsed.other.iter().any(|(k, _)| *k == keyword) {
                    return Err(duplicate());
                }
                parsed.other.push((keyword, value));
            }
        }
    }
    Ok(Command::Mail {
        from,
        params: parsed,
    })
}

/// `AUTH SP sasl-mech [SP initial-response]` (RFC 4954 section 4).
fn parse_auth(arg: &str) -> Result<Command, CommandError> {
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let Some(mechanism) = words.next() else {
        return Err(CommandError::MissingArgument { verb: "AUTH" });
    };
    let initial_response = words.next().map(str::to_string);
    // sasl-mech = 1*20(UPPER-ALPHA / DIGIT / "-" / "_") (RFC 4422 3.1).
    let mechanism_ok = mechanism.len() <= 20
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !mechanism_ok || words.next().is_some() {
        return Err(CommandError::Syntax {
            verb: "AUTH",
            expected: "AUTH mechanism [initial-response]",
        });
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response,
    })
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    let after = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax {
        verb: "RCPT",
        expected: "RCPT TO:<address>",
    })?;
    let path_error = |error| CommandError::Path {
        role: PathRole::Recipient,
        error,
    };
    let (path, params) = address::split_path(after).map_err(path_error)?;
    let to = address::parse_forward_path(path).map_err(path_error)?;
    let other = parse_params(params)?;
    Ok(Command::Rcpt {
        to,
        params: RcptParams { other },
    })
}

/// `esmtp-param *(SP esmtp-param)`; esmtp-keyword = (ALPHA / DIGIT)
/// *(ALPHA / DIGIT / "-"); esmtp-value = 1*(%d33-60 / %d62-126 / UTF-8)
/// (RFC 5321 4.1.2, RFC 6531 3.3).
fn parse_params(params: &str) -> Result<Vec<(String, Option<String>)>, CommandError> {
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(CommandError::Parameter {
            param: params.chars().take(32).collect(),
            reason: "parameters must follow the path after a space",
        });
    }
    let mut out = Vec::new();
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let keyword_ok = keyword
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && keyword
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| (c > ' ' && c != '=' && c != '\x7f') || !c.is_ascii())
        });
        if !keyword_ok || !value_ok {
            return Err(CommandError::Parameter {
                param: param.chars().take(64).collect(),
                reason: "malformed parameter",
            });
        }
        out.push((keyword.to_ascii_uppercase(), value.map(str::to_string)));
    }
    Ok(out)
}

fn parse_bdat(arg: &str) -> Result<Command, CommandError> {
    let bad = CommandError::Syntax {
        verb: "BDAT",
        expected: "BDAT <size> [LAST]",
    };
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(bad.clone())?;
    if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let size: u64 = size.parse().map_err(|_| bad.clone())?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(bad),
    };
    if words.next().is_some() {
        return Err(bad);
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::{Host, Mailbox};

    fn mailbox(s: &str) -> Mailbox {
        address::parse_mailbox(s).expect("valid mailbox")
    }

    #[test]
    fn parses_commands_table() {
        let cases: Vec<(&str, Command)> = vec![
            (
                "EHLO client.example",
                Command::Ehlo {
                    domain: "client.example".into(),
                },
            ),
            (
                "ehlo [192.0.2.1]",
                Command::Ehlo {
                    domain: "[192.0.2.1]".into(),
                },
            ),
            ("HeLo x", Command::Helo { domain: "x".into() }),
            (
                "MAIL FROM:<a@b.example>",
                Command::Mail {
                    from: ReversePath::Mailbox(mailbox("a@b.example")),
                    params: MailParams::default(),
                },
            ),
            (
                "mail from: <>",
                Command::Mail {
                    from: ReversePath::Null,
                    params: MailParams::default(),
                },
            ),
            (
                "MAIL FROM:<a@b> SIZE=10240 BODY=8BITMIME SMTPUTF8 REQUIRETLS ENVID=x+2Bid",
                Command::Mail {
                    from: ReversePath::Mailbox(mailbox("a@b")),
                    params: MailParams {
                        size: Some(10240),
                        body: Some(BodyType::EightBitMime),
                        smtputf8: true,
                        requiretls: true,
                        other: vec![("ENVID".into(), Some("x+2Bid".into()))],
                    },
                },
            ),
            (
                "MAIL FROM:<a@b> body=7bit",
                Command::Mail {
                    from: ReversePath::Mailbox(mailbox("a@b")),
                    params: MailParams {
                        body: Some(BodyType::SevenBit),
                        ..MailParams::default()
                    },
                },
            ),
            (
                "RCPT TO:<@hop.example:c@d.example> NOTIFY=NEVER",
                Command::Rcpt {
                    to: ForwardPath::Mailbox(mailbox("c@d.example")),
                    params: RcptParams {
                        other: vec![("NOTIFY".into(), Some("NEVER".into()))],
                    },
                },
            ),
            (
                "rcpt to:<Postmaster>",
                Command::Rcpt {
                    to: ForwardPath::Postmaster,
                    params: RcptParams::default(),
                },
            ),
            ("DATA", Command::Data),
            (
                "BDAT 1000",
                Command::Bdat {
                    size: 1000,
                    last: false,
                },
            ),
            (
                "bdat 0 last",
                Command::Bdat {
                    size: 0,
                    last: true,
                },
            ),
            ("RSET", Command::Rset),
            ("NOOP", Command::Noop),
            ("noop hello there", Command::Noop),
            ("QUIT", Command::Quit),
            (
                "VRFY postmaster",
                Command::Vrfy {
                    argument: "postmaster".into(),
                },
            ),
            ("STARTTLS", Command::StartTls),
            ("starttls", Command::StartTls),
            (
                "auth plain AGEAYg==",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial_response: Some("AGEAYg==".into()),
                },
            ),
            (
                "AUTH LOGIN",
                Command::Auth {
                    mechanism: "LOGIN".into(),
                    initial_response: None,
                },
            ),
            ("HELP", Command::Help { topic: None }),
            (
                "HELP MAIL",
                Command::Help {
                    topic: Some("MAIL".into()),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_command(line.as_bytes()), Ok(want), "{line}");
        }
    }

    #[test]
    fn rejects_with_the_right_reply() {
        let cases: &[(&str, u16, (u8, u16, u16))] = &[
            ("FOO bar", 500, (5, 5, 2)),
            ("", 500, (5, 5, 2)),
            ("EXPN list", 502, (5, 5, 1)),
            ("AUTH", 501, (5, 5, 4)),
            ("AUTH PLAIN abc extra", 501, (5, 5, 4)),
            ("AUTH PL@IN", 501, (5, 5, 4)),
            ("EHLO", 501, (5, 5, 4)),
            ("DATA now", 501, (5, 5, 4)),
            ("QUIT please", 501, (5, 5, 4)),
            ("STARTTLS x", 501, (5, 5, 4)),
            ("RSET x", 501, (5, 5, 4)),
            ("VRFY", 501, (5, 5, 4)),
            ("MAIL TO:<a@b>", 501, (5, 5, 4)),
            ("MAIL FROM:a@b", 501, (5, 1, 7)),
            ("MAIL FROM:<a@@b>", 501, (5, 1, 7)),
            ("RCPT TO:<>", 501, (5, 1, 3)),
            ("RCPT TO:<a b@c>", 501, (5, 1, 3)),
            ("MAIL FROM:<a@b> SIZE=abc", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> SIZE=1 SIZE=2", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> BODY=BINARYMIME", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> SMTPUTF8=yes", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> REQUIRETLS=yes", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> REQUIRETLS requiretls", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b>SIZE=1", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> =x", 501, (5, 5, 4)),
            ("MAIL FROM:<a@b> X=", 501, (5, 5, 4)),
            ("BDAT", 501, (5, 5, 4)),
            ("BDAT -1", 501, (5, 5, 4)),
            ("BDAT 10 FIRST", 501, (5, 5, 4)),
            ("BDAT 99999999999999999999999", 501, (5, 5, 4)),
        ];
        for (line, code, enhanced) in cases {
            let err = parse_command(line.as_bytes()).expect_err(line);
            let reply = err.reply();
            assert_eq!(reply.code, *code, "{line}: {err}");
            let e = reply.enhanced.expect("enhanced");
            assert_eq!((e.0, e.1, e.2), *enhanced, "{line}: {err}");
        }
    }

    #[test]
    fn line_length_limit_is_512_with_crlf() {
        let fits = format!("NOOP {}", "x".repeat(MAX_COMMAND_LINE - 2 - 5));
        assert_eq!(parse_command(fits.as_bytes()), Ok(Command::Noop));
        let long = format!("NOOP {}", "x".repeat(MAX_COMMAND_LINE - 2 - 4));
        assert_eq!(
            parse_command(long.as_bytes()),
            Err(CommandError::LineTooLong {
                len: MAX_COMMAND_LINE + 1
            })
        );
    }

    #[test]
    fn utf8_paths_are_parsed() {
        let cmd = parse_command("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8".as_bytes());
        let Ok(Command::Mail {
            from: ReversePath::Mailbox(m),
            params,
        }) = cmd
        else {
            panic!("unexpected {cmd:?}");
        };
        assert!(params.smtputf8);
        assert!(m.is_utf8());
        assert_eq!(m.host, Host::Domain("παράδειγμα.δοκιμή".into()));
        assert_eq!(
            parse_command(b"MAIL FROM:<\xff@x>"),
            Err(CommandError::NotUtf8)
        );
    }
}
