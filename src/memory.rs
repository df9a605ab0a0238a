//! Giving the memory a configuration load freed back to the system.
//!
//! Loading 100,000 managed domains parses and validates about 40 MB of
//! TOML: several hundred MB are allocated and freed again within a
//! second. glibc's allocator keeps such freed memory in its arenas (the
//! loader threads' arenas included) instead of returning it, so the
//! resident size after a load stayed at twice what the configuration
//! holds, and grew with each reload (issue 17; the figures are in
//! `docs/benchmarks.md`). [`release_free_memory_soon`] asks the allocator
//! to return its whole free pages, on a thread of its own, after a load,
//! a reload and a change through the admin API.
//!
//! This is the one module that allows `unsafe` (the crate denies it): a
//! call into the C library, on glibc only; elsewhere it does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set while a release runs or is about to: requests meanwhile share it.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Returns the allocator's free memory to the system now, on this thread;
/// how long that took. Takes the allocator's locks for a few milliseconds
/// (longer after a load from scratch).
pub fn release_free_memory() -> std::time::Duration {
    let started = Instant::now();
    trim();
    started.elapsed()
}

/// How long a release waits, so that a burst of changes (a script of
/// admin edits) shares one: the trim holds the allocator's locks.
const GATHER: std::time::Duration = std::time::Duration::from_millis(200);

/// [`release_free_memory`] on a thread of its own, so that the caller (a
/// reload, an admin request) does not wait for it; requests made while one
/// is pending (for [`GATHER`]) share it.
pub fn release_free_memory_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("memory-release".into())
        .spawn(|| {
            std::thread::sleep(GATHER);
            // Cleared before the trim: a request from now on may free
            // more memory, and gets a release of its own.
            PENDING.store(false, Ordering::Release);
            let took = release_free_memory();
            tracing::debug!(took_ms = took.as_secs_f64() * 1e3, "free memory released");
        });
    if spawned.is_err() {
        PENDING.store(false, Ordering::Release);
    }
}

/// Drops `value` on a thread of its own, then releases what that freed
/// ([`release_free_memory_soon`]): the caller does not wait for the frees
/// of a large value it is done with (a load's raw parse of 100,000
/// domains: about 120 ms). Dropped here if no thread can be started.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("memory-drop".into())
        .spawn(move || {
            drop(value);
            release_free_memory_soon();
        });
    // A thread that could not start is dropped with `value` in it, here.
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no thread to drop on: dropped in place");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim(3) takes no pointers and only returns the
    // allocator's free pages to the system; it is thread-safe (it locks
    // each arena in turn).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_dropped_in_background_is_dropped() {
        struct Signal(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Signal {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let (sender, dropped) = std::sync::mpsc::channel();
        drop_in_background(Signal(sender));
        let on = dropped
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropped");
        assert_ne!(on, std::thread::current().id());
    }

    #[test]
    fn releasing_is_safe_to_call_repeatedly_and_concurrently() {
        let freed: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(freed);
        release_free_memory_soon();
        release_free_memory_soon();
        let _ = release_free_memory();
    }
}
