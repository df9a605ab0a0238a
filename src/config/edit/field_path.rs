//! The TOML key at a position of a file: the field path the admin API
//! gives with each validation error (`domains[0].outbound.peers[1].level`).

use toml_edit::{Item, TableLike, Value};

/// The dotted path of the key or value at `line`:`column` (1-based) of
/// `text`, e.g. `domains[0].outbound.peers[1].level`; `None` when no key
/// is there.
pub(crate) fn field_path(text: &str, line: usize, column: usize) -> Option<String> {
    let line_start = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    let offset = line_start
        + text[line_start..]
            .chars()
            .take(column.saturating_sub(1))
            .map(char::len_utf8)
            .sum::<usize>();
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    walk_table(doc.as_table(), "", offset, &mut best);
    best.map(|(_, path)| path)
}

/// Records in `best` the narrowest key or value span holding `offset`.
fn consider(
    span: Option<std::ops::Range<usize>>,
    path: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    if let Some(span) = span {
        let hit = span.contains(&offset) || (span.is_empty() && span.start == offset);
        if hit && best.as_ref().is_none_or(|(width, _)| span.len() <= *width) {
            *best = Some((span.len(), path.to_owned()));
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(
    table: &dyn TableLike,
    prefix: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        if let Some((k, _)) = table.get_key_value(key) {
            consider(k.span(), &path, offset, best);
        }
        walk_item(item, &path, offset, best);
    }
}

fn walk_item(item: &Item, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    match item {
        Item::Table(table) => walk_table(table, path, offset, best),
        Item::ArrayOfTables(tables) => {
            for (i, table) in tables.iter().enumerate() {
                let path = format!("{path}[{i}]");
                consider(table.span(), &path, offset, best);
                walk_table(table, &path, offset, best);
            }
        }
        Item::Value(value) => walk_value(value, path, offset, best),
        Item::None => {}
    }
}

fn walk_value(value: &Value, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    consider(value.span(), path, offset, best);
    match value {
        Value::InlineTable(table) => walk_table(table, path, offset, best),
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), offset, best);
            }
        }
        _ => {}
    }
}
