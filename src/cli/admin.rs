//! The commands that talk to a running `sealpost serve` through its admin
//! socket: `sealpost queue ...`, `sealpost destinations` and
//! `sealpost reload`. Each prints a table for people or, with `--json`,
//! the API's JSON answer for scripts. The socket is `--socket`, else
//! `[admin] socket` of the configuration (`--config`). When nothing answers
//! on it, or it may not be opened, the command says so and exits 1.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use hyper::Method;

use super::{load, ExitStatus, GlobalOptions, EXIT_FAILURE, EXIT_OK};
use crate::admin::client::{AdminClient, Answer};
use crate::admin::http::percent_encode;
use crate::admin::views::{
    unix_ms, ActionRequest, Destinations, FilterSpec, HeldBack, MessageActionRequest,
    MessageDetail, MessagePage, ReloadAnswer, Summary, Touched,
};
use crate::metrics::{state_name, STATES};

/// How long a command waits for the daemon (a filter action over a large
/// queue may take a while).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Options of every admin command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminOptions {
    /// `--socket`; `None`: `[admin] socket` of the configuration.
    pub socket: Option<PathBuf>,
    /// `--json`: the API's answer as JSON.
    pub json: bool,
}

/// An operator action on queued messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// Deferred recipients become due now.
    Retry,
    /// Waiting recipients are held until released.
    Hold,
    /// Held recipients become due now.
    Release,
    /// The message is removed without a bounce.
    Delete,
    /// Every unfinished recipient fails now and the sender gets a DSN.
    Bounce,
}

impl QueueAction {
    pub fn name(self) -> &'static str {
        match self {
            QueueAction::Retry => "retry",
            QueueAction::Hold => "hold",
            QueueAction::Release => "release",
            QueueAction::Delete => "delete",
            QueueAction::Bounce => "bounce",
        }
    }

    fn past(self) -> &'static str {
        match self {
            QueueAction::Retry => "scheduled for retry now",
            QueueAction::Hold => "held",
            QueueAction::Release => "released",
            QueueAction::Delete => "deleted",
            QueueAction::Bounce => "bounced",
        }
    }
}

/// Which messages an action covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Message(String),
    /// Messages matching the filter; `all` confirms an empty filter.
    Filter {
        filter: FilterSpec,
        all: bool,
    },
}

/// `sealpost queue ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueCommand {
    Summary,
    List {
        filter: FilterSpec,
        cursor: Option<String>,
        limit: Option<usize>,
    },
    Show {
        id: String,
    },
    Act {
        action: QueueAction,
        target: Target,
        bounce_reason: Option<String>,
    },
}

/// The socket to use: `--socket`, or the configuration's.
pub(super) fn socket(
    global: &GlobalOptions,
    options: &AdminOptions,
    err: &mut dyn Write,
) -> io::Result<Option<PathBuf>> {
    if let Some(socket) = &options.socket {
        return Ok(Some(socket.clone()));
    }
    Ok(load(global, err)?.map(|config| config.admin.socket))
}

/// One request of a command to the daemon.
struct Call<'a> {
    /// The command's name in messages (`queue list`, `reload`).
    command: &'a str,
    method: Method,
    path: &'a str,
    body: Option<Vec<u8>>,
}

/// Sends one request; `None` after printing why there is no answer.
fn request(socket: PathBuf, call: Call<'_>, err: &mut dyn Write) -> io::Result<Option<Answer>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = AdminClient::new(socket, REQUEST_TIMEOUT);
    let command = call.command;
    match runtime.block_on(client.request(call.method, call.path, call.body)) {
        Ok(answer) if answer.is_success() => Ok(Some(answer)),
        Ok(answer) => {
            writeln!(err, "sealpost {command}: {}", answer.error_text())?;
            Ok(None)
        }
        Err(e) => {
            writeln!(err, "sealpost {command}: {e}")?;
            Ok(None)
        }
    }
}

/// Sends one request to the socket of `--socket` or the configuration
/// and prints the answer: as it is with `--json`, else as `text` prints it.
fn ask(
    global: &GlobalOptions,
    options: &AdminOptions,
    call: Call<'_>,
    text: impl FnOnce(&Answer, &mut dyn Write) -> io::Result<()>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(socket) = socket(global, options, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let Some(answer) = request(socket, call, err)? else {
        return Ok(EXIT_FAILURE);
    };
    if options.json {
        print_json(&answer, out)?;
    } else {
        text(&answer, out)?;
    }
    Ok(EXIT_OK)
}

/// Pretty JSON of an answer's body.
fn print_json(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(value) => {
            serde_json::to_writer_pretty(&mut *out, &value).map_err(io::Error::other)?;
            writeln!(out)
        }
        Err(_) => out.write_all(&answer.body),
    }
}

fn decode<T: serde::de::DeserializeOwned>(answer: &Answer, command: &str) -> io::Result<T> {
    serde_json::from_slice(&answer.body).map_err(|e| {
        io::Error::other(format!(
            "sealpost {command}: unexpected answer from the daemon: {e}"
        ))
    })
}

/// `sealpost queue ...`
pub fn queue(
    global: &GlobalOptions,
    options: &AdminOptions,
    command: &QueueCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let (name, method, path, body) = match command {
        QueueCommand::Summary => (
            "queue summary".to_string(),
            Method::GET,
            "/queue/summary".to_string(),
            None,
        ),
        QueueCommand::List {
            filter,
            cursor,
            limit,
        } => {
            let mut pairs: Vec<(&str, String)> = filter
                .pairs()
                .into_iter()
                .map(|(n, v)| (n, v.to_string()))
                .collect();
            if let Some(cursor) = cursor {
                pairs.push(("cursor", cursor.clone()));
            }
            if let Some(limit) = limit {
                pairs.push(("limit", limit.to_string()));
            }
            let query: Vec<String> = pairs
                .iter()
                .map(|(n, v)| format!("{n}={}", percent_encode(v)))
                .collect();
            let path = if query.is_empty() {
                "/queue/messages".to_string()
            } else {
                format!("/queue/messages?{}", query.join("&"))
            };
            ("queue list".to_string(), Method::GET, path, None)
        }
        QueueCommand::Show { id } => (
            "queue show".to_string(),
            Method::GET,
            format!("/queue/messages/{}", percent_encode(id)),
            None,
        ),
        QueueCommand::Act {
            action,
            target,
            bounce_reason,
        } => {
            let name = format!("queue {}", action.name());
            match target {
                Target::Message(id) => {
                    let body = MessageActionRequest {
                        bounce_reason: bounce_reason.clone(),
                    };
                    (
                        name,
                        Method::POST,
                        format!("/queue/messages/{}/{}", percent_encode(id), action.name()),
                        Some(serde_json::to_vec(&body).map_err(io::Error::other)?),
                    )
                }
                Target::Filter { filter, all } => {
                    if filter.is_empty() && !all {
                        writeln!(
                            err,
                            "sealpost {name}: give a message id, filter options (--tenant, --domain, ...), \
                             or --all to act on every message"
                        )?;
                        return Ok(EXIT_FAILURE);
                    }
                    let body = ActionRequest::new(filter.clone(), *all, bounce_reason.clone());
                    (
                        name,
                        Method::POST,
                        format!("/queue/actions/{}", action.name()),
                        Some(serde_json::to_vec(&body).map_err(io::Error::other)?),
                    )
                }
            }
        }
    };
    let call = Call {
        command: &name,
        method,
        path: &path,
        body,
    };
    let text = |answer: &Answer, out: &mut dyn Write| match command {
        QueueCommand::Summary => print_summary(&decode(answer, &name)?, out),
        QueueCommand::List { .. } => print_page(&decode(answer, &name)?, out),
        QueueCommand::Show { .. } => print_detail(&decode(answer, &name)?, out),
        QueueCommand::Act { action, .. } => {
            let touched: Touched = decode(answer, &name)?;
            let n = touched.touched;
            writeln!(
                out,
                "{} message{} {}",
                n,
                if n == 1 { "" } else { "s" },
                action.past()
            )?;
            print_held_back(&touched.held_back, SystemTime::now(), out)
        }
    };
    ask(global, options, call, text, out, err)
}

/// Says which destinations' pauses still hold the messages made due back,
/// and how to end each pause now.
fn print_held_back(held: &[HeldBack], now: SystemTime, out: &mut dyn Write) -> io::Result<()> {
    let now = unix_ms(now);
    for h in held {
        let until = crate::date::rfc5322_date(h.paused_until / 1000);
        let left = age(h.paused_until.saturating_sub(now).div_ceil(1000));
        let why = h
            .reason
            .as_deref()
            .map(|r| format!(" after: {r}"))
            .unwrap_or_default();
        writeln!(
            out,
            "{} of these {} held back by the pause of destination {} until {until} ({left} more){why}; \
             to try them now, run `sealpost destinations flush {}`, then this retry again",
            h.messages,
            if h.messages == 1 { "is" } else { "are" },
            h.destination,
            h.destination,
        )?;
    }
    Ok(())
}

/// `sealpost destinations flush NAME`
pub fn destination_flush(
    global: &GlobalOptions,
    options: &AdminOptions,
    name: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let path = format!("/destinations/{}/flush", percent_encode(name));
    let call = Call {
        command: "destinations flush",
        method: Method::POST,
        path: &path,
        body: None,
    };
    let text = |_: &Answer, out: &mut dyn Write| {
        writeln!(
            out,
            "destination {name} flushed: its pause is over and its cached MX, TLSA and MTA-STS state forgotten; \
             its deferred mail goes at its next retry, or now after `sealpost queue retry`"
        )
    };
    ask(global, options, call, text, out, err)
}

/// `sealpost destinations`
pub fn destinations(
    global: &GlobalOptions,
    options: &AdminOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let call = Call {
        command: "destinations",
        method: Method::GET,
        path: "/destinations",
        body: None,
    };
    let text = |answer: &Answer, out: &mut dyn Write| {
        print_destinations(&decode(answer, "destinations")?, out)
    };
    ask(global, options, call, text, out, err)
}

fn print_destinations(answer: &Destinations, out: &mut dyn Write) -> io::Result<()> {
    if answer.destinations.is_empty() {
        writeln!(out, "the delivery engine reports no destinations")?;
    } else {
        let now = unix_ms(SystemTime::now());
        let rows = answer
            .destinations
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    answer
                        .queued_recipients
                        .get(&d.name)
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                    d.mx_hosts.join(","),
                    d.tls.clone().unwrap_or_else(|| "-".into()),
                    format!(
                        "{}/{}/{}",
                        d.active_connections, d.idle_connections, d.waiting
                    ),
                    match d.backoff_until {
                        Some(until) if until > now => {
                            format!("{} more", age((until - now) / 1000))
                        }
                        _ => "-".into(),
                    },
                    d.last_error.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            out,
            &[
                "DESTINATION",
                "QUEUED",
                "MX",
                "TLS",
                "ACTIVE/IDLE/WAITING",
                "BACKOFF",
                "LAST ERROR",
            ],
            rows,
        )?;
    }
    count_table(
        out,
        "queued recipients per destination",
        &["DESTINATION", "RECIPIENTS"],
        answer
            .queued_recipients
            .iter()
            .map(|(d, n)| (d.clone(), *n)),
    )
}

/// `sealpost reload`
pub fn reload(
    global: &GlobalOptions,
    options: &AdminOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let call = Call {
        command: "reload",
        method: Method::POST,
        path: "/reload",
        body: None,
    };
    let text = |answer: &Answer, out: &mut dyn Write| print_reload(&decode(answer, "reload")?, out);
    ask(global, options, call, text, out, err)
}

fn print_reload(report: &ReloadAnswer, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "configuration reloaded from {}: generation {}, {} managed domain{}",
        report.source,
        report.generation,
        report.managed_domains,
        if report.managed_domains == 1 { "" } else { "s" }
    )?;
    if !report.needs_restart.is_empty() {
        writeln!(
            out,
            "changed but in force only after a restart: {}",
            report.needs_restart.join(", ")
        )?;
    }
    Ok(())
}

/// `2h05m`, `45s`, `3d04h`.
fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds % 86400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// Columns padded to their widest cell; the last one is not padded.
fn table(out: &mut dyn Write, headers: &[&str], rows: Vec<Vec<String>>) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A blank line, `title:` and a table of a name and a count a row;
/// nothing when there are no rows.
fn count_table(
    out: &mut dyn Write,
    title: &str,
    headers: &[&str],
    counts: impl Iterator<Item = (String, u64)>,
) -> io::Result<()> {
    let rows: Vec<Vec<String>> = counts.map(|(name, n)| vec![name, n.to_string()]).collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}:")?;
    table(out, headers, rows)
}

fn print_summary(summary: &Summary, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "messages: {}", summary.messages)?;
    match &summary.oldest {
        Some(oldest) => writeln!(
            out,
            "oldest:   {} ({} old)",
            oldest.id,
            age(oldest.age_seconds)
        )?,
        None => writeln!(out, "oldest:   -")?,
    }
    writeln!(out, "\nrecipients by state:")?;
    let rows = STATES
        .iter()
        .map(|s| {
            let name = state_name(*s);
            let n = summary.recipients_by_state.get(name).copied().unwrap_or(0);
            vec![name.to_string(), n.to_string()]
        })
        .collect();
    table(out, &["STATE", "RECIPIENTS"], rows)?;
    count_table(
        out,
        "messages by tenant",
        &["TENANT", "MESSAGES"],
        summary
            .messages_by_tenant
            .iter()
            .map(|(t, n)| (if t.is_empty() { "-".into() } else { t.clone() }, *n)),
    )?;
    count_table(
        out,
        "waiting recipients by destination",
        &["DESTINATION", "RECIPIENTS"],
        summary
            .recipients_by_destination
            .iter()
            .map(|(d, n)| (d.clone(), *n)),
    )?;
    if !summary.top_defer_reasons.is_empty() {
        writeln!(
            out,
            "\ntop defer reasons{}:",
            if summary.defer_scan_complete {
                String::new()
            } else {
                format!(
                    " (of the first {} messages with deferred recipients)",
                    summary.defer_scan_messages
                )
            }
        )?;
        let rows = summary
            .top_defer_reasons
            .iter()
            .map(|r| vec![r.recipients.to_string(), r.reason.clone()])
            .collect();
        table(out, &["RECIPIENTS", "LAST REASON"], rows)?;
    }
    Ok(())
}

fn print_page(page: &MessagePage, out: &mut dyn Write) -> io::Result<()> {
    if page.messages.is_empty() {
        writeln!(out, "no messages")?;
        return Ok(());
    }
    let rows = page
        .messages
        .iter()
        .map(|m| {
            let states: Vec<&str> = m.recipients.iter().map(|r| r.state.as_str()).collect();
            let mut states_shown = states.clone();
            states_shown.dedup();
            let first = m.recipients.first();
            vec![
                m.id.clone(),
                age(m.age_seconds),
                if m.tenant.is_empty() {
                    "-".into()
                } else {
                    m.tenant.clone()
                },
                if m.mail_from.is_empty() {
                    "<>".into()
                } else {
                    m.mail_from.clone()
                },
                match (first, m.recipients.len()) {
                    (Some(r), 1) => r.address.clone(),
                    (Some(r), n) => format!("{} (+{})", r.address, n - 1),
                    (None, _) => "-".into(),
                },
                states_shown.join(","),
                m.recipients
                    .iter()
                    .rev()
                    .find_map(|r| r.last_reason.clone())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        out,
        &[
            "ID",
            "AGE",
            "TENANT",
            "FROM",
            "RECIPIENTS",
            "STATE",
            "LAST REASON",
        ],
        rows,
    )?;
    if let Some(next) = &page.next_cursor {
        writeln!(out, "more: --cursor {next}")?;
    }
    Ok(())
}

fn print_detail(m: &MessageDetail, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "id:        {}", m.id)?;
    writeln!(out, "tenant:    {}", m.tenant)?;
    writeln!(
        out,
        "from:      {}",
        if m.mail_from.is_empty() {
            "<>"
        } else {
            &m.mail_from
        }
    )?;
    if !m.mail_params.is_empty() {
        writeln!(out, "params:    {}", m.mail_params.join(" "))?;
    }
    writeln!(out, "age:       {}", age(m.age_seconds))?;
    writeln!(out, "size:      {} bytes", m.size)?;
    let p = &m.accepted_policy;
    writeln!(
        out,
        "accepted:  {} (TLS {} or newer): {}",
        p.level, p.min_tls, p.explanation
    )?;
    if let Some(effective) = &m.effective_policy {
        let resolution = &effective["resolution"];
        writeln!(
            out,
            "now:       {} (TLS {} or newer)",
            resolution["level"].as_str().unwrap_or("?"),
            resolution["min_tls"].as_str().unwrap_or("?"),
        )?;
    }
    for r in &m.recipients {
        writeln!(out)?;
        writeln!(
            out,
            "recipient {}: {} via {}: {}{}",
            r.index,
            r.address,
            r.destination,
            r.state,
            match r.next_attempt_ms {
                Some(next) => {
                    let now = unix_ms(SystemTime::now());
                    if next > now {
                        format!(" (next attempt in {})", age((next - now) / 1000))
                    } else {
                        " (due now)".to_string()
                    }
                }
                None => String::new(),
            }
        )?;
        if r.attempts.is_empty() {
            writeln!(out, "  no attempts yet")?;
        }
        let now = unix_ms(SystemTime::now());
        for a in &r.attempts {
            let tls = match (&a.tls_version, &a.cipher) {
                (Some(v), Some(c)) => format!("{v} {c}, authenticated: {}", a.authentication),
                (Some(v), None) => format!("{v}, authenticated: {}", a.authentication),
                _ => "no TLS".to_string(),
            };
            writeln!(
                out,
                "  {} ago  {}{}  {}: {}  [{}]",
                age(now.saturating_sub(a.at_ms) / 1000),
                a.mx_host.as_deref().unwrap_or("-"),
                a.ip.as_deref()
                    .map(|ip| format!(" [{ip}]"))
                    .unwrap_or_default(),
                a.result,
                a.reason,
                tls
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_tables_are_compact() {
        assert_eq!(age(45), "45s");
        assert_eq!(age(125), "2m05s");
        assert_eq!(age(7500), "2h05m");
        assert_eq!(age(3 * 86400 + 4 * 3600), "3d04h");
        let mut out = Vec::new();
        table(
            &mut out,
            &["A", "LONGER"],
            vec![vec!["wide cell".into(), "x".into()]],
        )
        .expect("write");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "A          LONGER\nwide cell  x\n"
        );
    }
}
