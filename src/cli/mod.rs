//! The commands of the `sealpost` binary. `src/main.rs` parses arguments
//! with clap and calls these; each returns the process exit code and writes
//! its report to the given writers (normally standard output and error).
//!
//! Exit codes: 0 success, 1 the configuration or the request is invalid,
//! the daemon refused the request or is not reachable (or the command is
//! not implemented yet), 2 bad usage (clap's own).

mod admin;
mod dns_records;
mod drain;
mod fleet;
mod probe;
mod split;
mod tenants;
mod tls_reports;
mod top;

use std::io::{self, Write};
use std::path::PathBuf;

pub use admin::{
    destination_flush, destinations, queue, reload, tls_reports_received, AdminOptions,
    QueueAction, QueueCommand, Target,
};
pub use dns_records::{dns_records, DnsRecord, DnsRecords, DnsRecordsError};
pub use drain::drain as queue_drain;
pub use fleet::{fleet, FleetCommand};
pub use probe::{probe, probe_settings, ProbeRequest};
pub use split::{config_merge, config_split, same_policy};
pub use tenants::{audit, domains, peers, tenants, ApiArgs, DomainsCommand, PeersCommand};
pub use tls_reports::{tls_reports_list, tls_reports_send_now, tls_reports_show};
pub use top::{top, App as TopApp};

use crate::config::{Config, LoadError};
use crate::logging::{self, LogFormat};
use crate::policy::{explain, ExplainRequest, SecurityLevel};

/// Options every command takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalOptions {
    /// `--config`; `None` runs on the embedded default.
    pub config: Option<PathBuf>,
    /// `--log-format`, overriding `[logging] format`.
    pub log_format: Option<LogFormat>,
    /// `--log-level`, overriding `RUST_LOG` and `[logging] level`.
    pub log_level: Option<String>,
}

/// A command's outcome as a process exit code.
pub type ExitStatus = u8;

pub const EXIT_OK: ExitStatus = 0;
pub const EXIT_FAILURE: ExitStatus = 1;

/// Loads the configuration, printing every error to `err`.
fn load(global: &GlobalOptions, err: &mut dyn Write) -> io::Result<Option<Config>> {
    report_load(Config::load_or_default(global.config.as_deref()), err)
}

/// The main configuration file alone (`Config::load_main`), printing
/// every error to `err`: enough to find the admin socket.
fn load_main(global: &GlobalOptions, err: &mut dyn Write) -> io::Result<Option<Config>> {
    let loaded = match global.config.as_deref() {
        Some(path) => Config::load_main(path),
        None => Config::embedded_default().map_err(LoadError::Invalid),
    };
    report_load(loaded, err)
}

fn report_load(
    loaded: Result<Config, LoadError>,
    err: &mut dyn Write,
) -> io::Result<Option<Config>> {
    match loaded {
        Ok(config) => Ok(Some(config)),
        Err(LoadError::Invalid(errors)) => {
            writeln!(err, "{errors}")?;
            writeln!(
                err,
                "{} error{} in the configuration",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            )?;
            Ok(None)
        }
        Err(e @ LoadError::Io { .. }) => {
            writeln!(err, "{e}")?;
            Ok(None)
        }
    }
}

/// Installs logging from the flags, `RUST_LOG` and the configuration.
fn start_logging(global: &GlobalOptions, config: &Config) -> Result<(), logging::LoggingError> {
    let env = std::env::var("RUST_LOG").ok();
    let filter = logging::choose_filter(
        global.log_level.as_deref(),
        env.as_deref(),
        &config.logging.level,
    );
    logging::init(global.log_format.unwrap_or(config.logging.format), filter)
}

/// `sealpost serve`: loads the configuration, opens the queue, and accepts
/// mail on every listener until SIGINT or SIGTERM (see [`crate::server`]).
pub fn serve(global: &GlobalOptions, err: &mut dyn Write) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    if let Err(e) = start_logging(global, &config) {
        writeln!(err, "{e}")?;
        return Ok(EXIT_FAILURE);
    }
    match crate::server::run(config) {
        Ok(()) => Ok(EXIT_OK),
        Err(e) => {
            tracing::error!(error = %e, "sealpost stopped");
            writeln!(err, "sealpost serve: {e}")?;
            Ok(EXIT_FAILURE)
        }
    }
}

/// `sealpost config check`: a summary on `out`, or every error on `err`;
/// warnings (valid but risky settings) go to `err` with status 0.
pub fn config_check(
    global: &GlobalOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let policy = &config.policy;
    let domains = policy.domains();
    let disabled = domains.iter().filter(|d| !d.enabled).count();
    let mut tenants: Vec<&str> = domains.iter().map(|d| d.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let outbound: usize = domains.iter().map(|d| d.outbound.peers.len()).sum();
    let inbound: usize = domains.iter().map(|d| d.inbound.peers.len()).sum();
    let mandatory = domains
        .iter()
        .flat_map(|d| d.outbound.peers.iter().chain(&d.inbound.peers))
        .filter(|p| p.rule.level != SecurityLevel::Opportunistic)
        .count();
    writeln!(out, "configuration OK: {}", config.source)?;
    writeln!(out, "  hostname:        {}", config.server.hostname)?;
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    writeln!(out, "  listeners:       {}", listeners.join(", "))?;
    writeln!(
        out,
        "  data directory:  {}",
        config.server.data_dir.display()
    )?;
    writeln!(out, "  admin socket:    {}", config.admin.socket.display())?;
    if let Some(dir) = &config.tenant_files.dir {
        writeln!(
            out,
            "  tenant files:    {} in {}",
            config.tenant_files.files.len(),
            dir.display()
        )?;
    }
    writeln!(
        out,
        "  logging:         {} at {}",
        config.logging.format, config.logging.level
    )?;
    writeln!(out, "  default outbound: {}", policy.defaults().outbound)?;
    writeln!(out, "  default inbound:  {}", policy.defaults().inbound)?;
    writeln!(
        out,
        "  managed domains: {} ({} disabled) of {} tenant{}",
        domains.len(),
        disabled,
        tenants.len(),
        if tenants.len() == 1 { "" } else { "s" }
    )?;
    writeln!(
        out,
        "  peer entries:    {outbound} outbound, {inbound} inbound ({mandatory} stricter than opportunistic)"
    )?;
    if let Some(cluster) = &config.cluster {
        writeln!(
            out,
            "  cluster:         node {} on {}",
            cluster.node,
            cluster.redis_without_password()
        )?;
    }
    let listed: usize = config.recipients.values().map(|l| l.len()).sum();
    writeln!(
        out,
        "  recipient lists: {} ({listed} addresses)",
        config.recipients.len()
    )?;
    let served: Vec<String> = config
        .mta_sts_host
        .listen
        .iter()
        .map(|a| a.to_string())
        .collect();
    writeln!(
        out,
        "  hosted MTA-STS:  {} of {} configured served{}",
        config.hosted_policies().len(),
        config.hosted_mta_sts.len(),
        if served.is_empty() {
            " (no [mta_sts_host] listen address)".to_string()
        } else {
            format!(" on {}", served.join(", "))
        }
    )?;
    writeln!(out, "  AUTH users:      {}", config.users.len())?;
    // Valid but risky: on stderr, file:line first, the exit status stays 0.
    for warning in &config.warnings {
        writeln!(err, "{warning}")?;
    }
    if !config.warnings.is_empty() {
        writeln!(
            out,
            "  warnings:        {} (on stderr)",
            config.warnings.len()
        )?;
    }
    Ok(EXIT_OK)
}

/// `sealpost policy explain`: the policy for one message, as text or JSON.
pub fn policy_explain(
    global: &GlobalOptions,
    request: &ExplainRequest,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    print_answer(
        "policy explain",
        explain(&config.policy, request),
        json,
        |out, explanation| writeln!(out, "{explanation}"),
        out,
        err,
    )
}

/// `sealpost dns-records`: the `_mta-sts` and `_smtp._tls` TXT records of a
/// managed domain's hosted MTA-STS policy, as zone-file lines or JSON.
pub fn dns_records_command(
    global: &GlobalOptions,
    domain: &str,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    print_answer(
        "dns-records",
        dns_records(&config, domain),
        json,
        |out, records| write!(out, "{records}"),
        out,
        err,
    )
}

/// Prints the answer of `sealpost <command>`: as pretty JSON on `out` with
/// `json`, else as `text` writes it; an error on `err` (exit 1).
fn print_answer<T: serde::Serialize, E: std::fmt::Display>(
    command: &str,
    answer: Result<T, E>,
    json: bool,
    text: impl FnOnce(&mut dyn Write, &T) -> io::Result<()>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    match answer {
        Ok(answer) if json => {
            serde_json::to_writer_pretty(&mut *out, &answer).map_err(io::Error::other)?;
            writeln!(out)?;
            Ok(EXIT_OK)
        }
        Ok(answer) => {
            text(out, &answer)?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "sealpost {command}: {e}")?;
            Ok(EXIT_FAILURE)
        }
    }
}

/// `sealpost hash-password`: reads one password (the first line of
/// `input`, without its line end) and prints its `pbkdf2-sha256$...` hash
/// for `[[tenants]] users`.
pub fn hash_password_command(
    iterations: u32,
    input: &mut dyn io::BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        writeln!(
            err,
            "sealpost hash-password: no password on standard input (one line)"
        )?;
        return Ok(EXIT_FAILURE);
    }
    match crate::auth::hash_password(password.as_bytes(), iterations) {
        Ok(hash) => {
            writeln!(out, "{hash}")?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "sealpost hash-password: {e}")?;
            Ok(EXIT_FAILURE)
        }
    }
}
