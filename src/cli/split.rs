//! `sealpost config split`: the configuration file into a main file and
//! one file per tenant (see [`crate::config::split`]), checked before the
//! main file is replaced.

use std::io::{self, Write};
use std::path::Path;

use super::{load, ExitStatus, GlobalOptions, EXIT_FAILURE, EXIT_OK};
use crate::config::split::{canonical, merge, split};
use crate::config::{write_atomically, Config};

/// Splits `--config FILE`: writes `tenants_dir` (relative to the file's
/// directory; it must be absent or empty) and its tenant files, checks
/// that the split configuration loads with the same data and the same
/// policy, keeps the original as `FILE.orig`, and replaces `FILE`.
pub fn config_split(
    global: &GlobalOptions,
    tenants_dir: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(path) = global.config.clone() else {
        writeln!(err, "config split: give the file to split with --config")?;
        return Ok(EXIT_FAILURE);
    };
    // An invalid file is not split: its errors would move around.
    let Some(original) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let text = std::fs::read_to_string(&path)?;
    let parts = match split(&text, tenants_dir) {
        Ok(parts) => parts,
        Err(e) => {
            writeln!(err, "config split: {}: {e}", path.display())?;
            return Ok(EXIT_FAILURE);
        }
    };
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = base.join(tenants_dir);
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        writeln!(
            err,
            "config split: {} exists and is not empty",
            dir.display()
        )?;
        return Ok(EXIT_FAILURE);
    }
    std::fs::create_dir_all(&dir)?;
    for (name, text) in &parts.tenant_files {
        write_atomically(&dir.join(name), text)?;
    }
    let undo = |dir: &Path| {
        for (name, _) in &parts.tenant_files {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let _ = std::fs::remove_dir(dir);
    };
    let files: Vec<&str> = parts.tenant_files.iter().map(|(_, t)| t.as_str()).collect();
    let same_data = matches!(
        (canonical(&text, &[]), canonical(&parts.main, &files)),
        (Ok(a), Ok(b)) if a == b
    );
    let reloaded = Config::parse(&parts.main, &path.display().to_string(), Some(base));
    let same_policy = match &reloaded {
        Ok(split) => same_policy(&original, split),
        Err(e) => {
            writeln!(err, "{e}")?;
            false
        }
    };
    if !(same_data && same_policy) {
        undo(&dir);
        writeln!(
            err,
            "config split: the split files would not hold the same configuration; nothing was changed"
        )?;
        return Ok(EXIT_FAILURE);
    }
    let backup = path.with_extension("toml.orig");
    std::fs::copy(&path, &backup)?;
    write_atomically(&path, &parts.main)?;
    writeln!(
        out,
        "split {} into {} tenant file{} in {} (the original is {})",
        path.display(),
        parts.tenant_files.len(),
        if parts.tenant_files.len() == 1 {
            ""
        } else {
            "s"
        },
        dir.display(),
        backup.display()
    )?;
    Ok(EXIT_OK)
}

/// The same policy, tenants and per-domain settings.
pub fn same_policy(a: &Config, b: &Config) -> bool {
    let domains = |c: &Config| {
        let mut d: Vec<String> = c
            .policy
            .domains()
            .iter()
            .map(|d| format!("{d:?}"))
            .collect();
        d.sort();
        d
    };
    domains(a) == domains(b)
        && a.policy.defaults() == b.policy.defaults()
        && a.users.len() == b.users.len()
        && a.tenant_limits == b.tenant_limits
        && a.tenant_quotas == b.tenant_quotas
        && a.hosted_mta_sts == b.hosted_mta_sts
        && a.recipients == b.recipients
        && a.routes == b.routes
        && a.tenant_domains == b.tenant_domains
}

/// `sealpost config merge`: the `--config` file with its tenant files
/// merged back into one file, printed on `out` (the reverse of split).
pub fn config_merge(
    global: &GlobalOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let Some(path) = &global.config else {
        writeln!(err, "config merge: give the main file with --config")?;
        return Ok(EXIT_FAILURE);
    };
    let main = std::fs::read_to_string(path)?;
    let files: Vec<&str> = (config.tenant_files.files.iter())
        .map(|(f, _)| &*f.text)
        .collect();
    match merge(&main, &files) {
        Ok(merged) => {
            out.write_all(merged.as_bytes())?;
            Ok(EXIT_OK)
        }
        Err(e) => {
            writeln!(err, "config merge: {e}")?;
            Ok(EXIT_FAILURE)
        }
    }
}
