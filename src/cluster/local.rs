//! The arithmetic of the limits, without Redis: GCRA (the generic cell
//! rate algorithm, ITU-T I.371) as a pure function, the fallback formula,
//! and the per-node state used for `local:` limits and during an outage.
//! The Lua script in [`super::scripts`] runs the same GCRA inside Redis.

use std::collections::HashMap;
use std::time::Duration;

/// A rate as GCRA parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// One message per `interval` (1 / rate).
    pub interval: u64,
    /// How far ahead of schedule a sender may be: `(burst - 1) * interval`.
    pub tolerance: u64,
}

impl Gcra {
    /// `per_second` messages per second, with a burst of a tenth of a
    /// second's worth (at least one message).
    pub fn per_second(per_second: f64) -> Gcra {
        let interval = (1_000_000.0 / per_second).round().max(1.0) as u64;
        let burst = (per_second / 10.0).ceil().max(1.0) as u64;
        Gcra {
            interval,
            tolerance: (burst - 1) * interval,
        }
    }

    /// One message at `now` given the stored theoretical arrival time
    /// `tat`: `Ok(new tat)` admits it, `Err(wait)` says how long until it
    /// would be admitted.
    pub fn check(self, tat: Option<u64>, now: u64) -> Result<u64, u64> {
        let tat = tat.unwrap_or(now).max(now);
        if tat - now <= self.tolerance {
            Ok(tat + self.interval)
        } else {
            Err(tat - now - self.tolerance)
        }
    }
}

/// The fallback formula: while Redis is out, a fleet-wide connection
/// limit becomes `max(1, floor(limit / alive))` on each node, where
/// `alive` is the number of nodes last seen alive (this one included).
pub(crate) fn local_connections(limit: u32, alive: usize) -> u32 {
    let alive = u32::try_from(alive.max(1)).unwrap_or(u32::MAX);
    (limit / alive).max(1)
}

/// The fallback formula for rates: `rate / alive` on each node.
pub(crate) fn local_rate(per_second: f64, alive: usize) -> f64 {
    per_second / alive.max(1) as f64
}

/// A node's own counters: connections it holds per destination, and the
/// GCRA state of the limits it enforces alone.
#[derive(Debug, Default)]
pub(crate) struct LocalState {
    connections: HashMap<String, u32>,
    tats: HashMap<String, u64>,
}

impl LocalState {
    /// Counts one more connection to `destination` if fewer than `max`
    /// are held.
    pub(crate) fn try_connect(&mut self, destination: &str, max: u32) -> bool {
        let held = self.connections.entry(destination.to_owned()).or_insert(0);
        if *held < max {
            *held += 1;
            true
        } else {
            false
        }
    }

    /// Counts one more connection regardless of any limit (Redis granted it).
    pub(crate) fn add_connection(&mut self, destination: &str) {
        *self.connections.entry(destination.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn release_connection(&mut self, destination: &str) {
        if let Some(held) = self.connections.get_mut(destination) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.connections.remove(destination);
            }
        }
    }

    /// Connections this node holds to `destination`.
    pub fn connections(&self, destination: &str) -> u32 {
        self.connections.get(destination).copied().unwrap_or(0)
    }

    /// Every limit in `limits` admits one message at `now` (microseconds),
    /// or none is charged and the longest wait is returned.
    pub fn admit(&mut self, limits: &[(String, Gcra)], now: u64) -> Result<(), Duration> {
        let updates = self.updates(limits, now)?;
        for (key, tat) in updates {
            self.tats.insert(key.clone(), tat);
        }
        // Entries whose time has passed would admit as if absent: forget them.
        if self.tats.len() > 10_000 {
            self.tats.retain(|_, tat| *tat > now);
        }
        Ok(())
    }

    /// Whether [`LocalState::admit`] would admit, without charging.
    pub fn check(&self, limits: &[(String, Gcra)], now: u64) -> Result<(), Duration> {
        self.updates(limits, now).map(|_| ())
    }

    fn updates<'a>(
        &self,
        limits: &'a [(String, Gcra)],
        now: u64,
    ) -> Result<Vec<(&'a String, u64)>, Duration> {
        let mut updates = Vec::with_capacity(limits.len());
        let mut wait = 0;
        for (key, gcra) in limits {
            match gcra.check(self.tats.get(key).copied(), now) {
                Ok(tat) => updates.push((key, tat)),
                Err(w) => wait = wait.max(w),
            }
        }
        if wait > 0 {
            return Err(Duration::from_micros(wait));
        }
        Ok(updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_the_rate_and_the_burst() {
        // 100/s: one per 10 ms, a burst of 10.
        let gcra = Gcra::per_second(100.0);
        assert_eq!(gcra.interval, 10_000);
        assert_eq!(gcra.tolerance, 90_000);
        let mut tat = None;
        let mut admitted = 0;
        // One second of attempts every millisecond.
        for ms in 0..1000u64 {
            if let Ok(t) = gcra.check(tat, ms * 1000) {
                tat = Some(t);
                admitted += 1;
            }
        }
        // 100 over the second plus the burst (10), minus the one slot still ahead.
        assert!((105..=110).contains(&admitted), "{admitted}");
    }

    #[test]
    fn gcra_says_how_long_to_wait() {
        let gcra = Gcra::per_second(1.0);
        let tat = gcra.check(None, 0).expect("first");
        assert_eq!(gcra.check(Some(tat), 250_000), Err(750_000));
        assert_eq!(gcra.check(Some(tat), 1_000_000), Ok(2_000_000));
    }

    #[test]
    fn the_fallback_divides_by_the_nodes_alive() {
        let table = [(16, 4, 4), (16, 3, 5), (4, 8, 1), (4, 0, 4), (1, 1, 1)];
        for (limit, alive, local) in table {
            assert_eq!(local_connections(limit, alive), local, "{limit}/{alive}");
        }
        assert_eq!(local_rate(200.0, 4), 50.0);
        assert_eq!(local_rate(200.0, 0), 200.0);
    }

    #[test]
    fn admission_charges_every_limit_or_none() {
        let mut state = LocalState::default();
        let slow = ("slow".to_owned(), Gcra::per_second(1.0));
        let fast = ("fast".to_owned(), Gcra::per_second(1000.0));
        let both = [fast.clone(), slow.clone()];
        assert_eq!(state.admit(&both, 0), Ok(()));
        assert!(state.admit(&both, 10).is_err());
        // `fast` was not charged by the refusal: the rest of its burst of
        // 100 (one was taken with `slow`) still fits, and no more.
        let fast_only = [fast];
        for i in 0..99 {
            assert_eq!(state.admit(&fast_only, 20), Ok(()), "{i}");
        }
        assert!(state.admit(&fast_only, 20).is_err());
    }

    #[test]
    fn connections_are_counted_per_destination() {
        let mut state = LocalState::default();
        assert!(state.try_connect("a", 2));
        assert!(state.try_connect("a", 2));
        assert!(!state.try_connect("a", 2));
        assert!(state.try_connect("b", 2));
        state.release_connection("a");
        assert_eq!(state.connections("a"), 1);
        assert!(state.try_connect("a", 2));
    }
}
