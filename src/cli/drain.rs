//! `sealpost queue drain --to HOST:PORT [--tenant NAME]`: asks the running
//! daemon to hand its queue to another node (`docs/cluster.md`,
//! "Draining a node") and follows the progress once a second until the
//! drain ends. The drain runs in the daemon: interrupting this command
//! stops only the progress lines (`--no-wait` prints the first and
//! returns; running the command again while a drain runs says so).

use std::io::{self, Write};
use std::time::Duration;

use hyper::Method;

use super::admin::{decode, print_json, request, socket, Call};
use super::{AdminOptions, ExitStatus, GlobalOptions, EXIT_FAILURE, EXIT_OK};
use crate::admin::drain::{DrainRequest, DrainState, DrainStatus};

/// How often the progress is asked for.
const POLL: Duration = Duration::from_secs(1);

/// `sealpost queue drain`
pub fn drain(
    global: &GlobalOptions,
    options: &AdminOptions,
    request_body: &DrainRequest,
    wait: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    const NAME: &str = "queue drain";
    let Some(socket) = socket(global, options, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let body = serde_json::to_vec(request_body).map_err(io::Error::other)?;
    let call = Call {
        command: NAME,
        method: Method::POST,
        path: "/queue/drain",
        body: Some(body),
    };
    let Some(answer) = request(socket.clone(), call, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let mut status: DrainStatus = decode(&answer, NAME)?;
    if !options.json {
        writeln!(out, "draining to {} started", status.to)?;
    }
    let mut last = None;
    while wait && status.state == DrainState::Running {
        std::thread::sleep(POLL);
        let call = Call {
            command: NAME,
            method: Method::GET,
            path: "/queue/drain",
            body: None,
        };
        let Some(answer) = request(socket.clone(), call, err)? else {
            return Ok(EXIT_FAILURE);
        };
        status = decode(&answer, NAME)?;
        let line = progress(&status);
        if !options.json && last.as_ref() != Some(&line) {
            writeln!(out, "{line}")?;
            out.flush()?;
            last = Some(line);
        }
    }
    if options.json {
        let text = serde_json::to_vec(&status).map_err(io::Error::other)?;
        print_json(
            &crate::admin::client::Answer {
                status: 200,
                body: text,
            },
            out,
        )?;
    }
    match status.state {
        DrainState::Failed => {
            let why = status.last_error.as_deref().unwrap_or("unknown error");
            writeln!(err, "sealpost {NAME}: stopped: {why}")?;
            Ok(EXIT_FAILURE)
        }
        DrainState::Done => {
            if !options.json {
                writeln!(out, "{}", done(&status))?;
            }
            Ok(EXIT_OK)
        }
        DrainState::Running => Ok(EXIT_OK),
    }
}

/// One progress line.
pub fn progress(status: &DrainStatus) -> String {
    format!(
        "handed over {}, {} message{} stored here",
        status.handed_over,
        status.remaining,
        if status.remaining == 1 { "" } else { "s" }
    )
}

/// The closing line of a finished drain.
pub fn done(status: &DrainStatus) -> String {
    let held = match status.held {
        0 => String::new(),
        n => format!(
            "; {n} held recipient{} stay here (release them and drain again)",
            if n == 1 { "" } else { "s" }
        ),
    };
    format!(
        "drain to {} done: {} message{} handed over{held}",
        status.to,
        status.handed_over,
        if status.handed_over == 1 { "" } else { "s" }
    )
}
