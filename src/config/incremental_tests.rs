//! A change to one tenant's file (an admin API edit, or a reload after the
//! file changed) validates that file alone and shares every other
//! tenant's part; the result is the configuration a load from scratch of
//! the same tree gives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::policy::{PeerQuery, Resolution};

const MAIN: &str =
    "[server]\ntenants_dir = \"tenants.d\"\n[defaults]\noutbound = { level = \"opportunistic\" }\n";

fn tree(files: &[(&str, String)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tenants.d")).expect("mkdir");
    std::fs::write(dir.path().join("sealpost.toml"), MAIN).expect("write");
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let main = dir.path().join("sealpost.toml");
    (dir, main)
}

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join("tenants.d").join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, dir.join("tenants.d").join(name)).expect("rename");
}

fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join("tenants.d").join(name)
}

/// A tenant with a relay source, a user, a console admin, a limit, a quota and two
/// domains, one of them with a route and a hosted MTA-STS policy.
fn tenant(name: &str, n: u8, level: &str, hash: &str) -> String {
    format!(
        "[[tenants]]\nname = \"{name}\"\nrelay_sources = [\"192.0.2.{n}/32\"]\nmax_in_flight = {n}\n\
         max_queue_messages = 1{n}\n\
         users = [{{ name = \"relay@{name}\", password_hash = \"{hash}\" }}]\n\
         console_admins = [{{ name = \"admin@{name}\", password_hash = \"{hash}\" }}]\n\n\
         [[domains]]\nname = \"{name}.example\"\ntenant = \"{name}\"\n\
         route = {{ hosts = [\"mx.{name}.example:2525\"] }}\n\
         [domains.mta_sts]\nmode = \"enforce\"\nmx = [\"mx.{name}.example\"]\n\
         [[domains.outbound.peers]]\npeer = \"bank.example\"\nlevel = \"{level}\"\n\n\
         [[domains]]\nname = \"www.{name}.example\"\ntenant = \"{name}\"\n\
         [[domains.inbound.peers]]\npeer = \"10.{n}.0.0/16\"\nlevel = \"mandatory\"\n"
    )
}

fn hash() -> String {
    crate::auth::hash_password(b"pw", crate::auth::MIN_ITERATIONS)
        .expect("hash")
        .to_string()
}

/// Every answer the policy gives for every domain of `config`.
fn answers(config: &Config) -> Vec<(String, Resolution, Resolution)> {
    let mut all: Vec<_> = config
        .policy
        .domains()
        .iter()
        .map(|d| {
            let name = d.name.as_str();
            let outbound = PeerQuery::Outbound {
                recipient_domain: "bank.example",
            };
            let inbound = PeerQuery::Inbound {
                ip: "10.2.3.4".parse().ok(),
                sender_domain: None,
            };
            (
                name.to_owned(),
                config.policy.resolve(name, outbound),
                config.policy.resolve(name, inbound),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `fast` holds what a load from scratch of the same tree holds.
fn assert_same(fast: &Config, main: &Path) {
    let full = Config::load(main).expect("the tree is valid");
    let domains = |c: &Config| -> Vec<String> {
        c.policy
            .domains()
            .iter()
            .map(|d| format!("{d:?}"))
            .collect()
    };
    assert_eq!(domains(fast), domains(&full), "domains, in order");
    assert_eq!(answers(fast), answers(&full));
    let relay = |c: &Config| sorted(c.relay.entries().map(|(n, t)| format!("{n} {t}")).collect());
    assert_eq!(relay(fast), relay(&full), "relay sources");
    let users = |c: &Config| sorted(c.users.iter().map(|u| format!("{u:?}")).collect());
    assert_eq!(users(fast), users(&full), "users");
    let console = |c: &Config| sorted(c.console_users.iter().map(|u| format!("{u:?}")).collect());
    assert_eq!(console(fast), console(&full), "console users");
    assert_eq!(fast.recipients, full.recipients);
    assert_eq!(fast.hosted_mta_sts, full.hosted_mta_sts);
    assert_eq!(fast.routes, full.routes);
    assert_eq!(fast.tenant_limits, full.tenant_limits);
    assert_eq!(fast.tenant_quotas, full.tenant_quotas);
    assert_eq!(fast.tenant_domains, full.tenant_domains);
    let files = |c: &Config| -> Vec<(String, Option<String>, String)> {
        (c.tenant_files.files.iter())
            .map(|(f, t)| (f.name(), t.clone(), f.version()))
            .collect()
    };
    assert_eq!(files(fast), files(&full), "tenant files");
    assert_eq!(fast.tenant_files.tenants(), full.tenant_files.tenants());
    // The index by tenant (kept up to date, not rebuilt, by a change).
    for tenant in full.tenant_files.tenants() {
        let of = |c: &Config| c.tenant_files.of_tenant(tenant).map(|f| f.name());
        assert_eq!(of(fast), of(&full), "the file of tenant {tenant}");
    }
    let warnings = |c: &Config| sorted(c.warnings.iter().map(|w| w.to_string()).collect());
    assert_eq!(warnings(fast), warnings(&full));
}

/// Whether partition `i` of `a` and `b` is the same shared one.
fn shared(a: &Config, b: &Config, i: usize) -> bool {
    Arc::ptr_eq(&a.policy.partitions()[i], &b.policy.partitions()[i])
}

fn three_tenants() -> (tempfile::TempDir, PathBuf, String) {
    let hash = hash();
    let (dir, main) = tree(&[
        ("a.toml", tenant("a", 1, "mandatory", &hash)),
        ("b.toml", tenant("b", 2, "mandatory", &hash)),
        ("c.toml", tenant("c", 3, "mandatory", &hash)),
    ]);
    (dir, main, hash)
}

#[test]
fn an_edit_rebuilds_only_its_tenants_partition() {
    let (dir, main, hash) = three_tenants();
    let running = Config::load(&main).expect("valid");
    assert_eq!(running.policy.partitions().len(), 4);
    let text = tenant("b", 4, "mandatory-dane", &hash).replace("www.b", "mail.b");
    let edited = Config::with_tenant_file(&running, &path_of(dir.path(), "b.toml"), &text)
        .expect("a valid edit");
    for i in [0, 1, 3] {
        assert!(shared(&running, &edited, i), "partition {i} is shared");
    }
    assert!(!shared(&running, &edited, 2));
    assert!(edited.policy.domain("www.b.example").is_none());
    assert!(edited.policy.domain("mail.b.example").is_some());
    // What the API writes, a load reads the same.
    write(dir.path(), "b.toml", &text);
    assert_same(&edited, &main);
}

#[test]
fn an_edit_adds_a_tenant_file() {
    let (dir, main, hash) = three_tenants();
    let running = Config::load(&main).expect("valid");
    let text = tenant("bb", 9, "mandatory", &hash);
    let edited = Config::with_tenant_file(&running, &path_of(dir.path(), "bb.toml"), &text)
        .expect("a valid new tenant");
    assert_eq!(edited.policy.partitions().len(), 5);
    assert!(Arc::ptr_eq(
        &running.policy.partitions()[3],
        &edited.policy.partitions()[4]
    ));
    write(dir.path(), "bb.toml", &text);
    assert_same(&edited, &main);
}

#[test]
fn a_reload_reads_only_the_changed_tenant_file() {
    let (dir, main, hash) = three_tenants();
    let running = Config::load(&main).expect("valid");
    write(
        dir.path(),
        "c.toml",
        &tenant("c", 5, "mandatory-dane", &hash),
    );
    let reloaded = Config::reload(&main, &running).expect("valid");
    for i in [0, 1, 2] {
        assert!(shared(&running, &reloaded, i), "partition {i} is shared");
    }
    let level = |c: &Config| {
        let query = PeerQuery::Outbound {
            recipient_domain: "bank.example",
        };
        c.policy.resolve("c.example", query).level.to_string()
    };
    assert_eq!(level(&reloaded), "mandatory-dane");
    assert_same(&reloaded, &main);
    // Nothing changed: everything shared.
    let again = Config::reload(&main, &reloaded).expect("valid");
    for i in 0..4 {
        assert!(shared(&reloaded, &again, i), "partition {i}");
    }
    assert_same(&again, &main);
}

#[test]
fn a_reload_adds_and_removes_tenant_files() {
    let (dir, main, hash) = three_tenants();
    let running = Config::load(&main).expect("valid");
    std::fs::remove_file(path_of(dir.path(), "a.toml")).expect("remove");
    write(dir.path(), "d.toml", &tenant("d", 7, "mandatory", &hash));
    let reloaded = Config::reload(&main, &running).expect("valid");
    assert!(reloaded.policy.domain("a.example").is_none());
    assert!(reloaded
        .relay
        .tenant_of("192.0.2.1".parse().expect("ip"))
        .is_none());
    assert!(reloaded.users.get("relay@a").is_none());
    assert!(Arc::ptr_eq(
        &running.policy.partitions()[2],
        &reloaded.policy.partitions()[1]
    ));
    assert_same(&reloaded, &main);
}

#[test]
fn an_edit_taking_another_tenants_names_names_both_places() {
    let (dir, main, hash) = three_tenants();
    let running = Config::load(&main).expect("valid");
    let b = path_of(dir.path(), "b.toml");
    let cases = [
        // a domain of a
        (
            tenant("b", 2, "mandatory", &hash).replace("www.b.example", "www.a.example"),
            "a.toml line 21",
        ),
        // a's relay source
        (
            tenant("b", 2, "mandatory", &hash).replace("192.0.2.2/32", "192.0.2.1/32"),
            "a.toml line 3",
        ),
        // a's user
        (
            tenant("b", 2, "mandatory", &hash).replace("relay@b", "relay@a"),
            "a.toml line 6",
        ),
        // a's console admin
        (
            tenant("b", 2, "mandatory", &hash).replace("admin@b", "admin@a"),
            "a.toml line 7",
        ),
        // tenant a itself
        (
            tenant("b", 2, "mandatory", &hash)
                .replace("name = \"b\"", "name = \"a\"")
                .replace("tenant = \"b\"", "tenant = \"a\""),
            "a.toml line 2",
        ),
    ];
    for (text, first) in cases {
        let errors = match Config::with_tenant_file(&running, &b, &text) {
            Err(LoadError::Invalid(errors)) => errors.to_string(),
            other => panic!("expected errors, got {other:?}"),
        };
        assert!(
            errors.contains("tenants.d/b.toml:") && errors.contains(first),
            "{first}: {errors}"
        );
    }
}

#[test]
fn a_broken_file_on_reload_keeps_its_partition_and_the_others_apply() {
    let (dir, main, hash) = three_tenants();
    let running = Config::load(&main).expect("valid");
    let before = answers(&running);
    write(dir.path(), "a.toml", "[[domains]\nbroken");
    write(
        dir.path(),
        "c.toml",
        &tenant("c", 3, "mandatory-dane", &hash),
    );
    let reloaded = Config::reload(&main, &running).expect("the main file is valid");
    assert_eq!(reloaded.tenant_files.kept_previous.len(), 1);
    let after = answers(&reloaded);
    let of = |all: &[(String, Resolution, Resolution)], prefix: &str| {
        all.iter()
            .filter(|(n, _, _)| !n.starts_with(prefix) && !n.contains(&format!(".{prefix}")))
            .cloned()
            .collect::<Vec<_>>()
    };
    // Every tenant but c answers as before (a from its previous version).
    assert_eq!(of(&before, "c"), of(&after, "c"));
    assert_ne!(before, after);
}
