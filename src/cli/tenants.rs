//! `sealpost tenants`, `sealpost domains ...`, `sealpost peers ...` and
//! `sealpost audit`: the running server's tenants, and live changes to
//! their domains and peers through the admin socket (each written to the
//! tenant's file, applied at once and recorded in the audit log; see
//! `docs/operations.md`, "Changing tenants live").

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;

use super::admin::{ask, Call};
use super::{ExitStatus, GlobalOptions};
use crate::admin::audit::AuditRecord;
use crate::admin::client::Answer;
use crate::admin::http::percent_encode;
use crate::admin::tenant_edits::{ChangeAnswer, DirectionView, DomainView, TenantDetail};
use crate::cli::AdminOptions;
use crate::policy::Direction;

/// Options of the commands that talk to the running server.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiArgs {
    /// The admin socket (default: `[admin] socket` of the configuration).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Refuse the change (409) unless the tenant's version is still this
    /// one (as `sealpost tenants TENANT` shows it).
    #[arg(long, value_name = "VERSION", global = true)]
    pub if_version: Option<String>,
}

impl ApiArgs {
    fn options(&self) -> AdminOptions {
        AdminOptions {
            socket: self.socket.clone(),
            json: self.json,
        }
    }
}

/// `sealpost domains ...`
#[derive(Debug, Clone, Subcommand)]
pub enum DomainsCommand {
    /// List the managed domains (of one tenant).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Add a managed domain to a tenant (its file is created if needed).
    Add {
        name: String,
        #[arg(long)]
        tenant: String,
        /// Add it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Enable a managed domain.
    Enable { name: String },
    /// Disable a managed domain (it stays configured).
    Disable { name: String },
    /// Remove a managed domain and its peers.
    Remove { name: String },
    /// Set (or with --clear remove) a domain's default for one direction.
    Defaults {
        name: String,
        #[arg(long, value_name = "outbound|inbound")]
        direction: Direction,
        #[arg(long, required_unless_present = "clear")]
        level: Option<String>,
        #[arg(long, value_name = "1.2|1.3|any")]
        min_tls: Option<String>,
        /// Remove the domain's own default: `[defaults]` applies.
        #[arg(long, conflicts_with_all = ["level", "min_tls"])]
        clear: bool,
    },
}

/// The domain and direction a peer command is about.
#[derive(Debug, Clone, Args)]
pub struct PeerPlace {
    #[arg(long, value_name = "DOMAIN")]
    pub domain: String,
    #[arg(long, value_name = "outbound|inbound")]
    pub direction: Direction,
}

/// `sealpost peers ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PeersCommand {
    /// List a domain's peers and default for one direction.
    List {
        #[command(flatten)]
        place: PeerPlace,
    },
    /// Add a peer entry.
    Add {
        peer: String,
        #[command(flatten)]
        place: PeerPlace,
        #[arg(long)]
        level: String,
        #[arg(long, value_name = "1.2|1.3|any")]
        min_tls: Option<String>,
        /// Add it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a peer entry's level, minimum TLS version or state.
    Edit {
        peer: String,
        #[command(flatten)]
        place: PeerPlace,
        #[arg(long)]
        level: Option<String>,
        #[arg(long, value_name = "1.2|1.3|any")]
        min_tls: Option<String>,
        /// Remove the entry's own minimum TLS version.
        #[arg(long, conflicts_with = "min_tls")]
        no_min_tls: bool,
        #[arg(long, value_name = "true|false")]
        enabled: Option<bool>,
    },
    /// Enable a peer entry.
    Enable {
        peer: String,
        #[command(flatten)]
        place: PeerPlace,
    },
    /// Disable a peer entry (it stays configured).
    Disable {
        peer: String,
        #[command(flatten)]
        place: PeerPlace,
    },
    /// Remove a peer entry.
    Remove {
        peer: String,
        #[command(flatten)]
        place: PeerPlace,
    },
}

fn segment(s: &str) -> String {
    percent_encode(s)
}

fn body(version: &Option<String>, fields: serde_json::Value) -> Option<Vec<u8>> {
    let mut value = fields;
    if let (Some(v), Some(map)) = (version, value.as_object_mut()) {
        map.insert("version".into(), serde_json::Value::from(v.clone()));
    }
    serde_json::to_vec(&value).ok()
}

/// `sealpost tenants [TENANT]`
pub fn tenants(
    global: &GlobalOptions,
    api: &ApiArgs,
    tenant: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let path = match tenant {
        Some(t) => format!("/tenants/{}", segment(t)),
        None => "/tenants".to_owned(),
    };
    let call = Call {
        command: "tenants",
        method: Method::GET,
        path: &path,
        body: None,
    };
    let text = |answer: &Answer, out: &mut dyn Write| match tenant {
        Some(_) => {
            let detail: TenantDetail = super::admin::decode(answer, "tenants")?;
            writeln!(
                out,
                "tenant {}: file {}, version {}",
                detail.tenant,
                detail.file.as_deref().unwrap_or("(main file)"),
                detail.version.as_deref().unwrap_or("-")
            )?;
            print_domains(&detail.domains, out)
        }
        None => {
            let list: serde_json::Value = super::admin::decode(answer, "tenants")?;
            writeln!(out, "{:<24} {:>8} {:>8}", "TENANT", "DOMAINS", "QUEUED")?;
            for t in list["tenants"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{:<24} {:>8} {:>8}",
                    t["name"].as_str().unwrap_or(""),
                    t["domains"].as_array().map_or(0, Vec::len),
                    t["queued_messages"].as_u64().unwrap_or(0)
                )?;
            }
            Ok(())
        }
    };
    ask(global, &api.options(), call, text, out, err)
}

fn print_domains(domains: &[DomainView], out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<32} {:<16} {:<8} {:>9} {:>8}",
        "DOMAIN", "TENANT", "ENABLED", "OUTBOUND", "INBOUND"
    )?;
    for d in domains {
        writeln!(
            out,
            "{:<32} {:<16} {:<8} {:>9} {:>8}",
            d.name,
            d.tenant,
            if d.enabled { "yes" } else { "no" },
            d.outbound.peers.len(),
            d.inbound.peers.len()
        )?;
    }
    Ok(())
}

fn print_change(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    let change: ChangeAnswer = super::admin::decode(answer, "change")?;
    writeln!(
        out,
        "{}: done in {} (tenant {}, version {}, generation {})",
        change.change, change.file, change.tenant, change.version, change.generation
    )
}

/// `sealpost domains ...`
pub fn domains(
    global: &GlobalOptions,
    api: &ApiArgs,
    command: &DomainsCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let v = &api.if_version;
    let (method, path, body) = match command {
        DomainsCommand::List { tenant } => {
            let path = match tenant {
                Some(t) => format!("/domains?tenant={}", percent_encode(t)),
                None => "/domains".to_owned(),
            };
            let call = Call {
                command: "domains list",
                method: Method::GET,
                path: &path,
                body: None,
            };
            let text = |answer: &Answer, out: &mut dyn Write| {
                let list: serde_json::Value = super::admin::decode(answer, "domains list")?;
                let domains: Vec<DomainView> =
                    serde_json::from_value(list["domains"].clone()).map_err(io::Error::other)?;
                print_domains(&domains, out)
            };
            return ask(global, &api.options(), call, text, out, err);
        }
        DomainsCommand::Add {
            name,
            tenant,
            disabled,
        } => (
            Method::POST,
            "/domains".to_owned(),
            body(
                v,
                serde_json::json!({"name": name, "tenant": tenant, "enabled": !disabled}),
            ),
        ),
        DomainsCommand::Enable { name } => (
            Method::POST,
            format!("/domains/{}/enable", segment(name)),
            body(v, serde_json::json!({})),
        ),
        DomainsCommand::Disable { name } => (
            Method::POST,
            format!("/domains/{}/disable", segment(name)),
            body(v, serde_json::json!({})),
        ),
        DomainsCommand::Remove { name } => (
            Method::DELETE,
            format!("/domains/{}", segment(name)),
            body(v, serde_json::json!({})),
        ),
        DomainsCommand::Defaults {
            name,
            direction,
            level,
            min_tls,
            clear,
        } => (
            if *clear { Method::DELETE } else { Method::PUT },
            format!("/domains/{}/defaults/{direction}", segment(name)),
            body(
                v,
                if *clear {
                    serde_json::json!({})
                } else {
                    serde_json::json!({"level": level, "min_tls": min_tls})
                },
            ),
        ),
    };
    let call = Call {
        command: "domains",
        method,
        path: &path,
        body,
    };
    ask(global, &api.options(), call, print_change, out, err)
}

/// `sealpost peers ...`
pub fn peers(
    global: &GlobalOptions,
    api: &ApiArgs,
    command: &PeersCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let v = &api.if_version;
    let base = |place: &PeerPlace| {
        format!(
            "/domains/{}/peers/{}",
            segment(&place.domain),
            place.direction
        )
    };
    let (method, path, body) = match command {
        PeersCommand::List { place } => {
            let path = base(place);
            let call = Call {
                command: "peers list",
                method: Method::GET,
                path: &path,
                body: None,
            };
            let text = |answer: &Answer, out: &mut dyn Write| {
                let list: DirectionView = super::admin::decode(answer, "peers list")?;
                match &list.default {
                    Some(d) => writeln!(out, "default: {} (TLS {})", d.level, d.min_tls)?,
                    None => writeln!(out, "default: [defaults]")?,
                }
                writeln!(
                    out,
                    "{:<32} {:<20} {:<8} {:<8}",
                    "PEER", "LEVEL", "MIN_TLS", "ENABLED"
                )?;
                for p in &list.peers {
                    writeln!(
                        out,
                        "{:<32} {:<20} {:<8} {:<8}",
                        p.peer,
                        p.level,
                        p.min_tls,
                        if p.enabled { "yes" } else { "no" }
                    )?;
                }
                Ok(())
            };
            return ask(global, &api.options(), call, text, out, err);
        }
        PeersCommand::Add {
            peer,
            place,
            level,
            min_tls,
            disabled,
        } => (
            Method::POST,
            base(place),
            body(
                v,
                serde_json::json!({"peer": peer, "level": level, "min_tls": min_tls, "enabled": !disabled}),
            ),
        ),
        PeersCommand::Edit {
            peer,
            place,
            level,
            min_tls,
            no_min_tls,
            enabled,
        } => {
            let mut fields = serde_json::Map::new();
            if let Some(level) = level {
                fields.insert("level".into(), level.clone().into());
            }
            if let Some(min) = min_tls {
                fields.insert("min_tls".into(), min.clone().into());
            } else if *no_min_tls {
                fields.insert("min_tls".into(), serde_json::Value::Null);
            }
            if let Some(enabled) = enabled {
                fields.insert("enabled".into(), (*enabled).into());
            }
            (
                Method::PATCH,
                format!("{}/{}", base(place), segment(peer)),
                body(v, serde_json::Value::Object(fields)),
            )
        }
        PeersCommand::Enable { peer, place } => (
            Method::POST,
            format!("{}/{}/enable", base(place), segment(peer)),
            body(v, serde_json::json!({})),
        ),
        PeersCommand::Disable { peer, place } => (
            Method::POST,
            format!("{}/{}/disable", base(place), segment(peer)),
            body(v, serde_json::json!({})),
        ),
        PeersCommand::Remove { peer, place } => (
            Method::DELETE,
            format!("{}/{}", base(place), segment(peer)),
            body(v, serde_json::json!({})),
        ),
    };
    let call = Call {
        command: "peers",
        method,
        path: &path,
        body,
    };
    ask(global, &api.options(), call, print_change, out, err)
}

/// `sealpost audit`
pub fn audit(
    global: &GlobalOptions,
    api: &ApiArgs,
    tenant: Option<&str>,
    limit: usize,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let mut path = format!("/audit?limit={limit}");
    if let Some(t) = tenant {
        path.push_str(&format!("&tenant={}", percent_encode(t)));
    }
    let call = Call {
        command: "audit",
        method: Method::GET,
        path: &path,
        body: None,
    };
    let text = |answer: &Answer, out: &mut dyn Write| {
        let list: serde_json::Value = super::admin::decode(answer, "audit")?;
        let records: Vec<AuditRecord> =
            serde_json::from_value(list["records"].clone()).map_err(io::Error::other)?;
        for r in &records {
            writeln!(
                out,
                "{} uid={} tenant={} {} {} ({} -> {})",
                r.time,
                r.uid.map_or("?".to_owned(), |u| u.to_string()),
                r.tenant,
                r.change,
                r.domain,
                r.version_before.as_deref().unwrap_or("new"),
                r.version_after
            )?;
        }
        Ok(())
    };
    ask(global, &api.options(), call, text, out, err)
}
