//! `sealpost config split` and `config merge` through the real binary:
//! every file in `examples/` splits into a main file and tenant files that
//! load with the same policy and data, and merges back.

mod support;

use std::path::{Path, PathBuf};

use sealpost::cli::same_policy;
use sealpost::config::split::canonical;
use sealpost::config::Config;
use support::sealpost::run_cli;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    files
}

#[test]
fn every_example_splits_and_merges_back_losing_nothing() {
    for example in examples() {
        let name = example.file_name().expect("name").to_owned();
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(example.parent().expect("dir"), work.path());
        let main = work.path().join(&name);
        let original_text = std::fs::read_to_string(&example).expect("read");
        // Loaded from the copy: recipient lists name their files' paths.
        let original = Config::load(&main).expect("valid example");

        let (code, stdout, stderr) = run_cli(&main, &["config", "split"]);
        assert_eq!(code, Some(0), "{name:?}: {stdout}{stderr}");
        let split = Config::load(&main).expect("the split configuration loads");
        assert!(same_policy(&original, &split), "{name:?}");
        assert_eq!(
            split.policy.domains().len(),
            original.policy.domains().len()
        );
        let main_text = std::fs::read_to_string(&main).expect("read");
        let files: Vec<&str> = split
            .tenant_files
            .files
            .iter()
            .map(|(f, _)| &*f.text)
            .collect();
        assert_eq!(
            canonical(&main_text, &files).expect("valid"),
            canonical(&original_text, &[]).expect("valid"),
            "{name:?}"
        );
        assert_eq!(
            std::fs::read_to_string(work.path().join(format!("{}.orig", name.to_string_lossy())))
                .expect("the original is kept"),
            original_text
        );
        let (code, stdout, stderr) = run_cli(&main, &["config", "check"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stdout.contains("tenant files:"), "{stdout}");

        // Merged back into one file: the same data and policy.
        let (code, merged, stderr) = run_cli(&main, &["config", "merge"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            canonical(&merged, &[]).expect("valid"),
            canonical(&original_text, &[]).expect("valid"),
            "{name:?}"
        );
        let merged_path = work.path().join("merged.toml");
        std::fs::write(&merged_path, &merged).expect("write");
        let merged = Config::load(&merged_path).expect("the merged file loads");
        assert!(same_policy(&original, &merged), "{name:?}");
    }
}

#[test]
fn a_split_configuration_is_not_split_again() {
    let example = examples()
        .into_iter()
        .find(|p| p.ends_with("sealpost.toml"))
        .expect("full example");
    let work = tempfile::tempdir().expect("tempdir");
    copy_dir(example.parent().expect("dir"), work.path());
    let main = work.path().join("sealpost.toml");
    assert_eq!(run_cli(&main, &["config", "split"]).0, Some(0));
    let (code, _, stderr) = run_cli(&main, &["config", "split"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("already set"), "{stderr}");
}
