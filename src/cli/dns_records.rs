//! `sealpost dns-records <domain>`: the DNS records a managed domain must
//! publish for the MTA-STS policy sealpost hosts for it: `_mta-sts` TXT
//! (RFC 8461 section 3.1, its `id` derived from the policy text so that it
//! changes whenever the policy does) and the `_smtp._tls` TLSRPT TXT record
//! (RFC 8460 section 3), with warnings about what would keep the policy
//! from being served.

use std::fmt;

use serde::Serialize;

use crate::config::Config;
use crate::mta_sts::fetch::{policy_host, WELL_KNOWN_PATH};
use crate::mta_sts::host::TlsRptError;
use crate::mta_sts::{mta_sts_record, tlsrpt_record, Mode};

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// Fully qualified, with the trailing dot.
    pub name: String,
    /// Always `TXT` for now.
    #[serde(rename = "type")]
    pub record_type: &'static str,
    pub value: String,
}

/// Everything `dns-records` reports for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecords {
    pub domain: String,
    pub mode: Mode,
    pub max_age: u64,
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`
    pub policy_url: String,
    /// The policy text served there.
    pub policy: String,
    /// The `_mta-sts` record, then the `_smtp._tls` record.
    pub records: Vec<DnsRecord>,
    /// The TLSRPT destination is the default (`mailto:tlsrpt@<domain>`).
    pub tlsrpt_is_default: bool,
    /// Reasons the policy would not be served or not verify as configured.
    pub warnings: Vec<String>,
}

/// Why no records can be printed for a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsRecordsError {
    #[error("`{0}` is not a managed domain")]
    NotManaged(String),
    #[error("managed domain `{0}` has no [domains.mta_sts] policy to publish")]
    NoPolicy(String),
    #[error("managed domain `{domain}`: {source}")]
    TlsRpt { domain: String, source: TlsRptError },
}

/// The records of `domain` (any case, trailing dot allowed).
pub fn dns_records(config: &Config, domain: &str) -> Result<DnsRecords, DnsRecordsError> {
    let managed = config
        .policy
        .domain(domain)
        .ok_or_else(|| DnsRecordsError::NotManaged(domain.to_string()))?;
    let name = managed.name.as_str();
    let hosted = config
        .hosted_mta_sts
        .get(name)
        .ok_or_else(|| DnsRecordsError::NoPolicy(name.to_string()))?;
    let sts = mta_sts_record(&hosted.policy);
    let tlsrpt = tlsrpt_record(name, &hosted.tlsrpt).map_err(|source| DnsRecordsError::TlsRpt {
        domain: name.to_string(),
        source,
    })?;
    let host = policy_host(name);
    let mut warnings = Vec::new();
    if !managed.enabled {
        warnings.push(format!(
            "{name} is disabled: its policy is not served until it is enabled"
        ));
    }
    if config.mta_sts_host.listen.is_empty() {
        warnings.push(format!(
            "[mta_sts_host] listen is empty: no policy is served (senders fetch it from port 443 of {host})"
        ));
    }
    if config.tls.sni.iter().any(|(n, _)| n.as_str() == host) {
        // A configured certificate: nothing to say.
    } else if config.acme.is_some() {
        warnings.extend(acme_warning(config, &host));
    } else {
        warnings.push(format!(
            "no [[tls.sni]] certificate for {host}: the default STARTTLS certificate is presented, and senders reject the policy unless it is valid for {host}"
        ));
    }
    Ok(DnsRecords {
        domain: name.to_string(),
        mode: hosted.policy.mode,
        max_age: hosted.policy.max_age,
        policy_url: format!("https://{host}{WELL_KNOWN_PATH}"),
        policy: hosted.policy.body(),
        records: [sts, tlsrpt]
            .into_iter()
            .map(|r| DnsRecord {
                name: r.name,
                record_type: "TXT",
                value: r.value,
            })
            .collect(),
        tlsrpt_is_default: hosted.tlsrpt_is_default,
        warnings,
    })
}

/// What ACME recorded for `host` (`<data_dir>/acme/status.json`, written
/// by the running server), as a warning unless its certificate is valid.
fn acme_warning(config: &Config, host: &str) -> Option<String> {
    use crate::acme::{AcmeStore, State};
    let records = match AcmeStore::new(&config.server.data_dir).status() {
        Ok(records) => records,
        Err(e) => return Some(format!("cannot read the ACME state: {e}")),
    };
    let Some(record) = records.get(host) else {
        return Some(format!(
            "ACME has not obtained a certificate for {host} yet (is `sealpost serve` running?)"
        ));
    };
    let error = record.last_error.as_deref().unwrap_or("no detail");
    let next = crate::date::rfc5322_date(record.next_attempt);
    match record.state {
        State::Valid => None,
        State::Pending => Some(format!(
            "ACME has not obtained a certificate for {host} yet"
        )),
        State::DnsMismatch => Some(format!(
            "{host} does not point at this gateway, so ACME does not order its certificate: {error}; next check {next}"
        )),
        State::Failed => Some(format!(
            "ACME could not obtain a certificate for {host} ({} failures in a row): {error}; next attempt {next}",
            record.failures
        )),
    }
}

/// Zone-file lines; notes and warnings are `;` comments.
impl fmt::Display for DnsRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "; MTA-STS for {} (mode {}, max_age {}), policy at {}",
            self.domain, self.mode, self.max_age, self.policy_url
        )?;
        if self.tlsrpt_is_default {
            writeln!(
                f,
                "; TLSRPT reports go to the default mailto:tlsrpt@{} ([domains.mta_sts] tlsrpt changes it)",
                self.domain
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "; warning: {warning}")?;
        }
        for record in &self.records {
            writeln!(
                f,
                "{} IN {} \"{}\"",
                record.name, record.record_type, record.value
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[mta_sts_host]
listen = ["127.0.0.1:8443"]

[[tls.sni]]
name = "mta-sts.example.org"
certificate = "a.crt"
key = "a.key"

[[domains]]
name = "Example.org"
tenant = "t"
mta_sts = { mode = "MODE", mx = ["mx1.example.net", "*.example.net"], tlsrpt = "mailto:reports@example.org" }

[[domains]]
name = "plain.example"
tenant = "t"

[[domains]]
name = "off.example"
tenant = "t"
enabled = false
mta_sts = { mode = "testing", mx = ["mx.off.example"] }
"#;

    #[test]
    fn records_and_their_id_follow_the_policy() {
        let enforce = Config::for_test(&TEXT.replace("MODE", "enforce"));
        let records = dns_records(&enforce, "EXAMPLE.org.").expect("records");
        assert_eq!(records.domain, "example.org");
        assert!(records.warnings.is_empty(), "{:?}", records.warnings);
        assert_eq!(records.records[0].name, "_mta-sts.example.org.");
        assert!(records.records[0].value.starts_with("v=STSv1; id="));
        assert_eq!(
            records.records[1].value,
            "v=TLSRPTv1; rua=mailto:reports@example.org"
        );
        assert_eq!(
            records.policy_url,
            "https://mta-sts.example.org/.well-known/mta-sts.txt"
        );
        let text = records.to_string();
        assert!(
            text.contains("\n_mta-sts.example.org. IN TXT \"v=STSv1; id="),
            "{text}"
        );

        let testing = Config::for_test(&TEXT.replace("MODE", "testing"));
        let changed = dns_records(&testing, "example.org").expect("records");
        assert_ne!(changed.records[0], records.records[0]);
        assert_eq!(changed.records[1], records.records[1]);
    }

    #[test]
    fn defaults_warnings_and_refusals() {
        let config = Config::for_test(&TEXT.replace("MODE", "enforce"));
        let off = dns_records(&config, "off.example").expect("records");
        assert!(off.tlsrpt_is_default);
        assert_eq!(
            off.records[1].value,
            "v=TLSRPTv1; rua=mailto:tlsrpt@off.example"
        );
        assert_eq!(off.max_age, 604800);
        assert_eq!(off.warnings.len(), 2, "{:?}", off.warnings);
        assert!(off.warnings[0].contains("disabled"));
        assert!(off.warnings[1].contains("mta-sts.off.example"));
        assert_eq!(
            dns_records(&config, "plain.example"),
            Err(DnsRecordsError::NoPolicy("plain.example".into()))
        );
        assert_eq!(
            dns_records(&config, "other.example"),
            Err(DnsRecordsError::NotManaged("other.example".into()))
        );
    }
}
