//! The DSN builder (see the module docs of [`crate::dsn`]).

use crate::smtp::{EnhancedCode, Mailbox, Reply, ReversePath};

use super::text::{clean, field, wrap};
use crate::date::rfc5322_date;

/// What happened to a recipient (RFC 3464 section 2.3.3); sealpost reports
/// only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanent failure, or the queue lifetime ran out.
    Failed,
    /// Still being retried (a delay warning).
    Delayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// One recipient's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address the delivery was attempted to (`local@domain`).
    pub final_recipient: String,
    /// The address as the sender gave it (RFC 3461 ORCPT), when known.
    pub original_recipient: Option<String>,
    pub action: Action,
    /// The RFC 3463 status, e.g. 5.1.1 (from the reply, or the local reason).
    pub status: EnhancedCode,
    /// The MX host that answered, when one did.
    pub remote_mta: Option<String>,
    /// The remote reply, when there was one.
    pub diagnostic: Option<Reply>,
    /// Unix time of the last attempt.
    pub last_attempt: Option<u64>,
    /// Unix time until which a delayed recipient is retried.
    pub will_retry_until: Option<u64>,
    /// Why, when no remote server said so (e.g. a TLS policy refusal);
    /// shown as `X-Sealpost` Diagnostic-Code.
    pub local_reason: Option<String>,
}

impl RecipientReport {
    /// A report for a recipient a remote server refused (or, for
    /// `Delayed`, deferred) with `reply`; the status is the reply's enhanced
    /// code, else the class default `5.0.0` / `4.0.0` (RFC 3463 section 3.1).
    pub fn from_reply(
        final_recipient: impl Into<String>,
        action: Action,
        reply: &Reply,
        remote_mta: Option<String>,
        last_attempt: u64,
    ) -> RecipientReport {
        RecipientReport {
            final_recipient: final_recipient.into(),
            original_recipient: None,
            action,
            status: status_of(reply),
            remote_mta,
            diagnostic: Some(reply.clone()),
            last_attempt: Some(last_attempt),
            will_retry_until: None,
            local_reason: None,
        }
    }
}

/// The enhanced status code of a reply, or the default for its class.
pub fn status_of(reply: &Reply) -> EnhancedCode {
    match reply.enhanced {
        Some(e) => e,
        None if reply.is_permanent() => EnhancedCode(5, 0, 0),
        None => EnhancedCode(4, 0, 0),
    }
}

/// Everything a DSN is built from.
#[derive(Debug, Clone, Copy)]
pub struct DsnInput<'a> {
    /// Our host name (Reporting-MTA, From, Message-ID).
    pub reporting_mta: &'a str,
    /// The original message's envelope sender; the DSN goes there.
    pub original_sender: &'a ReversePath,
    /// Unix time the original message arrived.
    pub arrival_date: u64,
    /// Unix time now (the DSN's Date).
    pub now: u64,
    pub recipients: &'a [RecipientReport],
    /// The original message (only its header section is included).
    pub original_message: &'a [u8],
    /// Return none of the original message, not even its header section:
    /// it was received with REQUIRETLS and the DSN may travel over a path
    /// without it (RFC 8689 section 5).
    pub redact: bool,
}

/// A DSN ready to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Always `<>`.
    pub envelope_from: ReversePath,
    /// The original sender.
    pub recipient: Mailbox,
    pub message_id: String,
    /// The whole message, CRLF line ends.
    pub message: Vec<u8>,
}

/// What [`build`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnOutcome {
    Bounce(Dsn),
    /// The original sender was `<>`: never bounce a bounce (RFC 5321
    /// section 4.5.5, RFC 3464 section 1).
    NoBounceForNullSender,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("a DSN needs at least one recipient report")]
    NoRecipients,
    #[error("no MIME boundary absent from the content after {tries} tries")]
    NoBoundary { tries: u32 },
    #[error("no system randomness for the boundary and Message-ID")]
    Random,
}

/// Builds the DSN for `input`, with fresh random boundary and Message-ID.
pub fn build(input: &DsnInput<'_>) -> Result<DsnOutcome, DsnError> {
    let rng = ring::rand::SystemRandom::new();
    build_with(input, &mut || {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut bytes).map_err(|_| DsnError::Random)?;
        Ok(bytes)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`build`] with the randomness given (tests use it to force boundary
/// collisions).
pub(crate) fn build_with(
    input: &DsnInput<'_>,
    random: &mut dyn FnMut() -> Result<[u8; 16], DsnError>,
) -> Result<DsnOutcome, DsnError> {
    let ReversePath::Mailbox(sender) = input.original_sender else {
        return Ok(DsnOutcome::NoBounceForNullSender);
    };
    if input.recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    let host = clean(input.reporting_mta, true);
    let explanation = explanation(input, &host);
    let status = delivery_status(input, &host);
    let headers = if input.redact {
        String::new()
    } else {
        original_headers(input.original_message)
    };

    const TRIES: u32 = 8;
    let mut boundary = None;
    for _ in 0..TRIES {
        let candidate = format!("=_sealpost_{}", hex(&random()?));
        let clash = [&explanation, &status, &headers]
            .iter()
            .any(|part| contains(part.as_bytes(), candidate.as_bytes()));
        if !clash {
            boundary = Some(candidate);
            break;
        }
    }
    let boundary = boundary.ok_or(DsnError::NoBoundary { tries: TRIES })?;
    let message_id = format!("<{}.dsn@{host}>", hex(&random()?));

    let all_delayed = input.recipients.iter().all(|r| r.action == Action::Delayed);
    let subject = if all_delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Undelivered Mail Returned to Sender"
    };
    let mut m = String::new();
    m.push_str(&field(
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    ));
    m.push_str(&field(
        "To",
        &format!("<{}>", clean(&sender.to_string(), false)),
    ));
    m.push_str(&field("Subject", subject));
    m.push_str(&field("Date", &rfc5322_date(input.now)));
    m.push_str(&field("Message-ID", &message_id));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    m.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
    m.push_str("Content-Description: Notification\r\n\r\n");
    m.push_str(&explanation);
    m.push_str(&format!("\r\n--{boundary}\r\n"));
    m.push_str("Content-Type: message/delivery-status\r\n");
    m.push_str("Content-Description: Delivery report\r\n\r\n");
    m.push_str(&status);
    if !input.redact {
        m.push_str(&format!("\r\n--{boundary}\r\n"));
        m.push_str("Content-Type: text/rfc822-headers\r\n");
        m.push_str("Content-Description: Undelivered message headers\r\n\r\n");
        m.push_str(&headers);
    }
    m.push_str(&format!("\r\n--{boundary}--\r\n"));

    Ok(DsnOutcome::Bounce(Dsn {
        envelope_from: ReversePath::Null,
        recipient: sender.clone(),
        message_id,
        message: m.into_bytes(),
    }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One line per recipient: what happened and the remote reply.
fn explanation(input: &DsnInput<'_>, host: &str) -> String {
    let mut t = wrap(&format!("This is the mail system at host {host}."));
    t.push_str("\r\n");
    let failed = input.recipients.iter().any(|r| r.action == Action::Failed);
    let delayed = input.recipients.iter().any(|r| r.action == Action::Delayed);
    if failed && input.redact {
        t.push_str(&wrap(
            "Your message could not be delivered to one or more recipients. \
             It asked for REQUIRETLS, so none of it is returned here.",
        ));
    } else if failed {
        t.push_str(&wrap(
            "Your message could not be delivered to one or more recipients. \
             It is attached below (headers only).",
        ));
    }
    if delayed {
        t.push_str(&wrap(
            "Delivery to one or more recipients is delayed. The mail system \
             will keep trying; you do not need to send the message again.",
        ));
    }
    for r in input.recipients {
        t.push_str("\r\n");
        let mut line = format!(
            "<{}>: {} ({})",
            clean(&r.final_recipient, true),
            r.action.as_str(),
            r.status
        );
        if let Some(mta) = &r.remote_mta {
            line.push_str(&format!(", host {}", clean(mta, true)));
        }
        if let Some(reply) = &r.diagnostic {
            line.push_str(&format!(" said: {}", diagnostic(reply)));
        } else if let Some(reason) = &r.local_reason {
            line.push_str(&format!(": {reason}"));
        }
        if let Some(until) = r.will_retry_until {
            line.push_str(&format!("; retried until {}", rfc5322_date(until)));
        }
        t.push_str(&wrap(&clean(&line, true)));
    }
    t
}

fn diagnostic(reply: &Reply) -> String {
    let text = match reply.enhanced {
        Some(e) => format!("{} {e} {}", reply.code, reply.text()),
        None => format!("{} {}", reply.code, reply.text()),
    };
    clean(&text, true)
}

/// RFC 3464 section 2.1: per-message fields, then one block per recipient,
/// blocks separated by blank lines.
fn delivery_status(input: &DsnInput<'_>, host: &str) -> String {
    let mut s = field("Reporting-MTA", &format!("dns; {host}"));
    s.push_str(&field("Arrival-Date", &rfc5322_date(input.arrival_date)));
    for r in input.recipients {
        s.push_str("\r\n");
        s.push_str(&field(
            "Final-Recipient",
            &format!("rfc822; {}", clean(&r.final_recipient, true)),
        ));
        if let Some(orig) = &r.original_recipient {
            s.push_str(&field(
                "Original-Recipient",
                &format!("rfc822; {}", clean(orig, true)),
            ));
        }
        s.push_str(&field("Action", r.action.as_str()));
        s.push_str(&field("Status", &r.status.to_string()));
        if let Some(mta) = &r.remote_mta {
            s.push_str(&field("Remote-MTA", &format!("dns; {}", clean(mta, true))));
        }
        if let Some(reply) = &r.diagnostic {
            s.push_str(&field(
                "Diagnostic-Code",
                &format!("smtp; {}", diagnostic(reply)),
            ));
        } else if let Some(reason) = &r.local_reason {
            s.push_str(&field(
                "Diagnostic-Code",
                &format!("X-Sealpost; {}", clean(reason, true)),
            ));
        }
        if let Some(at) = r.last_attempt {
            s.push_str(&field("Last-Attempt-Date", &rfc5322_date(at)));
        }
        if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            s.push_str(&field("Will-Retry-Until", &rfc5322_date(until)));
        }
    }
    s
}

/// The header section of the original message with CRLF line ends, lines
/// cut at 998 octets; non-UTF-8 bytes replaced.
fn original_headers(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let mut out = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let mut end = line.len().min(998);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&line[..end].replace('\r', " "));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Host;

    fn input<'a>(
        sender: &'a ReversePath,
        recipients: &'a [RecipientReport],
        original: &'a [u8],
    ) -> DsnInput<'a> {
        DsnInput {
            reporting_mta: "gw.test",
            original_sender: sender,
            arrival_date: 0,
            now: 60,
            recipients,
            original_message: original,
            redact: false,
        }
    }

    fn report() -> RecipientReport {
        RecipientReport {
            final_recipient: "bob@dest.test".into(),
            original_recipient: None,
            action: Action::Failed,
            status: EnhancedCode(5, 1, 1),
            remote_mta: None,
            diagnostic: None,
            last_attempt: None,
            will_retry_until: None,
            local_reason: None,
        }
    }

    #[test]
    fn boundary_avoids_content() {
        let sender = ReversePath::Mailbox(Mailbox {
            local_part: "a".into(),
            host: Host::Domain("src.test".into()),
        });
        // The original headers contain the first two candidate boundaries.
        let first = format!("=_sealpost_{}", hex(&[1u8; 16]));
        let second = format!("=_sealpost_{}", hex(&[2u8; 16]));
        let original = format!("X-A: {first}\r\nX-B: {second}\r\n\r\nbody\r\n");
        let reports = [report()];
        let mut n = 0u8;
        let mut random = || {
            n += 1;
            Ok([n; 16])
        };
        let DsnOutcome::Bounce(dsn) =
            build_with(&input(&sender, &reports, original.as_bytes()), &mut random).expect("built")
        else {
            panic!("bounce expected");
        };
        let text = String::from_utf8(dsn.message).expect("utf8");
        let third = format!("=_sealpost_{}", hex(&[3u8; 16]));
        assert!(text.contains(&format!("boundary=\"{third}\"")), "{text}");
        // Always colliding: a typed error, not a broken message.
        let mut same = || Ok([1u8; 16]);
        assert_eq!(
            build_with(&input(&sender, &reports, original.as_bytes()), &mut same),
            Err(DsnError::NoBoundary { tries: 8 })
        );
    }

    #[test]
    fn a_requiretls_message_is_returned_without_any_of_its_content() {
        let sender = ReversePath::Mailbox(Mailbox {
            local_part: "a".into(),
            host: Host::Domain("src.test".into()),
        });
        let original = b"Subject: merger plans\r\nX-Secret: yes\r\n\r\nbody\r\n";
        let reports = [report()];
        let mut redacted = input(&sender, &reports, original);
        redacted.redact = true;
        let DsnOutcome::Bounce(dsn) = build(&redacted).expect("built") else {
            panic!("bounce expected");
        };
        let text = String::from_utf8(dsn.message).expect("utf8");
        assert!(
            !text.contains("merger plans") && !text.contains("X-Secret"),
            "{text}"
        );
        assert!(!text.contains("text/rfc822-headers"), "{text}");
        assert!(text.contains("message/delivery-status"), "{text}");
        assert!(text.contains("REQUIRETLS"), "{text}");
        // Without the request the headers are returned.
        let DsnOutcome::Bounce(dsn) = build(&input(&sender, &reports, original)).expect("built")
        else {
            panic!("bounce expected");
        };
        assert!(String::from_utf8_lossy(&dsn.message).contains("merger plans"));
    }

    #[test]
    fn status_from_reply() {
        let table = [
            (Reply::new(550, (5, 7, 1), "x"), EnhancedCode(5, 7, 1)),
            (Reply::plain(554, "x"), EnhancedCode(5, 0, 0)),
            (Reply::plain(451, "x"), EnhancedCode(4, 0, 0)),
        ];
        for (reply, want) in table {
            assert_eq!(status_of(&reply), want);
            let r = RecipientReport::from_reply("a@b", Action::Failed, &reply, None, 5);
            assert_eq!((r.status, r.last_attempt), (want, Some(5)));
        }
    }

    #[test]
    fn headers_only_and_line_ends() {
        let h = original_headers(b"Subject: x\nFrom: a\r\n\r\nbody line\r\n");
        assert_eq!(h, "Subject: x\r\nFrom: a\r\n");
        let long = format!("X: {}\r\n\r\n", "y".repeat(2000));
        assert!(original_headers(long.as_bytes())
            .lines()
            .all(|l| l.len() <= 998));
    }
}
