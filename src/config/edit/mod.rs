//! Changes to one tenant file, as the admin API makes them (issue 17):
//! pure functions from the file's text to the new text, through
//! `toml_edit` so that the comments, the order and the style (tables or
//! inline tables) of everything the change does not touch stay as written.
//!
//! A change only edits the text; whether the result is a valid
//! configuration is decided by loading it like any file
//! (`Config::with_tenant_file`), so the API and the file give the same
//! errors. [`field_path`] names the TOML key an error points at.

use std::sync::{Mutex, MutexGuard};

use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::policy::{Direction, DomainName, PeerMatcher};

mod field_path;
#[cfg(test)]
mod tests;

pub(crate) use field_path::field_path;

/// A rule as given: words are checked by the validation, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    pub level: String,
    pub min_tls: Option<String>,
}

/// One change to a tenant's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddDomain {
        domain: String,
        enabled: bool,
    },
    SetDomainEnabled {
        domain: String,
        enabled: bool,
    },
    RemoveDomain {
        domain: String,
    },
    /// `None` removes the domain's own default (the `[defaults]` apply).
    SetDefault {
        domain: String,
        direction: Direction,
        rule: Option<RuleText>,
    },
    AddPeer {
        domain: String,
        direction: Direction,
        peer: String,
        rule: RuleText,
        enabled: bool,
    },
    /// Sets what is given; `min_tls: Some(None)` removes the entry's own
    /// minimum version.
    EditPeer {
        domain: String,
        direction: Direction,
        peer: String,
        level: Option<String>,
        min_tls: Option<Option<String>>,
        enabled: Option<bool>,
    },
    RemovePeer {
        domain: String,
        direction: Direction,
        peer: String,
    },
}

impl Change {
    /// The managed domain the change is about.
    pub fn domain(&self) -> &str {
        match self {
            Change::AddDomain { domain, .. }
            | Change::SetDomainEnabled { domain, .. }
            | Change::RemoveDomain { domain }
            | Change::SetDefault { domain, .. }
            | Change::AddPeer { domain, .. }
            | Change::EditPeer { domain, .. }
            | Change::RemovePeer { domain, .. } => domain,
        }
    }

    /// A short name for logs and the audit log: `peers add`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Change::AddDomain { .. } => "domains add",
            Change::SetDomainEnabled { enabled: true, .. } => "domains enable",
            Change::SetDomainEnabled { enabled: false, .. } => "domains disable",
            Change::RemoveDomain { .. } => "domains remove",
            Change::SetDefault { .. } => "domains defaults",
            Change::AddPeer { .. } => "peers add",
            Change::EditPeer { .. } => "peers edit",
            Change::RemovePeer { .. } => "peers remove",
        }
    }
}

/// Why a change cannot be made to the file (the file is not changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the tenant file is not valid TOML: {0}")]
    Toml(String),
    #[error("managed domain `{domain}` is not in this tenant's file")]
    NoDomain { domain: String },
    #[error("managed domain `{domain}` is already configured")]
    DomainExists { domain: String },
    #[error("{direction} peer `{peer}` of `{domain}` is not configured")]
    NoPeer {
        domain: String,
        direction: Direction,
        peer: String,
    },
    #[error("{direction} peer `{peer}` of `{domain}` is already configured")]
    PeerExists {
        domain: String,
        direction: Direction,
        peer: String,
    },
    #[error("`{key}` has a shape this change cannot edit (expected a table or a list of tables)")]
    Shape { key: String },
}

/// What a change did: the new text, and the domain's table before and
/// after (TOML, `None` where there is none), for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub text: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

static EDITS: Mutex<()> = Mutex::new(());

/// Held while a change or a reload is validated, written and put in
/// force: changes are serialized, and none interleaves with a reload.
pub fn lock() -> MutexGuard<'static, ()> {
    EDITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Applies `change` to the text of `tenant`'s file.
pub fn apply(text: &str, tenant: &str, change: &Change) -> Result<Applied, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Toml(e.to_string()))?;
    let domain = change.domain();
    let found = find_domain(&doc, domain)?;
    let before = found.map(|i| domain_text(&doc, i));
    let after_index = match change {
        Change::AddDomain { domain, enabled } => {
            if found.is_some() {
                return Err(EditError::DomainExists {
                    domain: domain.clone(),
                });
            }
            Some(add_domain(&mut doc, domain, tenant, *enabled)?)
        }
        Change::RemoveDomain { domain } => {
            let index = found.ok_or_else(|| no_domain(domain))?;
            remove_domain(&mut doc, index)?;
            None
        }
        _ => {
            let index = found.ok_or_else(|| no_domain(domain))?;
            let (table, inline) = domain_mut(&mut doc, index)?;
            edit_domain(table, inline, change)?;
            Some(index)
        }
    };
    let after = after_index.map(|i| domain_text(&doc, i));
    Ok(Applied {
        text: doc.to_string(),
        before,
        after,
    })
}

fn no_domain(domain: &str) -> EditError {
    EditError::NoDomain {
        domain: domain.to_owned(),
    }
}

/// A domain name as the policy compares it (A-label, lowercase).
fn domain_key(name: &str) -> String {
    name.parse::<DomainName>()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_else(|_| name.trim().trim_end_matches('.').to_ascii_lowercase())
}

fn peer_key(peer: &str) -> String {
    peer.parse::<PeerMatcher>()
        .map(|p| p.to_string())
        .unwrap_or_else(|_| peer.trim().to_ascii_lowercase())
}

fn find_domain(doc: &DocumentMut, domain: &str) -> Result<Option<usize>, EditError> {
    let wanted = domain_key(domain);
    let names: Vec<Option<String>> = match doc.get("domains") {
        None => return Ok(None),
        Some(Item::ArrayOfTables(tables)) => tables
            .iter()
            .map(|t| t.get("name").and_then(Item::as_str).map(str::to_owned))
            .collect(),
        Some(Item::Value(Value::Array(list))) => list
            .iter()
            .map(|v| {
                v.as_inline_table()
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect(),
        Some(_) => return Err(shape("domains")),
    };
    Ok(names
        .iter()
        .position(|n| n.as_deref().map(domain_key) == Some(wanted.clone())))
}

fn shape(key: &str) -> EditError {
    EditError::Shape {
        key: key.to_owned(),
    }
}

/// The domain's table, and whether it is an inline table.
fn domain_mut(
    doc: &mut DocumentMut,
    index: usize,
) -> Result<(&mut dyn TableLike, bool), EditError> {
    match doc.get_mut("domains") {
        Some(Item::ArrayOfTables(tables)) => tables
            .get_mut(index)
            .map(|t| (t as &mut dyn TableLike, false))
            .ok_or_else(|| shape("domains")),
        Some(Item::Value(Value::Array(list))) => list
            .get_mut(index)
            .and_then(Value::as_inline_table_mut)
            .map(|t| (t as &mut dyn TableLike, true))
            .ok_or_else(|| shape("domains")),
        _ => Err(shape("domains")),
    }
}

/// The domain's table alone, as TOML.
fn domain_text(doc: &DocumentMut, index: usize) -> String {
    let table = match doc.get("domains") {
        Some(Item::ArrayOfTables(tables)) => tables.get(index).cloned(),
        Some(Item::Value(Value::Array(list))) => list
            .get(index)
            .and_then(Value::as_inline_table)
            .map(|t| t.clone().into_table()),
        _ => None,
    };
    let mut one = DocumentMut::new();
    if let Some(mut table) = table {
        table.decor_mut().clear();
        let mut array = ArrayOfTables::new();
        array.push(table);
        one.insert("domains", Item::ArrayOfTables(array));
    }
    one.to_string()
}

fn add_domain(
    doc: &mut DocumentMut,
    domain: &str,
    tenant: &str,
    enabled: bool,
) -> Result<usize, EditError> {
    let mut table = Table::new();
    table.insert("name", toml_edit::value(domain.trim()));
    table.insert("tenant", toml_edit::value(tenant));
    if !enabled {
        table.insert("enabled", toml_edit::value(false));
    }
    match doc
        .entry("domains")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
    {
        Item::ArrayOfTables(tables) => {
            tables.push(table);
            Ok(tables.len() - 1)
        }
        Item::Value(Value::Array(list)) => {
            list.push(table.into_inline_table());
            Ok(list.len() - 1)
        }
        _ => Err(shape("domains")),
    }
}

fn remove_domain(doc: &mut DocumentMut, index: usize) -> Result<(), EditError> {
    match doc.get_mut("domains") {
        Some(Item::ArrayOfTables(tables)) => {
            tables.remove(index);
        }
        Some(Item::Value(Value::Array(list))) => {
            list.remove(index);
        }
        _ => return Err(shape("domains")),
    }
    Ok(())
}

fn edit_domain(domain: &mut dyn TableLike, inline: bool, change: &Change) -> Result<(), EditError> {
    match change {
        Change::SetDomainEnabled { enabled, .. } => {
            if *enabled {
                domain.remove("enabled");
            } else {
                set(domain, "enabled", Value::from(false));
            }
        }
        Change::SetDefault {
            direction, rule, ..
        } => {
            let key = direction.as_str();
            match rule {
                None => {
                    if let Some((dir, _)) = direction_mut(domain, inline, key, false)? {
                        dir.remove("default");
                    }
                }
                Some(rule) => {
                    let (dir, _) =
                        direction_mut(domain, inline, key, true)?.ok_or_else(|| shape(key))?;
                    let mut table = InlineTable::new();
                    table.insert("level", Value::from(rule.level.as_str()));
                    if let Some(min) = &rule.min_tls {
                        table.insert("min_tls", Value::from(min.as_str()));
                    }
                    match dir.get_mut("default").and_then(Item::as_table_like_mut) {
                        // Keep the existing table (and its comments): set its keys.
                        Some(existing) => {
                            set_rule(existing, &rule.level, Some(rule.min_tls.as_deref()))
                        }
                        None => {
                            dir.insert("default", Item::Value(Value::InlineTable(table)));
                        }
                    }
                }
            }
        }
        Change::AddPeer {
            domain: name,
            direction,
            peer,
            rule,
            enabled,
        } => {
            let key = direction.as_str();
            let (dir, dir_inline) =
                direction_mut(domain, inline, key, true)?.ok_or_else(|| shape(key))?;
            if find_peer(dir, peer)?.is_some() {
                return Err(EditError::PeerExists {
                    domain: name.clone(),
                    direction: *direction,
                    peer: peer.clone(),
                });
            }
            let mut entry = Table::new();
            entry.insert("peer", toml_edit::value(peer.trim()));
            entry.insert("level", toml_edit::value(rule.level.as_str()));
            if let Some(min) = &rule.min_tls {
                entry.insert("min_tls", toml_edit::value(min.as_str()));
            }
            if !enabled {
                entry.insert("enabled", toml_edit::value(false));
            }
            let peers = dir.entry("peers").or_insert(if dir_inline {
                Item::Value(Value::Array(toml_edit::Array::new()))
            } else {
                Item::ArrayOfTables(ArrayOfTables::new())
            });
            match peers {
                Item::ArrayOfTables(tables) => tables.push(entry),
                Item::Value(Value::Array(list)) => list.push(entry.into_inline_table()),
                _ => return Err(shape("peers")),
            }
        }
        Change::EditPeer {
            domain: name,
            direction,
            peer,
            level,
            min_tls,
            enabled,
        } => {
            let entry = peer_mut(domain, inline, name, *direction, peer)?;
            if let Some(level) = level {
                set(entry, "level", Value::from(level.as_str()));
            }
            match min_tls {
                Some(Some(min)) => {
                    set(entry, "min_tls", Value::from(min.as_str()));
                }
                Some(None) => {
                    entry.remove("min_tls");
                }
                None => {}
            }
            match enabled {
                Some(true) => {
                    entry.remove("enabled");
                }
                Some(false) => {
                    set(entry, "enabled", Value::from(false));
                }
                None => {}
            }
        }
        Change::RemovePeer {
            domain: name,
            direction,
            peer,
        } => {
            let key = direction.as_str();
            let no_peer = || EditError::NoPeer {
                domain: name.clone(),
                direction: *direction,
                peer: peer.clone(),
            };
            let (dir, _) = direction_mut(domain, inline, key, false)?.ok_or_else(no_peer)?;
            let index = find_peer(dir, peer)?.ok_or_else(no_peer)?;
            match dir.get_mut("peers") {
                Some(Item::ArrayOfTables(tables)) => {
                    tables.remove(index);
                }
                Some(Item::Value(Value::Array(list))) => {
                    list.remove(index);
                }
                _ => return Err(shape("peers")),
            }
        }
        Change::AddDomain { .. } | Change::RemoveDomain { .. } => {}
    }
    Ok(())
}

/// Sets `key` to `value`, keeping the old value's comments and spacing.
fn set(table: &mut dyn TableLike, key: &str, value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

/// Sets `level` and, when given, `min_tls` (`Some(None)` removes it).
fn set_rule(table: &mut dyn TableLike, level: &str, min_tls: Option<Option<&str>>) {
    set(table, "level", Value::from(level));
    match min_tls {
        Some(Some(min)) => {
            set(table, "min_tls", Value::from(min));
        }
        Some(None) => {
            table.remove("min_tls");
        }
        None => {}
    }
}

/// The domain's `outbound` or `inbound` table and whether it is written
/// inline; created (implicit, so it gets no header of its own until it
/// holds values) when `create`.
fn direction_mut<'a>(
    domain: &'a mut dyn TableLike,
    inline: bool,
    key: &str,
    create: bool,
) -> Result<Option<(&'a mut dyn TableLike, bool)>, EditError> {
    if domain.get(key).is_none() {
        if !create {
            return Ok(None);
        }
        let item = if inline {
            Item::Value(Value::InlineTable(InlineTable::new()))
        } else {
            let mut table = Table::new();
            table.set_implicit(true);
            Item::Table(table)
        };
        domain.insert(key, item);
    }
    let dir_inline = inline || matches!(domain.get(key), Some(Item::Value(_)));
    match domain.get_mut(key).and_then(Item::as_table_like_mut) {
        Some(dir) => Ok(Some((dir, dir_inline))),
        None => Err(shape(key)),
    }
}

fn find_peer(dir: &dyn TableLike, peer: &str) -> Result<Option<usize>, EditError> {
    let wanted = peer_key(peer);
    let names: Vec<Option<String>> = match dir.get("peers") {
        None => return Ok(None),
        Some(Item::ArrayOfTables(tables)) => tables
            .iter()
            .map(|t| t.get("peer").and_then(Item::as_str).map(str::to_owned))
            .collect(),
        Some(Item::Value(Value::Array(list))) => list
            .iter()
            .map(|v| {
                v.as_inline_table()
                    .and_then(|t| t.get("peer"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect(),
        Some(_) => return Err(shape("peers")),
    };
    Ok(names
        .iter()
        .position(|n| n.as_deref().map(peer_key) == Some(wanted.clone())))
}

fn peer_mut<'a>(
    domain: &'a mut dyn TableLike,
    inline: bool,
    name: &str,
    direction: Direction,
    peer: &str,
) -> Result<&'a mut dyn TableLike, EditError> {
    let no_peer = || EditError::NoPeer {
        domain: name.to_owned(),
        direction,
        peer: peer.to_owned(),
    };
    let (dir, _) = direction_mut(domain, inline, direction.as_str(), false)?.ok_or_else(no_peer)?;
    let index = find_peer(dir, peer)?.ok_or_else(no_peer)?;
    match dir.get_mut("peers") {
        Some(Item::ArrayOfTables(tables)) => tables
            .get_mut(index)
            .map(|t| t as &mut dyn TableLike)
            .ok_or_else(no_peer),
        Some(Item::Value(Value::Array(list))) => list
            .get_mut(index)
            .and_then(Value::as_inline_table_mut)
            .map(|t| t as &mut dyn TableLike)
            .ok_or_else(no_peer),
        _ => Err(shape("peers")),
    }
}
