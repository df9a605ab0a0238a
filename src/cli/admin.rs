//! The commands that talk to a running `sealpost serve` through its admin
//! socket: `sealpost queue ...`, `sealpost destinations` and
//! `sealpost reload`. Each prints a table for people or, with `--json`,
//! the API's JSON answer for scripts. The socket is `--socket`, else
//! `[admin] socket` of the configuration (`--config`). When nothing answers
//! on it, or it may not be opened, the command says so and exits 1.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use hyper::Method;

use super::{load_main, ExitStatus, GlobalOptions, EXIT_FAILURE, EXIT_OK};
use crate::admin::client::{AdminClient, Answer};
use crate::admin::http::percent_encode;
use crate::admin::views::{
    unix_ms, ActionRequest, Destinations, FilterSpec, MessageActionRequest, ReloadAnswer, Touched,
};

mod tables;

use tables::{age, count_table, print_detail, print_held_back, print_page, print_summary, table};

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
    // The main file is enough: a broken tenant file must not keep the
    // operator from the running server (to reload, or to look).
    Ok(load_main(global, err)?.map(|config| config.admin.socket))
}

/// One request of a command to the daemon.
pub(super) struct Call<'a> {
    /// The command's name in messages (`queue list`, `reload`).
    pub(super) command: &'a str,
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) body: Option<Vec<u8>>,
}

/// Sends one request; `None` after printing why there is no answer.
pub(super) fn request(
    socket: PathBuf,
    call: Call<'_>,
    err: &mut dyn Write,
) -> io::Result<Option<Answer>> {
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
pub(super) fn ask(
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
pub(super) fn print_json(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(value) => {
            serde_json::to_writer_pretty(&mut *out, &value).map_err(io::Error::other)?;
            writeln!(out)
        }
        Err(_) => out.write_all(&answer.body),
    }
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    answer: &Answer,
    command: &str,
) -> io::Result<T> {
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

/// `sealpost tls-reports received`
pub fn tls_reports_received(
    global: &GlobalOptions,
    options: &AdminOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    #[derive(serde::Deserialize)]
    struct Received {
        received: Vec<crate::tlsrpt::SummaryRow>,
    }
    let call = Call {
        command: "tls-reports received",
        method: Method::GET,
        path: "/tls-reports/received",
        body: None,
    };
    let text = |answer: &Answer, out: &mut dyn Write| {
        let answer: Received = decode(answer, "tls-reports received")?;
        if answer.received.is_empty() {
            return writeln!(out, "no TLS reports received");
        }
        let rows = answer
            .received
            .iter()
            .map(|r| {
                let failures = r
                    .failures
                    .iter()
                    .map(|(kind, n)| format!("{kind}={n}"))
                    .collect::<Vec<_>>()
                    .join(",");
                vec![
                    r.tenant.clone(),
                    r.organization.clone(),
                    r.reports.to_string(),
                    r.successful_sessions.to_string(),
                    r.failed_sessions.to_string(),
                    if failures.is_empty() {
                        "-".into()
                    } else {
                        failures
                    },
                    r.latest.clone(),
                ]
            })
            .collect();
        table(
            out,
            &[
                "TENANT",
                "ORGANIZATION",
                "REPORTS",
                "SUCCESSFUL",
                "FAILED",
                "FAILURES BY TYPE",
                "LATEST",
            ],
            rows,
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
    let Some(socket) = socket(global, options, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let Some(answer) = request(socket, call, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let report: ReloadAnswer = decode(&answer, "reload")?;
    if options.json {
        print_json(&answer, out)?;
    } else {
        print_reload(&report, out)?;
    }
    if report.tenant_errors.is_empty() {
        return Ok(EXIT_OK);
    }
    // Applied, but not all of it: a script must notice.
    for error in &report.tenant_errors {
        writeln!(err, "{error}")?;
    }
    writeln!(
        err,
        "{} tenant file error{}: the previous version of those tenants stays in force",
        report.tenant_errors.len(),
        if report.tenant_errors.len() == 1 {
            ""
        } else {
            "s"
        }
    )?;
    Ok(EXIT_FAILURE)
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
