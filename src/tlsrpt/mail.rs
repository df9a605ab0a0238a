//! TLS reports sent by mail (RFC 8460 section 5.3): a message to a
//! `mailto:` destination a hosted domain publishes, of type
//! `multipart/report; report-type="tlsrpt"`, whose report is the part of
//! type `application/tlsrpt+gzip` or `application/tlsrpt+json` (base64,
//! 7bit, 8bit or binary). Pure functions; the inbound path decides what to
//! do with the result.

use base64::Engine;

use super::report::Encoding;
use crate::config::Config;
use crate::smtp::address::Mailbox;

/// The managed domain whose published `mailto:` TLSRPT destination is
/// `mailbox` (a hosted, enabled domain), if any.
pub(crate) fn report_address_domain(config: &Config, mailbox: &Mailbox) -> Option<String> {
    let address = format!("mailto:{mailbox}").to_ascii_lowercase();
    config
        .hosted_mta_sts
        .iter()
        .filter(|(domain, _)| config.policy.domain(domain).is_some_and(|d| d.enabled))
        .find(|(_, hosted)| {
            hosted
                .tlsrpt
                .iter()
                .any(|uri| uri.to_ascii_lowercase() == address)
        })
        .map(|(domain, _)| domain.clone())
}

/// Header fields of a header section, unfolded, as (lower-case name,
/// value); and the offset where the body starts.
fn header_section(message: &[u8]) -> (Vec<(String, String)>, usize) {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let end = message[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| at + p + 1);
        let line = &message[at..end];
        at = end;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(text.trim());
            }
        } else if let Some((name, value)) = text.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (fields, at)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A parameter of a structured header value (`boundary="x"`).
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (key, val) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().trim_matches('"').to_string())
    })
}

/// The report of a message: its encoding and its (transfer-decoded) bytes.
pub fn report_part(message: &[u8]) -> Option<(Encoding, Vec<u8>)> {
    let (fields, body_at) = header_section(message);
    let content_type = field(&fields, "content-type").unwrap_or("text/plain");
    let body = &message[body_at..];
    if let Some(encoding) = Encoding::of_media_type(content_type) {
        return transfer_decode(field(&fields, "content-transfer-encoding"), body)
            .map(|bytes| (encoding, bytes));
    }
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    let boundary = parameter(content_type, "boundary")?;
    let delimiter = format!("--{boundary}");
    // Parts lie between delimiter lines; each begins after the line end.
    let text = body;
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(found) = find(&text[at..], delimiter.as_bytes()) {
        let pos = at + found;
        let line_start = pos == 0 || text[pos - 1] == b'\n';
        let after = pos + delimiter.len();
        if line_start {
            starts.push((pos, after));
        }
        at = after;
    }
    for pair in starts.windows(2) {
        let (_, after) = pair[0];
        let (next, _) = pair[1];
        let part_start = text[after..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(next, |p| after + p + 1);
        if part_start >= next {
            continue;
        }
        let part = &text[part_start..next];
        let (part_fields, part_body_at) = header_section(part);
        let Some(encoding) = field(&part_fields, "content-type").and_then(Encoding::of_media_type)
        else {
            continue;
        };
        let part_body = &part[part_body_at..];
        // The line break before the next delimiter belongs to it.
        let part_body = part_body.strip_suffix(b"\n").unwrap_or(part_body);
        let part_body = part_body.strip_suffix(b"\r").unwrap_or(part_body);
        return transfer_decode(field(&part_fields, "content-transfer-encoding"), part_body)
            .map(|bytes| (encoding, bytes));
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn transfer_decode(encoding: Option<&str>, body: &[u8]) -> Option<Vec<u8>> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("7bit" | "8bit" | "binary") => Some(body.to_vec()),
        Some("base64") => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD.decode(clean).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_part_of_a_multipart_report() {
        let payload = b"\x1f\x8b binary gzip bytes \x00\xff";
        let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
        let (first, rest) = encoded.split_at(10);
        let message = format!(
            "From: reports@sender.example\r\nTLS-Report-Domain: a.test\r\n\
             Content-Type: multipart/report;\r\n report-type=\"tlsrpt\"; boundary=\"b1\"\r\n\r\n\
             preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThis is a report.\r\n\
             --b1\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"x.json.gz\"\r\n\r\n{first}\r\n{rest}\r\n--b1--\r\n"
        );
        assert_eq!(
            report_part(message.as_bytes()),
            Some((Encoding::Gzip, payload.to_vec()))
        );
        let plain = "Content-Type: application/tlsrpt+json\r\n\r\n{\"a\":1}";
        assert_eq!(
            report_part(plain.as_bytes()),
            Some((Encoding::Json, b"{\"a\":1}".to_vec()))
        );
        for not_a_report in [
            "Subject: hello\r\n\r\nhi",
            "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx",
            "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!",
        ] {
            assert_eq!(report_part(not_a_report.as_bytes()), None, "{not_a_report}");
        }
    }
}
