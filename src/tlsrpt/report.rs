//! The SMTP TLS report (RFC 8460 section 4) as received: JSON, possibly
//! gzipped (section 5.3: `application/tlsrpt+gzip` or
//! `application/tlsrpt+json`), decoded under hard limits before and after
//! decompression, so a small gzip bomb costs at most the decompressed
//! limit of memory and is refused.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// How a report body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/tlsrpt+gzip`
    Gzip,
    /// `application/tlsrpt+json`
    Json,
}

impl Encoding {
    /// The encoding of a media type (parameters ignored, any case).
    pub(crate) fn of_media_type(content_type: &str) -> Option<Encoding> {
        let essence = content_type.split(';').next()?.trim();
        if essence.eq_ignore_ascii_case("application/tlsrpt+gzip") {
            Some(Encoding::Gzip)
        } else if essence.eq_ignore_ascii_case("application/tlsrpt+json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }
}

/// Bounds on one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The body as received (gzip or JSON).
    pub received: usize,
    /// The JSON after decompression.
    pub json: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            received: 1024 * 1024,
            json: 8 * 1024 * 1024,
        }
    }
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report is larger than {limit} octets as received")]
    TooLarge { limit: usize },
    #[error("the report decompresses to more than {limit} octets")]
    TooLargeDecompressed { limit: usize },
    #[error("the report is not valid gzip: {0}")]
    Gzip(String),
    #[error("the report is not RFC 8460 JSON: {0}")]
    Json(String),
    #[error("the report has no {0}")]
    Missing(&'static str),
}

/// RFC 8460 section 4.4, the fields sealpost reads (others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    #[serde(default)]
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: String,
    pub end_datetime: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyResult {
    pub policy: PolicyDescription,
    pub summary: Summary,
    #[serde(default)]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDescription {
    /// `tlsa`, `sts` or `no-policy-found`.
    pub policy_type: String,
    #[serde(default)]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    #[serde(default)]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    /// `starttls-not-supported`, `certificate-expired`, ...
    pub result_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    pub failed_session_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

/// Decodes one report body under `limits`.
pub fn decode(body: &[u8], encoding: Encoding, limits: Limits) -> Result<Report, ReportError> {
    if body.len() > limits.received {
        return Err(ReportError::TooLarge {
            limit: limits.received,
        });
    }
    let json = match encoding {
        Encoding::Json => body.to_vec(),
        Encoding::Gzip => {
            let mut out = Vec::new();
            let cap = u64::try_from(limits.json)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            flate2::read::GzDecoder::new(body)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| ReportError::Gzip(e.to_string()))?;
            if out.len() > limits.json {
                return Err(ReportError::TooLargeDecompressed { limit: limits.json });
            }
            out
        }
    };
    if json.len() > limits.json {
        return Err(ReportError::TooLargeDecompressed { limit: limits.json });
    }
    let report: Report =
        serde_json::from_slice(&json).map_err(|e| ReportError::Json(e.to_string()))?;
    if report.organization_name.trim().is_empty() {
        return Err(ReportError::Missing("organization-name"));
    }
    if report.report_id.trim().is_empty() {
        return Err(ReportError::Missing("report-id"));
    }
    if report.policies.is_empty() {
        return Err(ReportError::Missing("policies"));
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// The example of RFC 8460 section 4.4 (shortened).
    pub(crate) const EXAMPLE: &str = r#"{
     "organization-name": "Company-X",
     "date-range": {
       "start-datetime": "2016-04-01T00:00:00Z",
       "end-datetime": "2016-04-01T23:59:59Z"
     },
     "contact-info": "sts-reporting@company-x.example",
     "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
     "policies": [{
       "policy": {
         "policy-type": "sts",
         "policy-string": ["version: STSv1","mode: testing",
               "mx: *.mail.company-y.example","max_age: 86400"],
         "policy-domain": "company-y.example",
         "mx-host": ["*.mail.company-y.example"]
       },
       "summary": {
         "total-successful-session-count": 5326,
         "total-failure-session-count": 303
       },
       "failure-details": [{
         "result-type": "certificate-expired",
         "sending-mta-ip": "2001:db8:abcd:0012::1",
         "receiving-mx-hostname": "mx1.mail.company-y.example",
         "failed-session-count": 100
       }, {
         "result-type": "starttls-not-supported",
         "sending-mta-ip": "2001:db8:abcd:0013::1",
         "receiving-mx-hostname": "mx2.mail.company-y.example",
         "receiving-ip": "203.0.113.56",
         "failed-session-count": 200,
         "additional-information": "https://reports.company-x.example/report_info ? id = 5065427c - 23d3# StarttlsNotSupported "
       }, {
         "result-type": "validation-failure",
         "sending-mta-ip": "198.51.100.62",
         "receiving-ip": "203.0.113.58",
         "receiving-mx-hostname": "mx-backup.mail.company-y.example",
         "failed-session-count": 3,
         "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
       }]
     }]
   }"#;

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[test]
    fn the_rfc_example_reads_field_by_field() {
        let report = decode(EXAMPLE.as_bytes(), Encoding::Json, Limits::default()).expect("ok");
        assert_eq!(report.organization_name, "Company-X");
        assert_eq!(report.report_id, "5065427c-23d3-47ca-b6e0-946ea0e8c4be");
        assert_eq!(report.date_range.end_datetime, "2016-04-01T23:59:59Z");
        let policy = &report.policies[0];
        assert_eq!(policy.policy.policy_type, "sts");
        assert_eq!(policy.policy.policy_domain, "company-y.example");
        assert_eq!(policy.summary.total_successful_session_count, 5326);
        assert_eq!(policy.summary.total_failure_session_count, 303);
        let kinds: Vec<(&str, u64)> = policy
            .failure_details
            .iter()
            .map(|f| (f.result_type.as_str(), f.failed_session_count))
            .collect();
        assert_eq!(
            kinds,
            [
                ("certificate-expired", 100),
                ("starttls-not-supported", 200),
                ("validation-failure", 3)
            ]
        );
        let gzipped = decode(&gzip(EXAMPLE.as_bytes()), Encoding::Gzip, Limits::default());
        assert_eq!(gzipped, Ok(report));
    }

    #[test]
    fn limits_before_and_after_decompression() {
        let limits = Limits {
            received: 64 * 1024,
            json: 1024 * 1024,
        };
        // 64 MiB of spaces gzip to about 64 KiB: a bomb.
        let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
        assert!(bomb.len() < limits.received, "{}", bomb.len());
        assert_eq!(
            decode(&bomb, Encoding::Gzip, limits),
            Err(ReportError::TooLargeDecompressed { limit: 1024 * 1024 })
        );
        let big = vec![b' '; 64 * 1024 + 1];
        assert_eq!(
            decode(&big, Encoding::Json, limits),
            Err(ReportError::TooLarge { limit: 64 * 1024 })
        );
        assert!(matches!(
            decode(b"not gzip", Encoding::Gzip, limits),
            Err(ReportError::Gzip(_))
        ));
        assert!(matches!(
            decode(b"{}", Encoding::Json, limits),
            Err(ReportError::Json(_))
        ));
        let no_policies = EXAMPLE.replace("\"policies\": [{", "\"policies\": [], \"x\": [{");
        assert_eq!(
            decode(no_policies.as_bytes(), Encoding::Json, limits),
            Err(ReportError::Missing("policies"))
        );
    }

    #[test]
    fn media_types() {
        let table = [
            ("application/tlsrpt+gzip", Some(Encoding::Gzip)),
            (
                "Application/TLSRPT+JSON; charset=utf-8",
                Some(Encoding::Json),
            ),
            ("application/json", None),
            ("", None),
        ];
        for (given, want) in table {
            assert_eq!(Encoding::of_media_type(given), want, "{given}");
        }
    }
}
