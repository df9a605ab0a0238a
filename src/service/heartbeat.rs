//! The delivery engine's heartbeat: the scheduler calls [`Heartbeat::beat`]
//! on every tick of its loop (every 250 ms). Readiness reads how long ago
//! the last beat was; when systemd set a watchdog (`WatchdogSec=` gives
//! `WATCHDOG_USEC`), a beat also sends `WATCHDOG=1`, at most twice per
//! watchdog interval, so an engine whose loop stops ticking stops feeding
//! the watchdog and systemd restarts the service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::notify;

/// When the engine's loop last ticked; shared between the engine, the
/// health checks and the watchdog.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds since `origin` of the last beat, plus one (0: never).
    last: AtomicU64,
    /// The watchdog interval systemd asks for, if any.
    watchdog: Option<Duration>,
    /// Milliseconds since `origin` of the last `WATCHDOG=1`, plus one.
    fed: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::with_watchdog(None)
    }
}

impl Heartbeat {
    /// A heartbeat that feeds the watchdog systemd set for this process
    /// (`WATCHDOG_USEC`, and `WATCHDOG_PID` when given), if any.
    pub(crate) fn from_environment() -> Heartbeat {
        Heartbeat::with_watchdog(sd_notify::watchdog_enabled())
    }

    /// A heartbeat feeding a watchdog of `interval` (none: `None`).
    pub(crate) fn with_watchdog(watchdog: Option<Duration>) -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            watchdog: watchdog.filter(|d| !d.is_zero()),
            fed: AtomicU64::new(0),
        }
    }

    fn now_mark(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The engine's loop ticked: record it and feed the watchdog when half
    /// its interval passed since the last feed.
    pub(crate) fn beat(&self) {
        let now = self.now_mark();
        self.last.store(now, Ordering::Relaxed);
        let Some(interval) = self.watchdog else {
            return;
        };
        let half = u64::try_from(interval.as_millis() / 2).unwrap_or(u64::MAX);
        let fed = self.fed.load(Ordering::Relaxed);
        if (fed == 0 || now.saturating_sub(fed) >= half)
            && self
                .fed
                .compare_exchange(fed, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            notify::watchdog();
        }
    }

    /// How long ago the last beat was (`None`: the loop never ticked).
    pub fn age(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            last => Some(Duration::from_millis(self.now_mark().saturating_sub(last))),
        }
    }

    /// The watchdog interval fed, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_reports_its_age_once_beaten() {
        let heartbeat = Heartbeat::default();
        assert_eq!(heartbeat.age(), None);
        heartbeat.beat();
        let age = heartbeat.age().expect("beaten");
        assert!(age < Duration::from_secs(5), "{age:?}");
        assert_eq!(heartbeat.watchdog(), None);
        assert_eq!(
            Heartbeat::with_watchdog(Some(Duration::ZERO)).watchdog(),
            None
        );
    }
}
