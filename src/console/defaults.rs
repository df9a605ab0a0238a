//! The default for unspecified domains (`[defaults]` of the main file),
//! which only operators change. The same steps as a tenant change
//! ([`crate::admin::tenant_edits::apply_change`]): under the edit lock,
//! the file edited with `toml_edit` (comments and order kept), the whole
//! configuration validated as a load would, the file written atomically,
//! the change appended to the audit log, the new configuration put in
//! force.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use toml_edit::{value, DocumentMut, InlineTable, Item, Table};

use crate::admin::audit::{self, AuditRecord};
use crate::config::edit::{self, RuleText};
use crate::config::{version_of, Config};
use crate::live::LiveConfig;
use crate::policy::Direction;

/// The audit log's tenant for changes of the main file's defaults.
pub(crate) const DEFAULTS_TENANT: &str = "(defaults)";

/// Sets `[defaults] <direction>` to `rule`; the reason as a person reads
/// it when refused (nothing is written then).
pub(crate) fn set_global_default(
    live: &LiveConfig,
    direction: Direction,
    rule: &RuleText,
    user: &str,
) -> Result<(), String> {
    let _edits = edit::lock();
    let running = live.current();
    let path = Path::new(&running.source);
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "the configuration file {} cannot be read: {e}",
            path.display()
        )
    })?;
    let (new_text, before) = edited(&text, direction, rule)?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    let config = Config::parse(&new_text, &running.source, base).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| e.kind.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o640);
    crate::atomic_file::write(path, new_text.as_bytes(), mode)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let now = SystemTime::now();
    let record = AuditRecord {
        time: audit::rfc3339(now),
        unix_ms: crate::date::unix_ms(now),
        uid: None,
        user: Some(user.to_owned()),
        tenant: DEFAULTS_TENANT.to_owned(),
        change: format!("defaults {direction}"),
        domain: String::new(),
        file: path.display().to_string(),
        version_before: Some(version_of(&text)),
        version_after: version_of(&new_text),
        before,
        after: Some(rule_toml(direction, rule)),
    };
    let audit_path = audit::path_in(&running.server.data_dir);
    if let Err(e) = audit::append(&audit_path, &record) {
        tracing::error!(error = %e, path = %audit_path.display(), "cannot write the audit log");
    }
    let report = live.replace(config);
    tracing::info!(
        user,
        direction = %direction,
        generation = report.generation,
        "default for unspecified domains changed through the console"
    );
    Ok(())
}

fn rule_toml(direction: Direction, rule: &RuleText) -> String {
    let min = rule.min_tls.as_deref().unwrap_or("any");
    format!(
        "[defaults]\n{direction} = {{ level = \"{}\", min_tls = \"{min}\" }}\n",
        rule.level
    )
}

/// The main file's text with `[defaults] <direction>` replaced, and the
/// previous value as TOML (`None`: it was not set).
fn edited(
    text: &str,
    direction: Direction,
    rule: &RuleText,
) -> Result<(String, Option<String>), String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the configuration file is not valid TOML: {e}"))?;
    let defaults = doc
        .entry("defaults")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or("`defaults` is not a table")?;
    let key = direction.as_str();
    let before = defaults
        .get(key)
        .map(|item| format!("[defaults]\n{key} = {}\n", item.to_string().trim()));
    let mut table = InlineTable::new();
    table.insert("level", rule.level.as_str().into());
    table.insert("min_tls", rule.min_tls.as_deref().unwrap_or("any").into());
    // In place when present: the key's comments stay.
    match defaults.get_mut(key) {
        Some(item) => *item = value(table),
        None => {
            defaults.insert(key, value(table));
        }
    }
    Ok((doc.to_string(), before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direction_is_replaced_and_the_rest_kept() {
        let text = "# main\n[server]\nhostname = \"x.test\"\n\n[defaults]\n# keep me\noutbound = { level = \"opportunistic\" }\ninbound = { level = \"mandatory\" }\n";
        let rule = RuleText {
            level: "mandatory".into(),
            min_tls: Some("1.2".into()),
        };
        let (new, before) = edited(text, Direction::Outbound, &rule).expect("edit");
        assert!(new.contains("# keep me") && new.contains("# main"), "{new}");
        assert!(new.contains("inbound = { level = \"mandatory\" }"), "{new}");
        assert!(
            new.contains("outbound = { level = \"mandatory\", min_tls = \"1.2\" }"),
            "{new}"
        );
        assert_eq!(
            before.as_deref(),
            Some("[defaults]\noutbound = { level = \"opportunistic\" }\n")
        );
        let (new, before) = edited("[server]\n", Direction::Inbound, &rule).expect("edit");
        assert!(new.contains("[defaults]"), "{new}");
        assert_eq!(before, None);
    }
}
