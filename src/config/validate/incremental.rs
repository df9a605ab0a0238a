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

use super::{build, read_main, Source};
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
    /// For each file of the new list, its index among the files in force
    /// (`None`: a new file).
    old: Vec<Option<usize>>,
    /// Indexes into the new list of the files that are new or changed.
    changed: Vec<usize>,
    /// Indexes into the files in force of those no longer there.
    gone: Vec<usize>,
}

/// Both lists are in path order: one merge walk pairs them, comparing the
/// paths' bytes (hashing 10,000 paths twice was most of an API change's
/// time).
fn diff(in_force: &TenantFiles, files: &[TenantFile]) -> Diff {
    let known = &in_force.files;
    let mut old = Vec::with_capacity(files.len());
    let mut changed = Vec::new();
    let mut gone = Vec::new();
    let mut j = 0;
    for (i, file) in files.iter().enumerate() {
        let mut found = None;
        while let Some((candidate, _)) = known.get(j) {
            if candidate.path.as_os_str() == file.path.as_os_str() {
                found = Some(j);
                j += 1;
                break;
            }
            if candidate.path.as_path() > file.path.as_path() {
                break;
            }
            gone.push(j);
            j += 1;
        }
        let same = found.is_some_and(|j| tenant_files::same_text(&known[j].0, file));
        if !same {
            changed.push(i);
        }
        old.push(found);
    }
    gone.extend(j..known.len());
    Diff { old, changed, gone }
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
    let main_file = read_main(main_text, &running.source).ok()?;
    let main = Source {
        base: 0,
        name: running.source.clone(),
        text: main_text,
    };
    // The main file with the changed files: every check within them.
    let (part, new_tenants) = build(main_file, vec![main], base_dir, &changed_files).ok()?;
    let old_index = |i: usize| diff.old[i];
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
    let policy = merge_policy(running, &part, &diff)?;
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
    config.relay = merge_relay(running, &part, &affected)?;
    config.users = merge_users(running, &part, &affected)?;
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
    let same_paths = diff.gone.is_empty() && diff.old.iter().all(Option::is_some);
    let mut tenant_files = if same_paths {
        // The common case (edits, no file added or removed): the entries
        // and indexes of the other files are shared or copied, not rebuilt.
        // Files whose text is the same but whose stamp is not (touched,
        // or saved unchanged) take the new stamp, so that the next reload
        // does not read them again.
        let mut replaced: Vec<(usize, TenantFile, Option<String>)> = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let j = diff.old[i]?;
            let (known, tenant) = &in_force.files[j];
            if diff.changed.binary_search(&i).is_ok() {
                replaced.push((j, file.clone(), new_tenants.next()?));
            } else if known.stamp != file.stamp {
                replaced.push((j, file.clone(), tenant.clone()));
            }
        }
        in_force.with_changed(replaced)
    } else {
        let file_tenants: Vec<(TenantFile, Option<String>)> = (files.into_iter().enumerate())
            .map(|(i, file)| {
                let tenant = match diff.changed.binary_search(&i) {
                    Ok(_) => new_tenants.next().flatten(),
                    Err(_) => in_force.files[diff.old[i]?].1.clone(),
                };
                Some((file, tenant))
            })
            .collect::<Option<_>>()?;
        TenantFiles::new(in_force.dir.clone(), file_tenants, Vec::new())
    };
    tenant_files.main_version = in_force.main_version.clone();
    config.tenant_files = Arc::new(tenant_files);
    Some(config)
}

/// The running snapshot with the partitions of the changed files taken
/// from `part` (whose partitions are the main file's, then the changed
/// files' in order) and those of removed files left out.
fn merge_policy(running: &Config, part: &Config, diff: &Diff) -> Option<PolicySnapshot> {
    let parts = running.policy.partitions();
    let mut new_parts = part.policy.partitions()[1..].iter();
    if let ([i], []) = (diff.changed.as_slice(), diff.gone.as_slice()) {
        if let Some(j) = diff.old[*i] {
            let replacement = new_parts.next()?.clone();
            return running.policy.with_partition(j + 1, replacement).ok();
        }
    }
    let mut assembled: Vec<Arc<Partition>> = Vec::with_capacity(diff.old.len() + 1);
    assembled.push(parts[0].clone());
    for (i, old) in diff.old.iter().enumerate() {
        let next = match diff.changed.binary_search(&i) {
            Ok(_) => new_parts.next()?.clone(),
            Err(_) => parts[(*old)? + 1].clone(),
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
/// tenants instead of its own; `running` itself (shared, not copied) when
/// those entries are the same, as for most edits.
fn by_tenant<V: Clone + PartialEq>(
    running: &Arc<HashMap<String, V>>,
    part: &HashMap<String, V>,
    affected: &HashSet<String>,
) -> Arc<HashMap<String, V>> {
    if affected.iter().all(|t| running.get(t) == part.get(t)) {
        return running.clone();
    }
    let mut map = (**running).clone();
    for tenant in affected {
        map.remove(tenant);
    }
    map.extend(
        (part.iter())
            .filter(|(tenant, _)| affected.contains(*tenant))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Arc::new(map)
}

/// The running relay sources with the `affected` tenants' taken from
/// `part`; the running ones, shared, when those are the same.
fn merge_relay(
    running: &Config,
    part: &Config,
    affected: &HashSet<String>,
) -> Option<Arc<crate::policy::RelaySources>> {
    fn of_affected<'a>(
        relay: &'a crate::policy::RelaySources,
        affected: &HashSet<String>,
    ) -> Vec<(ipnet::IpNet, &'a str)> {
        let mut entries: Vec<(ipnet::IpNet, &str)> = (relay.entries())
            .filter(|(_, tenant)| affected.contains(tenant.as_str()))
            .map(|(net, tenant)| (net, tenant.as_str()))
            .collect();
        entries.sort_unstable();
        entries
    }
    if of_affected(&running.relay, affected) == of_affected(&part.relay, affected) {
        return Some(running.relay.clone());
    }
    let mut relay = (*running.relay).clone();
    relay.retain(|tenant| !affected.contains(tenant.as_str()));
    for (net, tenant) in part.relay.entries() {
        if affected.contains(tenant.as_str()) && relay.insert(net, tenant.clone()).is_some() {
            return None;
        }
    }
    Some(Arc::new(relay))
}

/// The running users with the `affected` tenants' taken from `part`; the
/// running ones, shared, when those are the same.
fn merge_users(
    running: &Config,
    part: &Config,
    affected: &HashSet<String>,
) -> Option<Arc<crate::auth::AuthUsers>> {
    fn of_affected<'a>(
        users: &'a crate::auth::AuthUsers,
        affected: &HashSet<String>,
    ) -> Vec<&'a crate::auth::AuthUser> {
        let mut of: Vec<&crate::auth::AuthUser> = (users.iter())
            .filter(|user| affected.contains(user.tenant.as_str()))
            .map(|user| &**user)
            .collect();
        of.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        of
    }
    if of_affected(&running.users, affected) == of_affected(&part.users, affected) {
        return Some(running.users.clone());
    }
    let mut users = (*running.users).clone();
    users.retain(|user| !affected.contains(user.tenant.as_str()));
    for user in part.users.iter() {
        if affected.contains(user.tenant.as_str()) && users.insert_shared(user.clone()).is_err() {
            return None;
        }
    }
    Some(Arc::new(users))
}
