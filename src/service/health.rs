//! Liveness and readiness.
//!
//! *Live* means the process answers HTTP: `GET /healthz/live` is `200` as
//! long as the admin listeners run. *Ready* means sealpost can take mail
//! now and keep it; every check must pass:
//!
//! | check | passes when |
//! |---|---|
//! | `listeners` | the SMTP listeners are bound and accepting (not yet, or no longer during a stop) |
//! | `queue` | a file in the queue directory can be written and fsynced |
//! | `delivery_engine` | the engine's loop ticked within [`ENGINE_STALL`] |
//! | `disk` | the queue's file system has `[limits] min_free_disk` octets available (passes when it is 0); below it the SMTP side answers new mail `452 4.3.1` too |
//!
//! The observations are gathered by [`Health::readiness`] (blocking: a
//! write and an fsync) and judged by the pure [`evaluate`], which the table
//! tests cover. Free space is read through the queue's
//! [`Storage`](crate::inbound::storage::Storage), the same one the SMTP
//! side asks before taking mail, so both judge the reserve from one
//! reading; its [`FreeSpace`](crate::inbound::storage::FreeSpace) trait lets a test stand in for the file
//! system.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Heartbeat;
use crate::inbound::storage::Storage;

/// The engine's loop ticks every 250 ms: this long without a tick means
/// it is stuck.
pub(crate) const ENGINE_STALL: Duration = Duration::from_secs(10);

/// How long one readiness answer is reused, so a scraper polling often
/// does not turn into a stream of fsyncs.
pub(crate) const CACHE_FOR: Duration = Duration::from_secs(1);

/// Name of the file the queue check writes (and removes) in the queue
/// directory.
pub(crate) const PROBE_FILE: &str = ".ready-probe";

#[cfg(test)]
use crate::inbound::storage::{DiskSpace, FreeSpace};

/// What was seen, for [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observations {
    pub listeners_open: bool,
    /// The probe write in the queue directory, or why it failed.
    pub queue_write: Result<(), String>,
    /// Since the engine's last tick (`None`: it never ticked).
    pub engine_tick_age: Option<Duration>,
    /// `[limits] min_free_disk`.
    pub reserve: Option<u64>,
    /// Free octets on the queue's file system, or why unknown (only read
    /// when a reserve is set).
    pub free: Option<Result<u64, String>>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The readiness answer: ready when every check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl Readiness {
    /// The names of the checks that failed.
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }
}

/// Judges the observations.
pub(crate) fn evaluate(seen: &Observations) -> Readiness {
    let mut checks = Vec::with_capacity(4);
    checks.push(if seen.listeners_open {
        pass("listeners", "accepting SMTP connections".into())
    } else {
        fail("listeners", "not accepting SMTP connections".into())
    });
    checks.push(match &seen.queue_write {
        Ok(()) => pass("queue", "the queue directory takes durable writes".into()),
        Err(why) => fail(
            "queue",
            format!("the queue directory is not writable: {why}"),
        ),
    });
    checks.push(match seen.engine_tick_age {
        None => fail(
            "delivery_engine",
            "the delivery engine's loop has not run yet".into(),
        ),
        Some(age) if age > ENGINE_STALL => fail(
            "delivery_engine",
            format!(
                "the delivery engine's loop last ticked {} ms ago (stalled after {} s)",
                age.as_millis(),
                ENGINE_STALL.as_secs()
            ),
        ),
        Some(age) => pass(
            "delivery_engine",
            format!(
                "the delivery engine's loop ticked {} ms ago",
                age.as_millis()
            ),
        ),
    });
    checks.push(match (seen.reserve, &seen.free) {
        (None, _) => pass(
            "disk",
            "no disk reserve ([limits] min_free_disk = 0)".into(),
        ),
        (Some(reserve), Some(Ok(free))) if *free >= reserve => {
            pass("disk", format!("{free} octets free, reserve {reserve}"))
        }
        (Some(reserve), Some(Ok(free))) => fail(
            "disk",
            format!("{free} octets free, below the reserve of {reserve} ([limits] min_free_disk)"),
        ),
        (Some(_), Some(Err(why))) => fail("disk", format!("free space unknown: {why}")),
        (Some(_), None) => fail("disk", "free space not read".into()),
    });
    Readiness {
        ready: checks.iter().all(|c| c.ok),
        checks,
    }
}

fn pass(name: &'static str, detail: String) -> Check {
    Check {
        name,
        ok: true,
        detail,
    }
}

fn fail(name: &'static str, detail: String) -> Check {
    Check {
        name,
        ok: false,
        detail,
    }
}

/// Writes, fsyncs and removes [`PROBE_FILE`] in `dir`.
pub(crate) fn probe_write(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let mut file = std::fs::File::create(&path)?;
    file.write_all(b"sealpost readiness probe\n")?;
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(&path)
}

/// Gives `[limits] min_free_disk` of the configuration in force.
pub(crate) type ReserveSource = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// The server's health: what the checks read, shared by the admin API.
pub struct Health {
    listeners_open: AtomicBool,
    heartbeat: Arc<Heartbeat>,
    storage: Arc<Storage>,
    reserve: ReserveSource,
    cached: Mutex<Option<(Instant, Readiness)>>,
}

impl Health {
    /// Readiness of the queue in `storage` (shared with the SMTP side).
    pub fn new(storage: Arc<Storage>, heartbeat: Arc<Heartbeat>, reserve: ReserveSource) -> Health {
        Health {
            listeners_open: AtomicBool::new(false),
            heartbeat,
            storage,
            reserve,
            cached: Mutex::new(None),
        }
    }

    /// The SMTP listeners started (`true`) or stopped accepting (`false`).
    pub(crate) fn set_listeners_open(&self, open: bool) {
        self.listeners_open.store(open, Ordering::Relaxed);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Octets free on the queue's file system (`None`: unknown) and the
    /// reserve in force (0: none), for the metrics.
    pub fn disk(&self) -> (Option<u64>, u64) {
        let free = self.storage.free_bytes().ok();
        (free, (self.reserve)().unwrap_or(0))
    }

    /// Observes and judges (blocking: writes and fsyncs a file), reusing
    /// an answer younger than [`CACHE_FOR`].
    pub fn readiness(&self) -> Readiness {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, answer)) = cached.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return answer.clone();
            }
        }
        let reserve = (self.reserve)();
        let seen = Observations {
            listeners_open: self.listeners_open.load(Ordering::Relaxed),
            queue_write: probe_write(self.storage.dir()).map_err(|e| e.to_string()),
            engine_tick_age: self.heartbeat.age(),
            reserve,
            free: reserve.map(|_| self.storage.free_bytes()),
        };
        let answer = evaluate(&seen);
        *cached = Some((Instant::now(), answer.clone()));
        answer
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("listeners_open", &self.listeners_open)
            .field("queue_dir", &self.storage.dir())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observations {
        Observations {
            listeners_open: true,
            queue_write: Ok(()),
            engine_tick_age: Some(Duration::from_millis(200)),
            reserve: Some(1_000),
            free: Some(Ok(5_000)),
        }
    }

    #[test]
    fn readiness_needs_every_check() {
        type Change = fn(&mut Observations);
        let table: [(&str, Change, &[&str]); 9] = [
            ("healthy", |_| {}, &[]),
            (
                "no reserve set",
                |o| {
                    o.reserve = None;
                    o.free = None;
                },
                &[],
            ),
            ("exactly the reserve", |o| o.free = Some(Ok(1_000)), &[]),
            (
                "listeners closed",
                |o| o.listeners_open = false,
                &["listeners"],
            ),
            (
                "queue read-only",
                |o| o.queue_write = Err("read-only file system".into()),
                &["queue"],
            ),
            (
                "engine never ticked",
                |o| o.engine_tick_age = None,
                &["delivery_engine"],
            ),
            (
                "engine stalled",
                |o| o.engine_tick_age = Some(ENGINE_STALL + Duration::from_millis(1)),
                &["delivery_engine"],
            ),
            ("reserve crossed", |o| o.free = Some(Ok(999)), &["disk"]),
            (
                "free space unknown",
                |o| o.free = Some(Err("EIO".into())),
                &["disk"],
            ),
        ];
        for (case, change, failing) in table {
            let mut seen = healthy();
            change(&mut seen);
            let answer = evaluate(&seen);
            assert_eq!(answer.failing(), failing, "{case}: {answer:?}");
            assert_eq!(answer.ready, failing.is_empty(), "{case}");
            assert_eq!(answer.checks.len(), 4, "{case}");
        }
    }

    struct Fixed(u64);
    impl FreeSpace for Fixed {
        fn free_bytes(&self, _: &Path) -> std::io::Result<u64> {
            Ok(self.0)
        }
    }

    #[test]
    fn health_probes_the_queue_directory_and_the_reserve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let heartbeat = Arc::new(Heartbeat::default());
        let health = Health::new(
            Arc::new(Storage::with_space(
                dir.path().to_path_buf(),
                Box::new(Fixed(9)),
            )),
            heartbeat.clone(),
            Arc::new(|| Some(10)),
        );
        let answer = health.readiness();
        assert_eq!(answer.failing(), ["listeners", "delivery_engine", "disk"]);
        assert!(!dir.path().join(PROBE_FILE).exists());

        heartbeat.beat();
        health.set_listeners_open(true);
        assert_eq!(health.readiness().failing(), ["disk"]);

        let missing = dir.path().join("gone");
        let health = Health::new(
            Arc::new(Storage::with_space(missing, Box::new(Fixed(11)))),
            heartbeat,
            Arc::new(|| Some(10)),
        );
        health.set_listeners_open(true);
        assert_eq!(health.readiness().failing(), ["queue"]);
    }

    /// Counts how often the file system is asked.
    struct Counting(Arc<std::sync::atomic::AtomicUsize>, u64);
    impl FreeSpace for Counting {
        fn free_bytes(&self, _: &Path) -> std::io::Result<u64> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(self.1)
        }
    }

    #[test]
    fn the_smtp_side_and_readiness_judge_the_reserve_from_one_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let storage = Arc::new(Storage::with_space(
            dir.path().to_path_buf(),
            Box::new(Counting(reads.clone(), 9)),
        ));
        let config = crate::config::Config::parse(
            "[limits]\nmin_free_disk = 10\n",
            "t.toml",
            Some(dir.path()),
        )
        .expect("config");
        let heartbeat = Arc::new(Heartbeat::default());
        heartbeat.beat();
        let health = Health::new(storage.clone(), heartbeat, Arc::new(|| Some(10)));
        health.set_listeners_open(true);
        assert_eq!(health.readiness().failing(), ["disk"]);
        assert_eq!(
            storage.disk(&config, 0),
            Err(crate::inbound::storage::NoRoom::Disk {
                free: 9,
                reserve: 10
            })
        );
        assert_eq!(health.disk(), (Some(9), 10));
        assert_eq!(
            reads.load(Ordering::Relaxed),
            1,
            "one reading served all three"
        );
    }

    #[test]
    fn the_real_file_system_reports_free_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = DiskSpace.free_bytes(dir.path()).expect("statvfs");
        assert!(free > 0);
        assert!(DiskSpace.free_bytes(&dir.path().join("missing")).is_err());
    }
}
