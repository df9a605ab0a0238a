//! `[server] tenants_dir`: loading, errors naming tenant files, and the
//! reload rule (a broken tenant file keeps its previous version).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;

const MAIN: &str = "[server]\ntenants_dir = \"tenants.d\"\n";

fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
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
    // A new inode, as an editor's save or the admin API's rename makes.
    let tmp = dir.join("tenants.d").join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, dir.join("tenants.d").join(name)).expect("rename");
}

fn domain(name: &str, tenant: &str, level: &str) -> String {
    format!("[[domains]]\nname = \"{name}\"\ntenant = \"{tenant}\"\n[[domains.outbound.peers]]\npeer = \"bank.example\"\nlevel = \"{level}\"\n")
}

fn level(config: &Config, domain: &str) -> crate::policy::SecurityLevel {
    let query = crate::policy::PeerQuery::Outbound {
        recipient_domain: "bank.example",
    };
    config.policy.resolve(domain, query).level
}

#[test]
fn tenant_files_add_their_tenants_and_domains() {
    let acme = format!(
        "# Acme\n[[tenants]]\nname = \"acme\"\nrelay_sources = [\"192.0.2.0/24\"]\n{}",
        domain("acme.example", "acme", "mandatory")
    );
    let (_dir, main) = tree(&[
        ("acme.toml", &acme),
        (
            "beta.toml",
            &domain("beta.example", "beta", "mandatory-dane"),
        ),
        ("notes.txt", "not read"),
        (".hidden.toml", "not = read"),
    ]);
    let config = Config::load(&main).expect("valid tree");
    assert_eq!(config.policy.domains().len(), 2);
    assert_eq!(level(&config, "beta.example").to_string(), "mandatory-dane");
    assert_eq!(config.tenant_files.tenants(), ["acme", "beta"]);
    let acme_file = config.tenant_files.of_tenant("acme").expect("acme's file");
    assert!(acme_file.path.ends_with("tenants.d/acme.toml"));
    assert_eq!(acme_file.version().len(), 16);
}

#[test]
fn a_domain_in_two_files_names_both_places() {
    let (_dir, main) = tree(&[
        ("a.toml", &domain("x.example", "a", "mandatory")),
        (
            "b.toml",
            &format!("# b\n{}", domain("X.example", "b", "mandatory")),
        ),
    ]);
    let errors = match Config::load(&main) {
        Err(LoadError::Invalid(errors)) => errors,
        other => panic!("expected errors, got {other:?}"),
    };
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 1, "{text}");
    let error = &errors.0[0];
    assert!(error.file.ends_with("tenants.d/b.toml"), "{text}");
    assert_eq!(error.line(), Some(3), "{text}");
    assert!(
        text.contains("is configured twice (first at ") && text.contains("tenants.d/a.toml line 2"),
        "{text}"
    );
}

#[test]
fn a_tenant_file_holds_one_tenant_and_errors_name_it() {
    let two = "[[tenants]]\nname = \"a\"\n[[tenants]]\nname = \"b\"\n";
    let foreign = format!(
        "{}{}",
        domain("a.example", "a", "mandatory"),
        domain("b.example", "b", "mandatory")
    );
    let (_dir, main) = tree(&[
        ("one.toml", two),
        ("two.toml", &foreign),
        (
            "three.toml",
            "[[domains]]\nname = \"c.example\"\ntenant = \"c\"\nlevel = 3\n",
        ),
        ("four.toml", &domain("d.example", "a", "sometimes")),
    ]);
    let errors = match Config::load(&main) {
        Err(LoadError::Invalid(errors)) => errors,
        other => panic!("expected errors, got {other:?}"),
    };
    let text = errors.to_string();
    let has = |file: &str, line: usize, what: &str| {
        errors.0.iter().any(|e| {
            e.file.ends_with(file) && e.line() == Some(line) && e.to_string().contains(what)
        })
    };
    assert!(has("four.toml", 6, "sometimes"), "{text}");
    assert!(
        has("one.toml", 2, "tenant `a` is configured twice (first at "),
        "{text}"
    );
    assert!(has("two.toml", 3, "four.toml line 3"), "{text}");
    assert!(has("one.toml", 4, "has 2 `[[tenants]]` tables"), "{text}");
    assert!(has("three.toml", 4, "unknown field `level`"), "{text}");
    assert!(has("two.toml", 9, "one tenant per file"), "{text}");
}

#[test]
fn a_reload_keeps_a_broken_tenant_files_previous_version() {
    let (dir, main) = tree(&[
        ("a.toml", &domain("a.example", "a", "mandatory")),
        ("b.toml", &domain("b.example", "b", "mandatory")),
        ("c.toml", &domain("c.example", "c", "mandatory")),
    ]);
    let first = Config::load(&main).expect("valid");
    // a: a valid change; b: a broken one; c: a domain b already holds.
    write(
        dir.path(),
        "a.toml",
        &domain("a.example", "a", "mandatory-dane"),
    );
    write(dir.path(), "b.toml", &domain("b.example", "b", "nonsense"));
    write(dir.path(), "c.toml", &domain("a.example", "c", "mandatory"));
    write(dir.path(), "d.toml", &domain("d.example", "d", "dane-only"));
    let second = Config::reload(&main, &first).expect("the main file is valid");
    assert_eq!(level(&second, "a.example").to_string(), "mandatory-dane");
    assert_eq!(level(&second, "b.example").to_string(), "mandatory");
    assert_eq!(level(&second, "c.example").to_string(), "mandatory");
    assert!(second.policy.domain("d.example").is_none());
    let kept: Vec<String> = second
        .tenant_files
        .kept_previous
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(kept.len(), 3, "{kept:#?}");
    assert!(
        kept.iter()
            .any(|e| e.contains("b.toml:6:") && e.contains("nonsense")),
        "{kept:#?}"
    );
    assert!(
        kept.iter()
            .any(|e| e.contains("c.toml:2:") && e.contains("a.toml line 2")),
        "{kept:#?}"
    );
    assert!(
        kept.iter()
            .any(|e| e.contains("d.toml:6:") && e.contains("dane-only")),
        "{kept:#?}"
    );
    // Unchanged files are not read again: the same text, shared.
    let shared = |config: &Config, name: &str| {
        config
            .tenant_files
            .files
            .iter()
            .find(|(f, _)| f.path.ends_with(name))
            .map(|(f, _)| f.text.clone())
            .expect("file")
    };
    let third = Config::reload(&main, &second).expect("valid");
    assert!(Arc::ptr_eq(
        &shared(&second, "a.toml"),
        &shared(&third, "a.toml")
    ));
    // Fixed, the files apply at the next reload.
    write(
        dir.path(),
        "b.toml",
        &domain("b.example", "b", "mandatory-dane"),
    );
    write(
        dir.path(),
        "c.toml",
        &domain("c.example", "c", "mandatory-dane"),
    );
    write(
        dir.path(),
        "d.toml",
        &domain("d.example", "d", "mandatory-dane"),
    );
    let fourth = Config::reload(&main, &third).expect("valid");
    assert!(fourth.tenant_files.kept_previous.is_empty());
    for name in ["b.example", "c.example", "d.example"] {
        assert_eq!(level(&fourth, name).to_string(), "mandatory-dane", "{name}");
    }
}

#[test]
fn a_broken_main_file_refuses_the_whole_reload() {
    let (dir, main) = tree(&[("a.toml", &domain("a.example", "a", "mandatory"))]);
    let first = Config::load(&main).expect("valid");
    write(
        dir.path(),
        "a.toml",
        &domain("a.example", "a", "mandatory-dane"),
    );
    std::fs::write(
        &main,
        format!("{MAIN}[defaults]\noutbound = {{ level = \"x\" }}\n"),
    )
    .expect("write");
    assert!(matches!(
        Config::reload(&main, &first),
        Err(LoadError::Invalid(_))
    ));
}

#[test]
fn at_start_a_broken_tenant_file_is_an_error() {
    let (_dir, main) = tree(&[("a.toml", "[[domains]\n")]);
    let text = Config::load(&main).expect_err("broken").to_string();
    assert!(text.contains("tenants.d/a.toml:1:"), "{text}");
}

#[test]
fn a_missing_tenants_dir_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("sealpost.toml");
    std::fs::write(&main, MAIN).expect("write");
    let text = Config::load(&main).expect_err("no dir").to_string();
    assert!(
        text.contains("sealpost.toml:2:") && text.contains("cannot read the tenants directory"),
        "{text}"
    );
}

#[test]
fn a_symbolic_link_in_tenants_dir_is_read_and_followed_on_reload() {
    let (dir, main) = tree(&[("a.toml", &domain("a.example", "a", "mandatory"))]);
    let elsewhere = dir.path().join("b-real.toml");
    std::fs::write(&elsewhere, domain("b.example", "b", "mandatory")).expect("write");
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("tenants.d").join("b.toml"))
        .expect("symlink");
    let config = Config::load(&main).expect("valid tree");
    assert_eq!(config.tenant_files.tenants(), ["a", "b"]);
    // An unchanged tree: every file is taken from the running configuration.
    let same = Config::reload(&main, &config).expect("reload");
    for ((old, _), (new, _)) in config
        .tenant_files
        .files
        .iter()
        .zip(&same.tenant_files.files)
    {
        assert!(
            Arc::ptr_eq(&old.text, &new.text),
            "{} read again",
            new.name()
        );
    }
    // The link's target changes (the link itself does not): read again.
    std::fs::write(&elsewhere, domain("b.example", "b", "mandatory-dane")).expect("write");
    let changed = Config::reload(&main, &same).expect("reload");
    assert_eq!(level(&changed, "b.example").to_string(), "mandatory-dane");
}

/// Enough files that they are parsed on several threads
/// (`crate::parallel`): the result and the errors are those of one
/// thread, in file and line order.
#[test]
fn a_large_tree_loads_on_every_core_with_errors_in_file_order() {
    let files: Vec<(String, String)> = (0..600)
        .map(|t| {
            let tenant = format!("t{t:03}");
            let mut text = String::new();
            for d in 0..5 {
                text.push_str(&domain(
                    &format!("d{d}.{tenant}.example"),
                    &tenant,
                    "mandatory",
                ));
            }
            (format!("{tenant}.toml"), text)
        })
        .collect();
    let named: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let (dir, main) = tree(&named);
    let config = Config::load(&main).expect("valid tree");
    assert_eq!(config.policy.domains().len(), 3_000);
    assert_eq!(config.tenant_files.tenants().len(), 600);
    let names: Vec<String> = config
        .policy
        .domains()
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    let expected: Vec<String> = (0..600)
        .flat_map(|t| (0..5).map(move |d| format!("d{d}.t{t:03}.example")))
        .collect();
    assert_eq!(names, expected, "configuration order");
    assert_eq!(level(&config, "d4.t599.example").to_string(), "mandatory");

    // Errors at both ends of the tree: each in its file, in order.
    let broken_level = domain("d0.t002.example", "t002", "mandatroy");
    write(dir.path(), "t002.toml", &broken_level);
    let duplicate = format!(
        "{}{}",
        domain("d0.t598.example", "t598", "mandatory"),
        domain("d1.t001.example", "t598", "mandatory")
    );
    write(dir.path(), "t598.toml", &duplicate);
    write(dir.path(), "t599.toml", "[[domains]\nname = \"x\"\n");
    let errors = match Config::load(&main) {
        Err(LoadError::Invalid(errors)) => errors,
        other => panic!("expected errors, got {other:?}"),
    };
    let text = errors.to_string();
    let files: Vec<&str> = errors
        .0
        .iter()
        .map(|e| e.file.rsplit('/').next().unwrap_or_default())
        .collect();
    assert_eq!(files, ["t002.toml", "t598.toml", "t599.toml"], "{text}");
    assert!(text.contains("mandatroy"), "{text}");
    assert!(text.contains("d1.t001.example"), "{text}");
    assert!(
        text.contains("t001.toml"),
        "the first place of the duplicate: {text}"
    );
}

/// A syntax error in one of the main file's domain sections is the only
/// error, even when the tenant directory cannot be read: the sections are
/// read after the directory is scanned, and must still come first.
#[test]
fn a_syntax_error_in_the_main_file_comes_before_an_unreadable_tenant_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("sealpost.toml");
    let text = format!(
        "[server]\ntenants_dir = \"missing.d\"\n{}[[domains]]\nname = \"b.example\"\ntenant = \"t\"\nenabled = maybe\n",
        domain("a.example", "t", "mandatory")
    );
    std::fs::write(&main, &text).expect("write");
    let Err(LoadError::Invalid(errors)) = Config::load(&main) else {
        panic!("expected errors");
    };
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        matches!(errors.0[0].kind, ConfigErrorKind::Syntax(_)),
        "{errors}"
    );
    assert_eq!(errors.0[0].location.map(|l| l.line), Some(12), "{errors}");
    // Without the syntax error, the directory is the error.
    std::fs::write(&main, text.replace("maybe", "true")).expect("write");
    let Err(LoadError::Invalid(errors)) = Config::load(&main) else {
        panic!("expected errors");
    };
    assert!(
        matches!(
            errors.0[0].kind,
            ConfigErrorKind::TenantsDirUnreadable { .. }
        ),
        "{errors}"
    );
}

/// A scan stops at the first file it cannot `stat`, and a file before it
/// that cannot be read is the error reported, as when the files were
/// `stat`ed and read one after the other.
#[test]
fn a_scan_reports_the_first_unreadable_file_in_name_order() {
    let (dir, _main) = tree(&[]);
    let tenants = dir.path().join("tenants.d");
    // Not UTF-8: `a.toml` cannot be read as text (root or not).
    std::fs::write(tenants.join("a.toml"), b"name = \"\xff\"\n").expect("write");
    // A dangling link: `b.toml` cannot be `stat`ed.
    std::os::unix::fs::symlink(tenants.join("gone.toml"), tenants.join("b.toml")).expect("symlink");
    let error = tenant_files::scan(&tenants, None).expect_err("an error");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    std::fs::write(
        tenants.join("a.toml"),
        domain("a.example", "a", "mandatory"),
    )
    .expect("write");
    let error = tenant_files::scan(&tenants, None).expect_err("an error");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
    std::fs::remove_file(tenants.join("b.toml")).expect("rm");
    assert_eq!(tenant_files::scan(&tenants, None).expect("scan").len(), 1);
}
