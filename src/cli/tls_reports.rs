//! `sealpost tls-reports list|show|send-now`: the TLS reports (RFC 8460)
//! the running server sent or will send, over the admin socket
//! (`crate::admin::tls_reports`).

use std::io::{self, Write};

use hyper::Method;

use super::admin::{ask, decode, print_json, AdminOptions, Call};
use super::{ExitStatus, GlobalOptions};
use crate::admin::http::percent_encode;
use crate::tlsrpt::{Listing, ReportKey, SentRecord};

/// `sealpost tls-reports list`
pub fn tls_reports_list(
    global: &GlobalOptions,
    options: &AdminOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let call = Call {
        command: "tls-reports list",
        method: Method::GET,
        path: "/tls-reports/sent",
        body: None,
    };
    let text = |answer: &_, out: &mut dyn Write| {
        let listing: Listing = decode(answer, "tls-reports list")?;
        if listing.sent.is_empty() && listing.pending.is_empty() {
            return writeln!(out, "no TLS reports sent or pending");
        }
        for record in &listing.sent {
            print_sent(record, out)?;
        }
        for key in &listing.pending {
            writeln!(
                out,
                "{}  {}  {}  pending (sent after midnight UTC)",
                key.day, key.tenant, key.domain
            )?;
        }
        Ok(())
    };
    ask(global, options, call, text, out, err)
}

fn print_sent(record: &SentRecord, out: &mut dyn Write) -> io::Result<()> {
    let key: &ReportKey = &record.key;
    let deliveries = record
        .deliveries
        .iter()
        .map(|(to, result)| format!("{to}: {result}"))
        .collect::<Vec<_>>()
        .join("; ");
    writeln!(
        out,
        "{}  {}  {}  sent {}  {}",
        key.day,
        key.tenant,
        key.domain,
        crate::date::rfc3339(record.at),
        deliveries
    )
}

/// `sealpost tls-reports show DAY TENANT DOMAIN`: the report's JSON.
pub fn tls_reports_show(
    global: &GlobalOptions,
    options: &AdminOptions,
    key: &ReportKey,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let path = format!(
        "/tls-reports/sent/{}/{}/{}",
        percent_encode(&key.day),
        percent_encode(&key.tenant),
        percent_encode(&key.domain)
    );
    let call = Call {
        command: "tls-reports show",
        method: Method::GET,
        path: &path,
        body: None,
    };
    ask(global, options, call, print_json, out, err)
}

/// `sealpost tls-reports send-now [--include-today]`
pub fn tls_reports_send_now(
    global: &GlobalOptions,
    options: &AdminOptions,
    include_today: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    #[derive(serde::Deserialize)]
    struct Sent {
        sent: Vec<SentRecord>,
    }
    let path = format!("/tls-reports/send-now?include-today={include_today}");
    let call = Call {
        command: "tls-reports send-now",
        method: Method::POST,
        path: &path,
        body: None,
    };
    let text = |answer: &_, out: &mut dyn Write| {
        let answer: Sent = decode(answer, "tls-reports send-now")?;
        if answer.sent.is_empty() {
            return writeln!(out, "no TLS report was due");
        }
        for record in &answer.sent {
            print_sent(record, out)?;
        }
        Ok(())
    };
    ask(global, options, call, text, out, err)
}
