//! The report sealpost sends (RFC 8460 section 4.4) and its packaging:
//! the `_smtp._tls` TXT record's `rua` destinations (section 3), the
//! gzipped body (section 5.1), the file name (section 5.3) and the report
//! mail (section 5.3: `multipart/report; report-type="tlsrpt"`, with
//! `TLS-Report-Domain`, `TLS-Report-Submitter` and, RFC 8689 section 5,
//! `TLS-Required: No` so the report reaches a domain whose TLS is broken,
//! which is what it reports). Pure functions: no I/O.

use std::io::Write;

use base64::Engine;

use super::daily::ReportKey;
use super::report::{DateRange, PolicyResult, Report};

/// Who sends the report (per tenant, with the server's default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info`: an address or URI.
    pub contact: String,
    /// The submitter domain (`TLS-Report-Submitter`, file names, ids).
    pub domain: String,
    /// The report mail's sender (envelope and `From:`).
    pub sender: String,
}

/// One `rua` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rua {
    /// `mailto:` address.
    Mail(String),
    /// `https://` URL to POST to.
    Https(String),
}

impl std::fmt::Display for Rua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rua::Mail(a) => write!(f, "mailto:{a}"),
            Rua::Https(u) => f.write_str(u),
        }
    }
}

/// The `rua` destinations of the `_smtp._tls.<domain>` TXT records
/// (section 3): exactly one record starting `v=TLSRPTv1`, else none.
/// Unknown schemes are ignored.
pub(crate) fn rua_of(records: &[String]) -> Vec<Rua> {
    let reports: Vec<&String> = records
        .iter()
        .filter(|r| {
            let r = r.trim_start();
            r.starts_with("v=TLSRPTv1;") || r.trim_end() == "v=TLSRPTv1"
        })
        .collect();
    let [record] = reports.as_slice() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in record.split(';') {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        if name.trim() != "rua" {
            continue;
        }
        for uri in value.split(',') {
            let uri = uri.trim();
            if let Some(address) = uri.strip_prefix("mailto:") {
                if address.contains('@') {
                    out.push(Rua::Mail(address.to_string()));
                }
            } else if uri.starts_with("https://") {
                out.push(Rua::Https(uri.to_string()));
            }
        }
    }
    out
}

/// The report of `key` with `policies` (section 4.4).
pub fn build(key: &ReportKey, submitter: &Submitter, policies: Vec<PolicyResult>) -> Report {
    let start = super::session::day_start(&key.day).unwrap_or(0);
    Report {
        organization_name: submitter.organization.clone(),
        date_range: DateRange {
            start_datetime: crate::date::rfc3339(start),
            end_datetime: crate::date::rfc3339(start + 86_399),
        },
        contact_info: submitter.contact.clone(),
        report_id: format!(
            "{}_{}_{}@{}",
            key.day,
            key.domain,
            tenant_token(&key.tenant),
            submitter.domain
        ),
        policies,
    }
}

/// The tenant as it may stand in a report id: letters, digits, `-`, `.`.
fn tenant_token(tenant: &str) -> String {
    tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The report as JSON, gzipped (`application/tlsrpt+gzip`).
pub fn gzip(report: &Report) -> (String, Vec<u8>) {
    let json = serde_json::to_string(report).unwrap_or_default();
    let gzipped = gzip_json(&json);
    (json, gzipped)
}

/// A report's JSON text, gzipped (a retry sends the text kept).
pub(crate) fn gzip_json(json: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(json.as_bytes());
    encoder.finish().unwrap_or_default()
}

/// Section 5.3: `submitter!policy-domain!begin!end.json.gz` (seconds).
pub fn file_name(key: &ReportKey, submitter: &Submitter) -> String {
    let start = super::session::day_start(&key.day).unwrap_or(0);
    format!(
        "{}!{}!{}!{}.json.gz",
        submitter.domain,
        key.domain,
        start,
        start + 86_399
    )
}

/// The report mail to `to` (section 5.3), dated `now` (unix seconds).
pub fn mail(
    key: &ReportKey,
    submitter: &Submitter,
    report: &Report,
    gzipped: &[u8],
    to: &str,
    now: u64,
) -> Vec<u8> {
    let boundary = format!("tlsrpt-{}", ring_token(&report.report_id));
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzipped);
    let mut body = String::new();
    let mut line = |s: &str| {
        body.push_str(s);
        body.push_str("\r\n");
    };
    line(&format!("From: <{}>", submitter.sender));
    line(&format!("To: <{to}>"));
    line(&format!("Date: {}", crate::date::rfc5322_date(now)));
    line(&format!("Subject: Report Domain: {}", key.domain));
    line(&format!(" Submitter: {}", submitter.domain));
    line(&format!(" Report-ID: <{}>", report.report_id));
    line(&format!(
        "Message-ID: <{}.{}>",
        ring_token(&report.report_id),
        submitter.domain
    ));
    line(&format!("TLS-Report-Domain: {}", key.domain));
    line(&format!("TLS-Report-Submitter: {}", submitter.domain));
    line("TLS-Required: No");
    line("Auto-Submitted: auto-generated");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\""
    ));
    line("");
    line("This is a multipart message in MIME format.");
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: text/plain; charset=\"us-ascii\"");
    line("Content-Transfer-Encoding: 7bit");
    line("");
    line(&format!(
        "This is an aggregate TLS report from {} about {} on {}.",
        submitter.domain, key.domain, key.day
    ));
    line("");
    line(&format!("--{boundary}"));
    line("Content-Type: application/tlsrpt+gzip");
    line("Content-Transfer-Encoding: base64");
    line(&format!(
        "Content-Disposition: attachment; filename=\"{}\"",
        file_name(key, submitter)
    ));
    line("");
    for chunk in encoded.as_bytes().chunks(76) {
        line(&String::from_utf8_lossy(chunk));
    }
    line(&format!("--{boundary}--"));
    body.into_bytes()
}

/// A short hex digest of `text` (boundaries, message ids).
fn ring_token(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::report::{
        decode, Encoding, FailureDetail, Limits, PolicyDescription, Summary,
    };

    fn key() -> ReportKey {
        ReportKey {
            day: "2016-04-01".into(),
            tenant: "acme".into(),
            domain: "company-y.example".into(),
        }
    }

    fn submitter() -> Submitter {
        Submitter {
            organization: "Company-X".into(),
            contact: "sts-reporting@company-x.example".into(),
            domain: "company-x.example".into(),
            sender: "tlsrpt@company-x.example".into(),
        }
    }

    fn policies() -> Vec<PolicyResult> {
        vec![PolicyResult {
            policy: PolicyDescription {
                policy_type: "sts".into(),
                policy_string: vec![
                    "version: STSv1".into(),
                    "mode: testing".into(),
                    "mx: *.mail.company-y.example".into(),
                    "max_age: 86400".into(),
                ],
                policy_domain: "company-y.example".into(),
                mx_host: vec!["*.mail.company-y.example".into()],
            },
            summary: Summary {
                total_successful_session_count: 5326,
                total_failure_session_count: 100,
            },
            failure_details: vec![FailureDetail {
                result_type: "certificate-expired".into(),
                sending_mta_ip: None,
                receiving_mx_hostname: Some("mx1.mail.company-y.example".into()),
                receiving_ip: Some("203.0.113.56".into()),
                failed_session_count: 100,
                failure_reason_code: None,
            }],
        }]
    }

    /// RFC 8460 section 4.4, field by field, on the JSON text itself.
    #[test]
    fn the_report_has_every_field_of_section_4_4() {
        let report = build(&key(), &submitter(), policies());
        let (json, gz) = gzip(&report);
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["organization-name"], "Company-X");
        assert_eq!(v["date-range"]["start-datetime"], "2016-04-01T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "2016-04-01T23:59:59Z");
        assert_eq!(v["contact-info"], "sts-reporting@company-x.example");
        assert_eq!(
            v["report-id"],
            "2016-04-01_company-y.example_acme@company-x.example"
        );
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-string"][1], "mode: testing");
        assert_eq!(p["policy"]["policy-domain"], "company-y.example");
        assert_eq!(p["policy"]["mx-host"][0], "*.mail.company-y.example");
        assert_eq!(p["summary"]["total-successful-session-count"], 5326);
        assert_eq!(p["summary"]["total-failure-session-count"], 100);
        let f = &p["failure-details"][0];
        assert_eq!(f["result-type"], "certificate-expired");
        assert_eq!(f["receiving-mx-hostname"], "mx1.mail.company-y.example");
        assert_eq!(f["receiving-ip"], "203.0.113.56");
        assert_eq!(f["failed-session-count"], 100);
        assert!(f.get("sending-mta-ip").is_none(), "optional, left out");
        // What sealpost sends, sealpost (and any receiver) reads back.
        assert_eq!(decode(&gz, Encoding::Gzip, Limits::default()), Ok(report));
    }

    #[test]
    fn rua_from_the_txt_record() {
        let records = vec![
            "v=TLSRPTv1; rua=mailto:reports@example.net,https://r.example.net/tlsrpt".to_string(),
            "v=spf1 -all".to_string(),
        ];
        assert_eq!(
            rua_of(&records),
            vec![
                Rua::Mail("reports@example.net".into()),
                Rua::Https("https://r.example.net/tlsrpt".into())
            ]
        );
        let two = vec![records[0].clone(), records[0].clone()];
        assert!(rua_of(&two).is_empty(), "two TLSRPT records: none");
        assert!(rua_of(&["v=TLSRPTv2; rua=mailto:a@b".to_string()]).is_empty());
        assert!(rua_of(&["v=TLSRPTv1; rua=ftp://x,mailto:nobody".to_string()]).is_empty());
    }

    #[test]
    fn the_mail_of_section_5_3() {
        let report = build(&key(), &submitter(), policies());
        let (_, gz) = gzip(&report);
        let mail = mail(
            &key(),
            &submitter(),
            &report,
            &gz,
            "r@company-y.example",
            1_459_555_200,
        );
        let text = String::from_utf8(mail).expect("ascii");
        for want in [
            "TLS-Report-Domain: company-y.example\r\n",
            "TLS-Report-Submitter: company-x.example\r\n",
            "TLS-Required: No\r\n",
            "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=",
            "Content-Type: application/tlsrpt+gzip\r\n",
            "filename=\"company-x.example!company-y.example!1459468800!1459555199.json.gz\"",
            "Subject: Report Domain: company-y.example\r\n Submitter: company-x.example\r\n Report-ID: <",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        // The attachment decodes back to the report (the receiving side's parser).
        let parsed = crate::tlsrpt::mail::report_part(text.as_bytes());
        let (encoding, bytes) = parsed.expect("a report part");
        assert_eq!(decode(&bytes, encoding, Limits::default()), Ok(report));
    }
}
