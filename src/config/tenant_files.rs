//! `[server] tenants_dir`: one file per tenant (issue 17).
//!
//! Each `*.toml` file of the directory holds one tenant: at most one
//! `[[tenants]]` table and the `[[domains]]` of that tenant, in the syntax
//! of the main file. Files are read in name order; names starting with a
//! dot (editors' and the admin API's temporary files) are skipped.
//!
//! A [`TenantFiles`] remembers each file as last read (its text, and the
//! length, modification time and inode it had), so that a reload reads
//! again only the files whose stamp changed, and so that a reload can keep
//! a broken file's previous version in force (see `Config::reload`).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ConfigError;

/// What identifies a file's content without reading it: an atomic rename
/// changes the inode, an edit in place the length or the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// One tenant file as read.
#[derive(Debug, Clone)]
pub struct TenantFile {
    pub path: PathBuf,
    /// `None` for text that is not on disk (an edit being validated).
    pub stamp: Option<Stamp>,
    pub text: Arc<str>,
}

impl TenantFile {
    /// The name errors use for it: its path as given.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The content's version: the first 16 hex digits of its SHA-256. The
    /// admin API's `ETag` for the tenant.
    pub fn version(&self) -> String {
        version_of(&self.text)
    }
}

/// The version of a tenant file's text (see [`TenantFile::version`]).
pub(crate) fn version_of(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tenant files a configuration was built from.
#[derive(Debug, Clone, Default)]
pub struct TenantFiles {
    /// `[server] tenants_dir`, resolved; `None` without one.
    pub dir: Option<PathBuf>,
    /// In name order, with the tenant each defines (`None`: an empty file).
    pub files: Vec<(TenantFile, Option<String>)>,
    /// Errors of files whose previous version stays in force (a reload
    /// reports them; empty after a load from scratch).
    pub kept_previous: Vec<ConfigError>,
    /// The [`version_of`] the main file's text these files were validated
    /// with: a change to tenant files alone is applied to the running
    /// configuration only while the main file is the same.
    pub main_version: Option<String>,
    /// Indexes into `files`: by tenant and by path (10,000 tenants must
    /// not mean 10,000 x 10,000 comparisons per reload).
    by_tenant: HashMap<String, usize>,
    by_path: HashMap<PathBuf, usize>,
}

impl TenantFiles {
    pub fn new(
        dir: Option<PathBuf>,
        files: Vec<(TenantFile, Option<String>)>,
        kept_previous: Vec<ConfigError>,
    ) -> TenantFiles {
        let by_tenant = (files.iter().enumerate())
            .filter_map(|(i, (_, t))| Some((t.clone()?, i)))
            .collect();
        let by_path = (files.iter().enumerate())
            .map(|(i, (f, _))| (f.path.clone(), i))
            .collect();
        TenantFiles {
            dir,
            files,
            kept_previous,
            main_version: None,
            by_tenant,
            by_path,
        }
    }

    /// The file that defines `tenant`.
    pub(crate) fn of_tenant(&self, tenant: &str) -> Option<&TenantFile> {
        self.by_tenant.get(tenant).map(|&i| &self.files[i].0)
    }

    /// The names of the tenants that have a file, sorted.
    pub fn tenants(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .files
            .iter()
            .filter_map(|(_, t)| t.as_deref())
            .collect();
        names.sort_unstable();
        names
    }

    /// The index in `files` of the file at `path`.
    pub(super) fn index_of(&self, path: &Path) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    pub(super) fn previous(&self, path: &Path) -> Option<&TenantFile> {
        self.by_path.get(path).map(|&i| &self.files[i].0)
    }
}

/// The `*.toml` files of `dir`, in name order: a file whose stamp equals
/// its stamp in `previous` is taken from there without being read.
pub(crate) fn scan(dir: &Path, previous: Option<&TenantFiles>) -> io::Result<Vec<TenantFile>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            continue;
        }
        let stamp = Stamp::of(&meta);
        if let Some(known) = previous.and_then(|p| p.previous(&path)) {
            if known.stamp == Some(stamp) {
                files.push(known.clone());
                continue;
            }
        }
        let text = std::fs::read_to_string(&path)?;
        files.push(TenantFile {
            path,
            stamp: Some(stamp),
            text: Arc::from(text),
        });
    }
    Ok(files)
}

/// Whether `file` differs from what `previous` holds for its path.
pub(super) fn changed(file: &TenantFile, previous: Option<&TenantFiles>) -> bool {
    match previous.and_then(|p| p.previous(&file.path)) {
        Some(known) => !Arc::ptr_eq(&known.text, &file.text) && known.text != file.text,
        None => true,
    }
}

/// The version in force of the file at `path`, from `previous`.
pub(super) fn previous_version(path: &Path, previous: Option<&TenantFiles>) -> Option<TenantFile> {
    previous.and_then(|p| p.previous(path)).cloned()
}

/// Writes a tenant file whole ([`crate::atomic_file::write`]; the
/// temporary file's name starts with a dot, so a reload skips it).
pub(crate) fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    crate::atomic_file::write(path, text.as_bytes(), 0o666)
}
