//! The `sealpost` command: argument parsing only; the library does the work
//! (`sealpost::cli`).
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use sealpost::admin::views::FilterSpec;
use sealpost::cli::{
    self, AdminOptions, GlobalOptions, ProbeRequest, QueueAction, QueueCommand, Target,
};
use sealpost::logging::LogFormat;
use sealpost::policy::{Direction, ExplainRequest};

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
    /// Inspect and act on the queue of the running server (admin socket).
    Queue {
        #[command(subcommand)]
        command: QueueArgs,
    },
    /// What the running server's delivery engine knows of each destination.
    Destinations {
        #[command(subcommand)]
        command: Option<DestinationsArgs>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// TLS reports (RFC 8460) the running server received for managed domains.
    TlsReports {
        #[command(subcommand)]
        command: TlsReportsArgs,
    },
    /// Make the running server reload its configuration and certificates.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A live view of the running server, refreshed each second: messages
    /// per second, the queue, the busiest destinations with their TLS
    /// level, tenants, defer reasons (keys: q quit, s sort, / tenant,
    /// j/k select, h hold, u release, r retry the selected destination).
    Top {
        /// The admin socket (default: `[admin] socket` of the configuration).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// The running server's tenants, or one tenant's file, version and domains.
    Tenants {
        tenant: Option<String>,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// List and change managed domains live (written to the tenant's file).
    Domains {
        #[command(subcommand)]
        command: cli::DomainsCommand,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// List and change a domain's TLS peers live (written to the tenant's file).
    Peers {
        #[command(subcommand)]
        command: cli::PeersCommand,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// The audit log of changes made through the admin API.
    Audit {
        #[arg(long)]
        tenant: Option<String>,
        /// The last N records.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        #[command(flatten)]
        api: cli::ApiArgs,
    },
    /// The fleet of nodes sharing `[cluster]` Redis (read from Redis).
    Fleet {
        #[command(subcommand)]
        command: FleetArgs,
    },
}

#[derive(Debug, Subcommand)]
enum FleetArgs {
    /// Every node heard of in the last hour: alive or silent, limits
    /// shared or local, its queue.
    Status,
    /// Every destination the nodes report: the fleet's queue, connections
    /// and connection leases, pauses and last errors.
    Destinations,
}

#[derive(Debug, Subcommand)]
enum TlsReportsArgs {
    /// Reports received, summed per tenant, sending organization and
    /// failure type.
    Received {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reports this server sent about its outbound sessions, and those
    /// pending (counted, sent after midnight UTC).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One report's JSON: as sent, or as it would be sent now.
    Show {
        /// The UTC day, YYYY-MM-DD.
        day: String,
        /// The tenant whose mail the sessions carried.
        tenant: String,
        /// The policy domain (the recipient domain).
        domain: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send every finished day's reports not sent yet, now.
    SendNow {
        /// Also today's reports (they are then final for today).
        #[arg(long)]
        include_today: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
enum DestinationsArgs {
    /// End a destination's pause and forget its cached MX, TLSA and
    /// MTA-STS state, so that its next lease is tried at once.
    Flush {
        /// The destination, as `sealpost destinations` lists it (a
        /// recipient domain, or `inbound:<managed domain>`).
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Options of the commands that talk to the running server.
#[derive(Debug, ClapArgs)]
struct AdminArgs {
    /// The admin socket (default: `[admin] socket` of the configuration).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

impl AdminArgs {
    fn options(self) -> AdminOptions {
        AdminOptions {
            socket: self.socket,
            json: self.json,
        }
    }

    /// A subcommand's options, with those given before it as defaults.
    fn or(self, parent: AdminArgs) -> AdminArgs {
        AdminArgs {
            socket: self.socket.or(parent.socket),
            json: self.json || parent.json,
        }
    }
}

/// Which messages: every option given must match.
#[derive(Debug, ClapArgs)]
struct FilterArgs {
    /// Messages of this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Messages from this envelope sender.
    #[arg(long, value_name = "ADDR")]
    sender: Option<String>,
    /// Messages to this recipient address.
    #[arg(long, value_name = "ADDR")]
    recipient: Option<String>,
    /// Messages to a recipient in this domain.
    #[arg(long)]
    domain: Option<String>,
    /// Messages with a recipient in this state (queued, active, deferred, held, delivered, failed, expired).
    #[arg(long)]
    state: Option<String>,
    /// Messages at least this old (90, 90s, 15m, 2h, 3d).
    #[arg(long, value_name = "AGE")]
    min_age: Option<String>,
    /// Messages with an attempt whose reply or reason contains this text.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

impl FilterArgs {
    fn spec(self) -> FilterSpec {
        FilterSpec {
            tenant: self.tenant,
            sender: self.sender,
            recipient: self.recipient,
            domain: self.domain,
            state: self.state,
            min_age: self.min_age,
            reason: self.reason,
        }
    }
}

/// One message by id, or the messages a filter matches.
#[derive(Debug, ClapArgs)]
struct TargetArgs {
    /// The message id (16 hex digits); or use filter options.
    #[arg(conflicts_with_all = ["tenant", "sender", "recipient", "domain", "state", "min_age", "reason", "all"])]
    id: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Act on every message in the queue (required when no filter is given).
    #[arg(long)]
    all: bool,
}

impl TargetArgs {
    fn target(self) -> Target {
        match self.id {
            Some(id) => Target::Message(id),
            None => Target::Filter {
                filter: self.filter.spec(),
                all: self.all,
            },
        }
    }
}

#[derive(Debug, Subcommand)]
enum QueueArgs {
    /// Counts by state, tenant and destination, the oldest message, top defer reasons.
    Summary {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List messages, oldest first, a page at a time.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Continue after this message id (the `more:` line of the previous page).
        #[arg(long, value_name = "ID")]
        cursor: Option<String>,
        /// Messages per page (1 to 1000, default 100).
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One message: envelope, recipients, every attempt, its policy.
    Show {
        /// The message id (16 hex digits).
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Hand this node's queued and deferred messages to another sealpost
    /// node over SMTP (it must list this node in `[cluster] peers`); runs
    /// in the daemon and shows its progress until it ends.
    Drain {
        /// The other node's SMTP listener.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// Only this tenant's messages.
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// Start the drain and return without following it.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make deferred recipients due now.
    Retry {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Hold waiting recipients until released.
    Hold {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Release held recipients (due now).
    Release {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove messages without a bounce.
    Delete {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Fail unfinished recipients now and send the sender a bounce.
    Bounce {
        #[command(flatten)]
        target: TargetArgs,
        /// The reason the bounce gives.
        #[arg(long, value_name = "TEXT")]
        bounce_reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// What a `queue` subcommand runs: one admin request, or a drain (which
/// follows its progress).
enum QueueRun {
    Ask(QueueCommand, AdminOptions),
    Drain(sealpost::admin::drain::DrainRequest, bool, AdminOptions),
}

impl QueueArgs {
    fn command(self) -> QueueRun {
        let act = |action, target: TargetArgs, bounce_reason, admin: AdminArgs| {
            QueueRun::Ask(
                QueueCommand::Act {
                    action,
                    target: target.target(),
                    bounce_reason,
                },
                admin.options(),
            )
        };
        match self {
            QueueArgs::Summary { admin } => QueueRun::Ask(QueueCommand::Summary, admin.options()),
            QueueArgs::List {
                filter,
                cursor,
                limit,
                admin,
            } => QueueRun::Ask(
                QueueCommand::List {
                    filter: filter.spec(),
                    cursor,
                    limit,
                },
                admin.options(),
            ),
            QueueArgs::Show { id, admin } => {
                QueueRun::Ask(QueueCommand::Show { id }, admin.options())
            }
            QueueArgs::Drain {
                to,
                tenant,
                no_wait,
                admin,
            } => QueueRun::Drain(
                sealpost::admin::drain::DrainRequest { to, tenant },
                !no_wait,
                admin.options(),
            ),
            QueueArgs::Retry { target, admin } => act(QueueAction::Retry, target, None, admin),
            QueueArgs::Hold { target, admin } => act(QueueAction::Hold, target, None, admin),
            QueueArgs::Release { target, admin } => act(QueueAction::Release, target, None, admin),
            QueueArgs::Delete { target, admin } => act(QueueAction::Delete, target, None, admin),
            QueueArgs::Bounce {
                target,
                bounce_reason,
                admin,
            } => act(QueueAction::Bounce, target, bounce_reason, admin),
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration: print a summary, or every error (exit 1).
    Check,
    /// Split the --config file into a main file and one file per tenant
    /// (the original is kept as FILE.orig).
    Split {
        /// The tenant files' directory, relative to the file's.
        #[arg(long, default_value = "tenants.d", value_name = "DIR")]
        tenants_dir: String,
    },
    /// Print the --config file with its tenant files merged into one.
    Merge,
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
        Command::Config {
            command: ConfigCommand::Split { tenants_dir },
        } => cli::config_split(&global, &tenants_dir, &mut out, &mut err),
        Command::Config {
            command: ConfigCommand::Merge,
        } => cli::config_merge(&global, &mut out, &mut err),
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
        Command::Queue { command } => match command.command() {
            QueueRun::Ask(command, options) => {
                cli::queue(&global, &options, &command, &mut out, &mut err)
            }
            QueueRun::Drain(request, wait, options) => {
                cli::queue_drain(&global, &options, &request, wait, &mut out, &mut err)
            }
        },
        Command::Destinations {
            command: None,
            admin,
        } => cli::destinations(&global, &admin.options(), &mut out, &mut err),
        Command::Destinations {
            command: Some(DestinationsArgs::Flush { name, admin: own }),
            admin,
        } => cli::destination_flush(&global, &own.or(admin).options(), &name, &mut out, &mut err),
        Command::Reload { admin } => cli::reload(&global, &admin.options(), &mut out, &mut err),
        Command::Tenants { tenant, api } => {
            cli::tenants(&global, &api, tenant.as_deref(), &mut out, &mut err)
        }
        Command::Domains { command, api } => {
            cli::domains(&global, &api, &command, &mut out, &mut err)
        }
        Command::Peers { command, api } => cli::peers(&global, &api, &command, &mut out, &mut err),
        Command::Audit { tenant, limit, api } => {
            cli::audit(&global, &api, tenant.as_deref(), limit, &mut out, &mut err)
        }
        Command::Fleet { command } => {
            let command = match command {
                FleetArgs::Status => cli::FleetCommand::Status,
                FleetArgs::Destinations => cli::FleetCommand::Destinations,
            };
            cli::fleet(&global, command, &mut out, &mut err)
        }
        Command::TlsReports {
            command: TlsReportsArgs::Received { admin },
        } => cli::tls_reports_received(&global, &admin.options(), &mut out, &mut err),
        Command::TlsReports {
            command: TlsReportsArgs::List { admin },
        } => cli::tls_reports_list(&global, &admin.options(), &mut out, &mut err),
        Command::TlsReports {
            command:
                TlsReportsArgs::Show {
                    day,
                    tenant,
                    domain,
                    admin,
                },
        } => cli::tls_reports_show(
            &global,
            &admin.options(),
            &sealpost::tlsrpt::ReportKey {
                day,
                tenant,
                domain,
            },
            &mut out,
            &mut err,
        ),
        Command::TlsReports {
            command:
                TlsReportsArgs::SendNow {
                    include_today,
                    admin,
                },
        } => {
            cli::tls_reports_send_now(&global, &admin.options(), include_today, &mut out, &mut err)
        }
        Command::Top { socket } => cli::top(
            &global,
            &AdminOptions {
                socket,
                json: false,
            },
            &mut err,
        ),
    };
    match status {
        Ok(code) => ExitCode::from(code),
        // Standard output or error is gone (e.g. a closed pipe): nothing left to tell.
        Err(_) => ExitCode::from(cli::EXIT_FAILURE),
    }
}
