//! `sealpost probe <domain> [--from <managed domain>] [--json]`: runs the
//! probe ([`crate::probe`]) with the configuration's `[dns]`, `[delivery]
//! smtp_port` and `[mta_sts]` settings, and prints the report. With
//! `--from`, the level the policy applies to (managed domain, `<domain>`)
//! is resolved as the delivery engine would and marked in the report.
//!
//! Exit codes: 0 when the report was printed (whatever the levels would
//! do), 1 when the domain cannot receive mail (does not exist, null MX, no
//! MX or address records), DNS failed, or the configuration is invalid.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{load, start_logging, ExitStatus, GlobalOptions};
use super::{EXIT_FAILURE, EXIT_OK};
use crate::config::Config;
use crate::policy::domain_of;
use crate::policy::PeerQuery;
use crate::probe::{gather, trust_roots, Configured, ProbeError, ProbeReport, ProbeSettings};

/// Bound on each SMTP stage and the policy fetch unless `[delivery]
/// command_timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to probe, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// The recipient domain.
    pub domain: String,
    /// A managed domain (or an address in it): the sending side whose
    /// policy is resolved.
    pub from: Option<String>,
    pub json: bool,
}

/// The probe settings from the configuration.
pub fn probe_settings(config: &Config) -> Result<ProbeSettings, ProbeError> {
    Ok(ProbeSettings {
        resolver: config.dns.resolver_settings(),
        smtp_port: config.delivery.smtp_port,
        https_port: config.mta_sts.https_port,
        roots: trust_roots(config.mta_sts.ca_file.as_deref())?,
        helo_name: config.server.hostname.as_str().to_string(),
        timeout: config.delivery.command_timeout.unwrap_or(DEFAULT_TIMEOUT),
    })
}

/// `sealpost probe`.
pub fn probe(
    global: &GlobalOptions,
    request: &ProbeRequest,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    // Logs only when asked for: standard output carries the report.
    if global.log_level.is_some() {
        if let Err(e) = start_logging(global, &config) {
            writeln!(err, "{e}")?;
            return Ok(EXIT_FAILURE);
        }
    }
    let domain = request
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let configured = match &request.from {
        None => None,
        Some(from) => {
            let Some(managed) = domain_of(from) else {
                writeln!(err, "sealpost probe: `--from {from}` has no domain")?;
                return Ok(EXIT_FAILURE);
            };
            let managed = managed.trim_end_matches('.').to_ascii_lowercase();
            if config.policy.domain(&managed).is_none() {
                writeln!(
                    err,
                    "note: {managed} is not a managed domain; the global default applies"
                )?;
            }
            let resolution = config.policy.resolve(
                &managed,
                PeerQuery::Outbound {
                    recipient_domain: &domain,
                },
            );
            Some(Configured {
                managed_domain: managed,
                resolution,
            })
        }
    };
    let settings = match probe_settings(&config) {
        Ok(settings) => settings,
        Err(e) => {
            writeln!(err, "sealpost probe: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let facts = match runtime.block_on(gather(&settings, &domain)) {
        Ok(facts) => facts,
        Err(e) => {
            writeln!(err, "sealpost probe: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let report = ProbeReport::new(&facts, configured, now);
    if request.json {
        serde_json::to_writer_pretty(&mut *out, &report).map_err(io::Error::other)?;
        writeln!(out)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(EXIT_OK)
}
