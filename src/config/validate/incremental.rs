//! A change to a few tenant files applied to the configuration in force,
//! without reading or validating the other tenants again (issue 17).
//!
//! The main file is validated with the changed files alone, as a load of
//! that smaller tree would; the result's parts that come from those files
//! (their policy partitions, relay sources, users, per-domain and
//! per-tenant settings) replace the running configuration's parts of the
//! same files, and every other part is shared. The checks that span files
//! use the running configuration's indexes: a domain name, a tenant, a
//! user name or a relay source that another file already holds makes the
//! change fall back to the whole validation, which names both places.
//!
//! `None` from here always means "validate the whole tree" (the caller
//! does): when the main file changed, when a changed file has an error
//! (the whole validation reports every error, and on a reload keeps the
//! file's previous version), when a name is taken, or when the
//! configuration has a `[cluster]` section (its tenant names are checked
//! against every file) or, on a reload, recipient lists (a reload reads
//! every list again).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::{build, read_raw, Source};
use crate::config::tenant_files::{self, TenantFile, TenantFiles};
use crate::config::Config;
use crate::policy::{DomainName, Partition, PolicySnapshot};

/// More changed files than this: validate the whole tree (each changed
/// file costs what it costs in a whole validation, and the whole one
/// reads files on every core).
const MAX_CHANGED_FILES: usize = 64;

/// `running` after a reload of `main_text` (unchanged) and the tenant
/// files now in `running`'s directory; `None`: validate the whole tree.
pub(in crate::config) fn reload(
    running: &Config,
    main_text: &str,
    base_dir: Option<&Path>,
) -> Option<Config> {
    if !running.recipients.is_empty() {
        return None;
    }
    let dir = running.tenant_files.dir.as_deref()?;
    let files = tenant_files::scan(dir, Some(&running.tenant_files)).ok()?;
    apply(running, main_text, base_dir, files)
}

/// `running` with the tenant file at `path` holding `text` (created if
/// absent); `None`: validate the whole tree.
pub(in crate::config) fn edit(
    running: &Config,
    main_text: &str,
    base_dir: Option<&Path>,
    path: &Path,
    text: &str,
) -> Option<Config> {
    let in_force = &running.tenant_files;
    let mut files: Vec<TenantFile> = in_force.files.iter().map(|(f, _)| f.clone()).collect();
    let edited = TenantFile {
        path: path.to_owned(),
        stamp: None,
        text: Arc::from(text),
    };
    match in_force.index_of(path) {
        Some(i) => files[i] = edited,
        None => {
            let at = files.partition_point(|f| f.path.as_path() < path);
            files.insert(at, edited);
        }
    }
    apply(running, main_text, base_dir, files)
}

/// What changed between the files in force and `files`.
struct Diff {
    /// Indexes into the new list of the files that are new or changed.
    changed: Vec<usize>,
    /// Indexes into the files in force of those no longer there.
    gone: Vec<usize>,
}

fn diff(in_force: &TenantFiles, files: &[TenantFile]) -> Diff {
    let changed = (0..files.len())
        .filter(|&i| tenant_files::changed(&files[i], Some(in_force)))
        .collect();
    let now: HashSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
    let gone = (0..in_force.files.len())
        .filter(|&j| !now.contains(in_force.files[j].0.path.as_path()))
        .collect();
    Diff { changed, gone }
}

fn apply(
    running: &Config,
    main_text: &str,
    base_dir: Option<&Path>,
    files: Vec<TenantFile>,
) -> Option<Config> {
    let in_force = &running.tenant_files;
    let same_main = in_force.main_version.as_deref() == Some(&tenant_files::version_of(main_text));
    let aligned = running.policy.partitions().len() == in_force.files.len() + 1;
    if !same_main || !aligned || running.cluster.is_some() {
        return None;
    }
    let diff = diff(in_force, &files);
    if diff.changed.len() + diff.gone.len() > MAX_CHANGED_FILES {
        return None;
    }
    let changed_files: Vec<TenantFile> = diff.changed.iter().map(|&i| files[i].clone()).collect();
    let raw = read_raw(main_text, &running.source).ok()?;
    let main = Source {
        base: 0,
        name: running.source.clone(),
        text: main_text,
    };
    // The main file with the changed files: every check within them.
    let (part, new_tenants) = build(raw, vec![main], base_dir, &changed_files).ok()?;
    let old_index = |i: usize| in_force.index_of(&files[i].path);
    let touched: HashSet<usize> = (diff.changed.iter().filter_map(|&i| old_index(i)))
        .chain(diff.gone.iter().copied())
        .collect();
    // A tenant a changed file holds now must not be an untouched file's.
    for tenant in new_tenants.iter().flatten() {
        let owner = in_force
            .of_tenant(tenant)
            .and_then(|f| in_force.index_of(&f.path));
        if owner.is_some_and(|j| !touched.contains(&j)) {
            return None;
        }
    }
    let affected: HashSet<String> = (touched.iter())
        .filter_map(|&j| in_force.files[j].1.clone())
        .chain(new_tenants.iter().flatten().cloned())
        .collect();
    let policy = merge_policy(running, &part, &files, &diff)?;
    let old_names: Vec<&DomainName> = (touched.iter())
        .flat_map(|&j| running.policy.partitions()[j + 1].domains())
        .map(|d| &d.name)
        .collect();
    let new_names: Vec<&DomainName> = (part.policy.partitions().iter().skip(1))
        .flat_map(|p| p.domains())
        .map(|d| &d.name)
        .collect();
    let mut config = running.clone();
    config.policy = Arc::new(policy);
    by_domain(
        &mut config.recipients,
        &part.recipients,
        &old_names,
        &new_names,
    );
    by_domain(
        &mut config.hosted_mta_sts,
        &part.hosted_mta_sts,
        &old_names,
        &new_names,
    );
    let mut routes = (*running.routes).clone();
    by_domain(&mut routes, &part.routes, &old_names, &new_names);
    config.routes = Arc::new(routes);
    config.tenant_limits = by_tenant(&running.tenant_limits, &part.tenant_limits, &affected);
    config.tenant_quotas = by_tenant(&running.tenant_quotas, &part.tenant_quotas, &affected);
    config.tenant_domains = by_tenant(&running.tenant_domains, &part.tenant_domains, &affected);
    config.relay = Arc::new(merge_relay(running, &part, &affected)?);
    config.users = Arc::new(merge_users(running, &part, &affected)?);
    config.console_users =
        Arc::new((running.console_users).with_tenants_from(&part.console_users, &affected)?);
    let touched_names: HashSet<String> = (touched.iter())
        .map(|&j| in_force.files[j].0.name())
        .chain(changed_files.iter().map(TenantFile::name))
        .collect();
    config.warnings.retain(|w| !touched_names.contains(&w.file));
    config
        .warnings
        .extend((part.warnings.into_iter()).filter(|w| touched_names.contains(&w.file)));
    let mut new_tenants = new_tenants.into_iter();
    let file_tenants: Vec<(TenantFile, Option<String>)> = (files.into_iter().enumerate())
        .map(|(i, file)| {
            let tenant = match diff.changed.binary_search(&i) {
                Ok(_) => new_tenants.next().flatten(),
                Err(_) => in_force.files[old_index_of(in_force, &file)?].1.clone(),
            };
            Some((file, tenant))
        })
        .collect::<Option<_>>()?;
    let mut tenant_files = TenantFiles::new(in_force.dir.clone(), file_tenants, Vec::new());
    tenant_files.main_version = in_force.main_version.clone();
    config.tenant_files = Arc::new(tenant_files);
    Some(config)
}

fn old_index_of(in_force: &TenantFiles, file: &TenantFile) -> Option<usize> {
    in_force.index_of(&file.path)
}

/// The running snapshot with the partitions of the changed files taken
/// from `part` (whose partitions are the main file's, then the changed
/// files' in order) and those of removed files left out.
fn merge_policy(
    running: &Config,
    part: &Config,
    files: &[TenantFile],
    diff: &Diff,
) -> Option<PolicySnapshot> {
    let in_force = &running.tenant_files;
    let parts = running.policy.partitions();
    let mut new_parts = part.policy.partitions()[1..].iter();
    if let ([i], []) = (diff.changed.as_slice(), diff.gone.as_slice()) {
        if let Some(j) = in_force.index_of(&files[*i].path) {
            let replacement = new_parts.next()?.clone();
            return running.policy.with_partition(j + 1, replacement).ok();
        }
    }
    let mut assembled: Vec<Arc<Partition>> = Vec::with_capacity(files.len() + 1);
    assembled.push(parts[0].clone());
    for (i, file) in files.iter().enumerate() {
        let next = match diff.changed.binary_search(&i) {
            Ok(_) => new_parts.next()?.clone(),
            Err(_) => parts[in_force.index_of(&file.path)? + 1].clone(),
        };
        assembled.push(next);
    }
    PolicySnapshot::assemble(*running.policy.defaults(), assembled).ok()
}

/// `map` (keyed by managed domain) without the entries of `old` names and
/// with `part`'s entries of `new` names.
fn by_domain<K, V>(
    map: &mut HashMap<K, V>,
    part: &HashMap<K, V>,
    old: &[&DomainName],
    new: &[&DomainName],
) where
    K: std::hash::Hash + Eq + Clone + std::borrow::Borrow<str>,
    V: Clone,
{
    for name in old {
        map.remove(name.as_str());
    }
    for name in new {
        if let Some((key, value)) = part.get_key_value(name.as_str()) {
            map.insert(key.clone(), value.clone());
        }
    }
}

/// `running` (keyed by tenant) with `part`'s entries for the `affected`
/// tenants instead of its own.
fn by_tenant<V: Clone>(
    running: &HashMap<String, V>,
    part: &HashMap<String, V>,
    affected: &HashSet<String>,
) -> Arc<HashMap<String, V>> {
    let mut map = running.clone();
    map.retain(|tenant, _| !affected.contains(tenant));
    map.extend(
        (part.iter())
            .filter(|(tenant, _)| affected.contains(*tenant))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Arc::new(map)
}

fn merge_relay(
    running: &Config,
    part: &Config,
    affected: &HashSet<String>,
) -> Option<crate::policy::RelaySources> {
    let mut relay = (*running.relay).clone();
    relay.retain(|tenant| !affected.contains(tenant.as_str()));
    for (net, tenant) in part.relay.entries() {
        if affected.contains(tenant.as_str()) && relay.insert(net, tenant.clone()).is_some() {
            return None;
        }
    }
    Some(relay)
}

fn merge_users(
    running: &Config,
    part: &Config,
    affected: &HashSet<String>,
) -> Option<crate::auth::AuthUsers> {
    let mut users = (*running.users).clone();
    users.retain(|user| !affected.contains(user.tenant.as_str()));
    for user in part.users.iter() {
        if affected.contains(user.tenant.as_str()) && users.insert_shared(user.clone()).is_err() {
            return None;
        }
    }
    Some(users)
}
