//! The `sealpost` command: argument parsing only; the library does the work
//! (`sealpost::cli`).
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sealpost::cli::{self, ExplainRequest, GlobalOptions, ProbeRequest};
use sealpost::logging::LogFormat;
use sealpost::policy::Direction;

/// A mail transfer agent for email security gateways with per-domain TLS peer policies.
#[derive(Debug, Parser)]
#[command(name = "sealpost", version, about)]
struct Args {
    /// Configuration file (default: the embedded default configuration).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format: human or json (default: from the configuration).
    #[arg(long, global = true, value_name = "human|json")]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. `debug` or `sealpost=debug,info` (overrides RUST_LOG and the configuration).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mail server.
    Serve,
    /// Work with the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect the TLS peer policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Hash a password for `[[tenants]] users` (SMTP AUTH); the password is
    /// read from the first line of standard input.
    HashPassword {
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = sealpost::auth::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Print the DNS records a managed domain publishes for its hosted
    /// MTA-STS policy (`_mta-sts` and `_smtp._tls` TXT).
    DnsRecords {
        /// The managed domain.
        domain: String,
        /// Print JSON instead of zone-file lines.
        #[arg(long)]
        json: bool,
    },
    /// Show what each security level would do with mail for a domain:
    /// MX, TLSA (DNSSEC), MTA-STS, and a STARTTLS session with every MX
    /// address (EHLO, STARTTLS, EHLO, QUIT; no mail is sent).
    Probe {
        /// The recipient domain.
        domain: String,
        /// A managed domain: also show (and mark) the level sealpost applies
        /// to mail from it to <DOMAIN>.
        #[arg(long, value_name = "DOMAIN")]
        from: Option<String>,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration: print a summary, or every error (exit 1).
    Check,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Show which TLS policy applies to a message, and why.
    Explain {
        /// Envelope sender address or domain (`<>` for the null sender).
        #[arg(long, value_name = "ADDR|DOMAIN")]
        from: String,
        /// Envelope recipient address or domain.
        #[arg(long, value_name = "ADDR|DOMAIN")]
        to: String,
        /// Connecting IP address (inbound).
        #[arg(long, value_name = "ADDR")]
        ip: Option<IpAddr>,
        /// inbound or outbound (default: outbound if --from's domain is managed, else inbound).
        #[arg(long, value_name = "inbound|outbound")]
        direction: Option<Direction>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let global = GlobalOptions {
        config: args.config,
        log_format: args.log_format,
        log_level: args.log_level,
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let status = match args.command {
        Command::Serve => cli::serve(&global, &mut err),
        Command::Config {
            command: ConfigCommand::Check,
        } => cli::config_check(&global, &mut out, &mut err),
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    from,
                    to,
                    ip,
                    direction,
                    json,
                },
        } => {
            let request = ExplainRequest {
                from,
                to,
                ip,
                direction,
            };
            cli::policy_explain(&global, &request, json, &mut out, &mut err)
        }
        Command::HashPassword { iterations } => {
            cli::hash_password_command(iterations, &mut std::io::stdin().lock(), &mut out, &mut err)
        }
        Command::DnsRecords { domain, json } => {
            cli::dns_records_command(&global, &domain, json, &mut out, &mut err)
        }
        Command::Probe { domain, from, json } => {
            let request = ProbeRequest { domain, from, json };
            cli::probe(&global, &request, &mut out, &mut err)
        }
    };
    match status {
        Ok(code) => ExitCode::from(code),
        // Standard output or error is gone (e.g. a closed pipe): nothing left to tell.
        Err(_) => ExitCode::from(cli::EXIT_FAILURE),
    }
}
