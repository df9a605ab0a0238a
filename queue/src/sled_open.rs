//! Opening a sled database that this process held a moment ago.

use std::time::Duration;

/// How long a reopen waits for a lock this process may still hold.
const LOCK_WAIT: Duration = Duration::from_secs(2);
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Opens the database `config` names, waiting up to two seconds for its file
/// lock.
///
/// sled's I/O threads keep the database file (and so its lock) open for a
/// moment after the last handle is dropped, so a store closed and reopened
/// in one process (a restart in a test, an embedded restart) can find the
/// lock still taken. A lock held by another process is still an error, after
/// the wait.
pub fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let mut waited = Duration::ZERO;
    loop {
        match config.open() {
            Err(e) if lock_taken(&e) && waited < LOCK_WAIT => {
                std::thread::sleep(LOCK_POLL);
                waited += LOCK_POLL;
            }
            result => return result,
        }
    }
}

/// Whether opening failed because another handle holds the database's lock.
pub(crate) fn lock_taken(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn waits_for_a_lock_released_within_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = sled::Config::new().path(dir.path().join("db"));
        let held = config.open().expect("first handle");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let db = open_sled(&config).expect("opened once the lock is released");
        db.insert("k", "v").expect("usable");
        releaser.join().expect("releaser");
    }

    #[test]
    fn a_lock_held_past_the_bound_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = sled::Config::new().path(dir.path().join("db"));
        let _held = config.open().expect("first handle");
        let started = Instant::now();
        let err = open_sled(&config).expect_err("the lock stays taken");
        assert!(lock_taken(&err), "{err}");
        assert!(started.elapsed() >= LOCK_WAIT, "{:?}", started.elapsed());
    }
}
