//! How the admin socket's answers print for people: ages, aligned
//! tables, the queue summary, a page of messages, one message's detail,
//! and the pauses holding messages back.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::SystemTime;

use crate::admin::views::{unix_ms, HeldBack, MessageDetail, MessagePage, Summary};
use crate::metrics::{state_name, STATES};

/// Says which destinations' pauses still hold the messages made due back,
/// and how to end each pause now.
pub(super) fn print_held_back(
    held: &[HeldBack],
    now: SystemTime,
    out: &mut dyn Write,
) -> io::Result<()> {
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

/// `2h05m`, `45s`, `3d04h`.
pub(super) fn age(seconds: u64) -> String {
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
pub(super) fn table(
    out: &mut dyn Write,
    headers: &[&str],
    rows: Vec<Vec<String>>,
) -> io::Result<()> {
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
pub(super) fn count_table(
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

pub(super) fn print_summary(summary: &Summary, out: &mut dyn Write) -> io::Result<()> {
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

pub(super) fn print_page(page: &MessagePage, out: &mut dyn Write) -> io::Result<()> {
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

pub(super) fn print_detail(m: &MessageDetail, out: &mut dyn Write) -> io::Result<()> {
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
