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
    /// not mean 10,000 x 10,000 comparisons per reload). Shared with the
    /// previous configuration's while they stay the same
    /// ([`TenantFiles::with_changed`]).
    by_tenant: Arc<HashMap<String, usize>>,
    by_path: Arc<HashMap<PathBuf, usize>>,
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
            by_tenant: Arc::new(by_tenant),
            by_path: Arc::new(by_path),
        }
    }

    /// These files with the entries at some indexes replaced (the same
    /// paths, new text and tenant), nothing added or removed: the index by
    /// path is shared, the index by tenant too unless a tenant changed.
    /// The main file's version is kept; no errors are kept.
    pub(super) fn with_changed(
        &self,
        changed: impl IntoIterator<Item = (usize, TenantFile, Option<String>)>,
    ) -> TenantFiles {
        let mut files = self.files.clone();
        let mut by_tenant = self.by_tenant.clone();
        for (i, file, tenant) in changed {
            let (old_file, old_tenant) = &mut files[i];
            debug_assert_eq!(old_file.path, file.path);
            *old_file = file;
            if *old_tenant != tenant {
                let index = Arc::make_mut(&mut by_tenant);
                if let Some(old) = old_tenant.as_ref() {
                    if index.get(old) == Some(&i) {
                        index.remove(old);
                    }
                }
                if let Some(new) = tenant.as_ref() {
                    index.insert(new.clone(), i);
                }
                *old_tenant = tenant;
            }
        }
        TenantFiles {
            dir: self.dir.clone(),
            files,
            kept_previous: Vec::new(),
            main_version: self.main_version.clone(),
            by_tenant,
            by_path: self.by_path.clone(),
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
///
/// A reload with nothing changed does this for 10,000 files, so it avoids
/// per-file work beyond one `stat`: names are sorted as bytes (the same
/// order as paths in one directory) and paired with `previous`' files in
/// one walk, and the `stat` is relative to the directory. The files to
/// read are read on every core.
pub(crate) fn scan(dir: &Path, previous: Option<&TenantFiles>) -> io::Result<Vec<TenantFile>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('.') || !text.ends_with(".toml") {
            continue;
        }
        entries.push((name, entry));
    }
    entries.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    // Files kept from `previous` keep its paths: only from the same directory.
    let known: &[(TenantFile, Option<String>)] = previous
        .filter(|p| p.dir.as_deref() == Some(dir))
        .map_or(&[], |p| &p.files);
    let mut k = 0;
    let mut found = Vec::with_capacity(entries.len());
    // A file that cannot be `stat`ed ends the scan; a file before it that
    // cannot be read is the error reported, as in a scan one by one.
    let mut stat_error = None;
    for (name, entry) in entries {
        // Without following a symbolic link, then following it.
        let meta = entry.metadata().and_then(|meta| {
            if meta.file_type().is_symlink() {
                std::fs::metadata(entry.path())
            } else {
                Ok(meta)
            }
        });
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                stat_error = Some(e);
                break;
            }
        };
        if !meta.is_file() {
            continue;
        }
        let stamp = Stamp::of(&meta);
        // `previous` is in the same order: skip the files gone since.
        while k < known.len() && file_name_bytes(&known[k].0.path) < name.as_encoded_bytes() {
            k += 1;
        }
        if let Some((file, _)) = known.get(k) {
            let same_name = file_name_bytes(&file.path) == name.as_encoded_bytes();
            if same_name && file.stamp == Some(stamp) {
                found.push(Found::Known(file.clone()));
                k += 1;
                continue;
            }
        }
        found.push(Found::ToRead(entry.path(), stamp));
    }
    // The files to read, read on every core when there are many (a start).
    let to_read: Vec<&Path> = (found.iter())
        .filter_map(|f| match f {
            Found::ToRead(path, _) => Some(path.as_path()),
            Found::Known(_) => None,
        })
        .collect();
    let runs = crate::parallel::in_runs(&to_read, FILES_PER_READER, |run| {
        (run.iter())
            .map(|path| std::fs::read_to_string(path).map(Arc::from))
            .collect::<io::Result<Vec<Arc<str>>>>()
    });
    let mut texts = Vec::with_capacity(to_read.len());
    for run in runs {
        texts.append(&mut run?);
    }
    if let Some(e) = stat_error {
        return Err(e);
    }
    let mut texts = texts.into_iter();
    let files = (found.into_iter())
        .map(|f| match f {
            Found::Known(file) => file,
            Found::ToRead(path, stamp) => TenantFile {
                path,
                stamp: Some(stamp),
                text: texts.next().expect("one text per file to read"),
            },
        })
        .collect();
    Ok(files)
}

/// Fewer files to read than this per thread are not worth a thread.
const FILES_PER_READER: usize = 64;

/// A file [`scan`] found: unchanged since `previous`, or to be read.
enum Found {
    Known(TenantFile),
    ToRead(PathBuf, Stamp),
}

fn file_name_bytes(path: &Path) -> &[u8] {
    path.file_name().map_or(&[], |n| n.as_encoded_bytes())
}

/// Whether `file` differs from what `previous` holds for its path.
pub(super) fn changed(file: &TenantFile, previous: Option<&TenantFiles>) -> bool {
    match previous.and_then(|p| p.previous(&file.path)) {
        Some(known) => !same_text(known, file),
        None => true,
    }
}

/// Whether two versions of a file hold the same text.
pub(super) fn same_text(a: &TenantFile, b: &TenantFile) -> bool {
    Arc::ptr_eq(&a.text, &b.text) || a.text == b.text
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
