//! The admin socket file: created with mode 0600 (0660 and the `[admin]
//! group` when one is configured), never world-writable; a stale file left
//! by a crashed server is replaced, a live one (another sealpost answers on
//! it) is refused, and anything that is not a socket is left alone.
//!
//! The socket is bound inside a private directory (mode 0700) next to its
//! final name, given its mode and group, and only then hard-linked to its
//! final name (a link fails if the name exists, so two servers starting at
//! once cannot take the name from each other): nobody can connect before
//! the socket has its configured permissions.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::AdminError;

/// The socket file this process created; removed by [`SocketFile::remove`]
/// only while it is still the same file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device, inode and change time: an inode number alone may be reused.
    identity: (u64, u64, i64, i64),
}

fn identity(meta: &fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one this process made.
    pub fn remove(&self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if identity(&meta) == self.identity {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds the admin socket at `path` (see the module documentation).
pub fn bind(path: &Path, group: Option<&str>) -> Result<(UnixListener, SocketFile), AdminError> {
    let io_error = |source: io::Error| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    clear_stale(path)?;
    let gid = group.map(group_id).transpose()?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|source| AdminError::Io {
        path: parent.to_owned(),
        source,
    })?;
    // Bound first inside a directory only this user can enter, so nobody
    // can connect before the socket has its final mode and group.
    let private = parent.join(format!(".sealpost-admin.{}", std::process::id()));
    let _ = fs::remove_file(private.join("admin.sock"));
    let _ = fs::remove_dir(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|source| AdminError::Io {
            path: private.clone(),
            source,
        })?;
    let temporary = private.join("admin.sock");
    let placed = UnixListener::bind(&temporary)
        .and_then(|listener| place(&temporary, path, gid).map(|()| listener));
    let _ = fs::remove_file(&temporary);
    let _ = fs::remove_dir(&private);
    let listener = match placed {
        Ok(listener) => listener,
        // Another server took the name since `clear_stale` looked.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(AdminError::InUse {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io_error(e)),
    };
    let meta = fs::symlink_metadata(path).map_err(io_error)?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            identity: identity(&meta),
        },
    ))
}

/// Mode, group, then the final name (the caller removes the temporary one).
fn place(temporary: &Path, path: &Path, gid: Option<u32>) -> io::Result<()> {
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    fs::set_permissions(temporary, fs::Permissions::from_mode(mode))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(temporary, None, Some(gid))?;
    }
    // A hard link never replaces a socket another server placed meanwhile
    // (a rename would).
    fs::hard_link(temporary, path)
}

/// Removes a stale socket file at `path`; refuses a live one or a non-socket.
fn clear_stale(path: &Path) -> Result<(), AdminError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(AdminError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(AdminError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(AdminError::InUse {
            path: path.to_owned(),
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            tracing::info!(path = %path.display(), "replacing a stale admin socket file");
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(AdminError::Io {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
        Err(source) => Err(AdminError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A group name from `/etc/group`, or a numeric id.
fn group_id(group: &str) -> Result<u32, AdminError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let unknown = || AdminError::UnknownGroup {
        group: group.to_string(),
    };
    let table = fs::read_to_string("/etc/group").map_err(|_| unknown())?;
    group_in(&table, group).ok_or_else(unknown)
}

/// The id of `name` in the text of a group file (`name:x:gid:members`).
fn group_in(table: &str, name: &str) -> Option<u32> {
    table.lines().find_map(|line| {
        let mut fields = line.split(':');
        let entry = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?;
        (entry == name).then(|| gid.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_come_from_the_group_file() {
        let table = "root:x:0:\n# comment\nsealpost-admin:x:1234:alice,bob\nbroken\n";
        assert_eq!(group_in(table, "sealpost-admin"), Some(1234));
        assert_eq!(group_in(table, "root"), Some(0));
        assert_eq!(group_in(table, "sealpost"), None);
        assert_eq!(group_in(table, "broken"), None);
        assert!(matches!(group_id("4321"), Ok(4321)));
        assert!(matches!(
            group_id("no-such-group-here"),
            Err(AdminError::UnknownGroup { .. })
        ));
    }

    #[tokio::test]
    async fn a_socket_is_private_a_stale_one_replaced_and_a_file_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.sock");
        let (listener, file) = bind(&path, None).expect("bind");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: refused.
        assert!(matches!(bind(&path, None), Err(AdminError::InUse { .. })));
        // Stale (nobody listens any more): replaced.
        drop(listener);
        let (_listener, second) = bind(&path, None).expect("rebind over a stale file");
        // The first owner no longer removes the new file.
        file.remove();
        assert!(path.exists());
        second.remove();
        assert!(!path.exists());
        // Not a socket: left alone.
        fs::write(&path, "precious").expect("write");
        assert!(matches!(
            bind(&path, None),
            Err(AdminError::NotASocket { .. })
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), "precious");
        // A group: 0660.
        let gid = fs::metadata(dir.path()).expect("stat").gid();
        let other = dir.path().join("group.sock");
        let (_l, _f) = bind(&other, Some(&gid.to_string())).expect("bind with a group");
        let meta = fs::metadata(&other).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
    }
}
