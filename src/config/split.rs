//! `sealpost config split`: a single-file configuration turned into a main
//! file (the server-wide settings) and one file per tenant (its
//! `[[tenants]]` table and its `[[domains]]`), losing nothing: tables move
//! whole, with their comments, through `toml_edit`.
//!
//! [`canonical`] is the check: the data of the original file and of the
//! split files, as TOML values with the domains and tenants sorted by name,
//! must be equal.

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// The files a configuration splits into.
#[derive(Debug)]
pub struct Split {
    /// The new main file: the original without its tenants and domains,
    /// with `[server] tenants_dir`.
    pub main: String,
    /// `(file name, text)` per tenant, in order of first appearance.
    pub tenant_files: Vec<(String, String)>,
}

/// Why a file could not be split.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("not valid TOML: {0}")]
    Toml(String),
    #[error("`[server] tenants_dir` is already set: this configuration is split")]
    AlreadySplit,
    #[error("`{key}` is not a list of tables")]
    NotTables { key: &'static str },
    #[error("a `{key}` entry has no `{field}` string")]
    NoName {
        key: &'static str,
        field: &'static str,
    },
}

/// Splits configuration `text`; tenant files go in `tenants_dir` (as the
/// main file will name it).
pub fn split(text: &str, tenants_dir: &str) -> Result<Split, SplitError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| SplitError::Toml(e.to_string()))?;
    let server = doc
        .entry("server")
        .or_insert_with(|| Item::Table(Table::new()));
    let Some(server) = server.as_table_like_mut() else {
        return Err(SplitError::NotTables { key: "server" });
    };
    if server.contains_key("tenants_dir") {
        return Err(SplitError::AlreadySplit);
    }
    server.insert("tenants_dir", toml_edit::value(tenants_dir));
    let tenants = take_tables(&mut doc, "tenants")?;
    let domains = take_tables(&mut doc, "domains")?;
    // Tenant name -> (its [[tenants]] tables, its domains), in order.
    let mut groups: Vec<(String, Vec<Table>, Vec<Table>)> = Vec::new();
    // By name: a scan per table would be quadratic in the tenants.
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut group_of = |name: String| -> usize {
        *index.entry(name.clone()).or_insert_with(|| {
            groups.push((name, Vec::new(), Vec::new()));
            groups.len() - 1
        })
    };
    let mut placed: Vec<(usize, bool, Table)> = Vec::new();
    for table in tenants {
        let name = name_of(&table, "name").ok_or(SplitError::NoName {
            key: "tenants",
            field: "name",
        })?;
        placed.push((group_of(name), true, table));
    }
    for table in domains {
        let name = name_of(&table, "tenant").ok_or(SplitError::NoName {
            key: "domains",
            field: "tenant",
        })?;
        placed.push((group_of(name), false, table));
    }
    for (group, is_tenant, table) in placed {
        let (_, tenants, domains) = &mut groups[group];
        if is_tenant {
            tenants.push(table);
        } else {
            domains.push(table);
        }
    }
    let mut used_names: std::collections::HashSet<String> = std::collections::HashSet::new();
    let tenant_files = groups
        .into_iter()
        .map(|(tenant, tenants, domains)| {
            let mut file = DocumentMut::new();
            put_tables(&mut file, "tenants", tenants);
            put_tables(&mut file, "domains", domains);
            let mut name = file_name_of(&tenant);
            let mut n = 2;
            while used_names.contains(&name) {
                name = format!(
                    "{}-{n}.toml",
                    file_name_of(&tenant).trim_end_matches(".toml")
                );
                n += 1;
            }
            used_names.insert(name.clone());
            (name, file.to_string().trim_start().to_owned())
        })
        .collect();
    Ok(Split {
        main: doc.to_string(),
        tenant_files,
    })
}

/// The reverse of [`split`]: `main` without `[server] tenants_dir`, with
/// the `[[tenants]]` and `[[domains]]` of `tenant_files` (in order)
/// appended, comments kept.
pub fn merge(main: &str, tenant_files: &[&str]) -> Result<String, SplitError> {
    let parse = |text: &str| {
        text.parse::<DocumentMut>()
            .map_err(|e: toml_edit::TomlError| SplitError::Toml(e.to_string()))
    };
    let mut doc = parse(main)?;
    if let Some(server) = doc.get_mut("server").and_then(Item::as_table_like_mut) {
        server.remove("tenants_dir");
    }
    let mut tenants = take_tables(&mut doc, "tenants")?;
    let mut domains = take_tables(&mut doc, "domains")?;
    for text in tenant_files {
        let mut file = parse(text)?;
        tenants.extend(take_tables(&mut file, "tenants")?);
        domains.extend(take_tables(&mut file, "domains")?);
    }
    // After the main file's own tables, in the order given.
    let mut position = doc.iter().count() as isize + 1_000_000;
    for table in tenants.iter_mut().chain(domains.iter_mut()) {
        position = renumber(table, position);
    }
    put_tables(&mut doc, "tenants", tenants);
    put_tables(&mut doc, "domains", domains);
    Ok(doc.to_string())
}

/// Gives `table` and its sub-tables document positions from `next` on.
fn renumber(table: &mut Table, mut next: isize) -> isize {
    table.set_position(Some(next));
    next += 1;
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(sub) => next = renumber(sub, next),
            Item::ArrayOfTables(array) => {
                for sub in array.iter_mut() {
                    next = renumber(sub, next);
                }
            }
            _ => {}
        }
    }
    next
}

/// A file name for `tenant`: its name where it is made of letters, digits,
/// `.`, `-` and `_`, each other byte as `%XX`.
pub(crate) fn file_name_of(tenant: &str) -> String {
    let mut name = String::with_capacity(tenant.len() + 5);
    for byte in tenant.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_')
            || (byte == b'.' && !name.is_empty())
        {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    if name.is_empty() {
        name.push('%');
    }
    name.push_str(".toml");
    name
}

fn take_tables(doc: &mut DocumentMut, key: &'static str) -> Result<Vec<Table>, SplitError> {
    match doc.remove(key) {
        None => Ok(Vec::new()),
        Some(item) => match item.into_array_of_tables() {
            Ok(tables) => Ok(tables.into_iter().collect()),
            Err(Item::Value(toml_edit::Value::Array(a))) if a.is_empty() => Ok(Vec::new()),
            Err(_) => Err(SplitError::NotTables { key }),
        },
    }
}

fn put_tables(doc: &mut DocumentMut, key: &str, tables: Vec<Table>) {
    if tables.is_empty() {
        return;
    }
    let mut array = ArrayOfTables::new();
    for table in tables {
        array.push(table);
    }
    doc.insert(key, Item::ArrayOfTables(array));
}

fn name_of(table: &Table, field: &str) -> Option<String> {
    table
        .get(field)
        .and_then(Item::as_str)
        .map(|s| s.trim().to_owned())
}

/// The data of a configuration as one TOML value, whatever its files:
/// `main` with `tenants_dir` taken out and the `tenants` and `domains` of
/// every tenant file added, both sorted by name.
pub fn canonical(main: &str, tenant_files: &[&str]) -> Result<toml::Table, toml::de::Error> {
    let mut whole: toml::Table = toml::from_str(main)?;
    if let Some(toml::Value::Table(server)) = whole.get_mut("server") {
        server.remove("tenants_dir");
        if server.is_empty() {
            whole.remove("server");
        }
    }
    for text in tenant_files {
        let file: toml::Table = toml::from_str(text)?;
        for (key, value) in file {
            if let (toml::Value::Array(mut items), "tenants" | "domains") = (value, key.as_str()) {
                let into = whole
                    .entry(key)
                    .or_insert_with(|| toml::Value::Array(Vec::new()));
                if let toml::Value::Array(list) = into {
                    list.append(&mut items);
                }
            }
        }
    }
    for (key, field) in [("tenants", "name"), ("domains", "name")] {
        if let Some(toml::Value::Array(list)) = whole.get_mut(key) {
            list.sort_by_key(|v| v.get(field).and_then(|n| n.as_str()).map(str::to_owned));
        }
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_move_whole_with_their_comments() {
        let text = "# main\n[server]\nhostname = \"mx.example\"\n\n# Acme's relay\n[[tenants]]\nname = \"acme\"\n\n# Acme's domain\n[[domains]]\nname = \"acme.example\"\ntenant = \"acme\"\n[[domains.outbound.peers]]\npeer = \"bank.example\" # a bank\nlevel = \"mandatory\"\n\n[[domains]]\nname = \"b.example\"\ntenant = \"b/x\"\n\n[logging]\nlevel = \"debug\"\n";
        let split = split(text, "tenants.d").expect("splits");
        assert!(
            split.main.starts_with(
                "# main\n[server]\nhostname = \"mx.example\"\ntenants_dir = \"tenants.d\"\n"
            ),
            "{}",
            split.main
        );
        assert!(
            split.main.contains("[logging]\nlevel = \"debug\"\n"),
            "{}",
            split.main
        );
        assert!(!split.main.contains("domains"), "{}", split.main);
        let names: Vec<&str> = split.tenant_files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["acme.toml", "b%2Fx.toml"]);
        let acme = &split.tenant_files[0].1;
        assert!(
            acme.contains("# Acme's relay\n[[tenants]]\nname = \"acme\""),
            "{acme}"
        );
        assert!(
            acme.contains("# Acme's domain\n[[domains]]\nname = \"acme.example\""),
            "{acme}"
        );
        assert!(acme.contains("peer = \"bank.example\" # a bank"), "{acme}");
        let files: Vec<&str> = split.tenant_files.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            canonical(&split.main, &files).expect("valid"),
            canonical(text, &[]).expect("valid")
        );
    }

    #[test]
    fn inline_domain_lists_split_too_and_a_split_file_is_refused() {
        let text = "domains = [{ name = \"a.example\", tenant = \"a\" }]\n";
        let split = split(text, "t").expect("splits");
        assert_eq!(split.tenant_files.len(), 1);
        assert!(matches!(
            super::split(&split.main, "t"),
            Err(SplitError::AlreadySplit)
        ));
    }

    #[test]
    fn merge_undoes_split() {
        let text = "[server]\nhostname = \"mx.example\"\n\n[[tenants]]\nname = \"a\"\n\n# a's\n[[domains]]\nname = \"a.example\"\ntenant = \"a\"\n[domains.outbound.default]\nlevel = \"mandatory\"\n\n[[domains]]\nname = \"b.example\"\ntenant = \"b\"\n\n[logging]\nlevel = \"debug\"\n";
        let parts = split(text, "tenants.d").expect("splits");
        let files: Vec<&str> = parts.tenant_files.iter().map(|(_, t)| t.as_str()).collect();
        let merged = merge(&parts.main, &files).expect("merges");
        assert_eq!(
            canonical(&merged, &[]).expect("valid"),
            canonical(text, &[]).expect("valid")
        );
        assert!(merged.contains("# a's\n[[domains]]\nname = \"a.example\"\ntenant = \"a\"\n[domains.outbound.default]\nlevel = \"mandatory\"\n"), "{merged}");
        assert!(!merged.contains("tenants_dir"), "{merged}");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name_of("acme"), "acme.toml");
        assert_eq!(file_name_of("../x y"), "%2E.%2Fx%20y.toml");
        assert_eq!(file_name_of(""), "%.toml");
    }
}
