//! The process's allocator, and giving the memory a configuration load
//! freed back to the system.
//!
//! Loading 100,000 managed domains parses and validates about 40 MB of
//! TOML: several hundred MB are allocated and freed again within a
//! second. glibc's allocator kept such freed memory in its arenas: with
//! the configuration in one file, each whole reload left about 16 MB more
//! resident, with what it held unchanged, and neither `malloc_trim` nor
//! its tunables (arena count, mmap and trim thresholds) gave it back
//! (issue 17; the figures are in `docs/benchmarks.md`). So every binary
//! linked with this crate allocates with jemalloc ([`ALLOCATOR`]), set up
//! to return unused pages by itself ([`JEMALLOC_CONF`]); a whole load
//! builds its model in an arena of its own ([`in_load_arena`]), its parse
//! threads allocate in arenas kept for parses ([`in_parse_arena`]), and
//! [`release_free_memory_soon`] returns the free pages at once after a
//! load, a reload and a change through the admin API.
//!
//! This is the one module that allows `unsafe` (the crate denies it):
//! jemalloc's settings symbol and its `mallctl` calls.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

/// Set while a release runs or is about to: requests meanwhile share it.
static PENDING: AtomicBool = AtomicBool::new(false);

/// The allocator of every binary linked with this crate.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation, before `main` (the
/// environment's `_RJEM_MALLOC_CONF`, read after, can change them):
/// - `background_thread:true`: jemalloc's own threads return unused pages,
///   even while the process is idle (otherwise only an allocation does);
/// - `dirty_decay_ms:1000`: a freed page unused for about a second goes
///   back to the system (jemalloc's default is 10 s);
/// - `muzzy_decay_ms:0`: and is given back for good, not kept as
///   reclaimable-but-counted.
///
/// The symbol is the C `const char *malloc_conf` of jemalloc as
/// `tikv-jemalloc-sys` builds it (its names prefixed with `_rjem_`): a
/// reference to the first byte has that pointer's layout.
#[allow(unsafe_code)]
#[used]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

/// jemalloc's name for all its arenas at once (`MALLCTL_ARENAS_ALL`).
const ALL_ARENAS_PURGE: &CStr = c"arena.4096.purge";

/// Returns the allocator's free memory to the system now, on this thread;
/// how long that took. Takes each arena's lock in turn, for a few
/// milliseconds in all (longer after a load from scratch).
pub fn release_free_memory() -> std::time::Duration {
    let started = Instant::now();
    if !purge() {
        tracing::debug!("the allocator refused to purge its free pages");
    }
    started.elapsed()
}

/// Asks jemalloc to return every arena's unused pages; whether it did.
fn purge() -> bool {
    run_control(ALL_ARENAS_PURGE)
}

/// How long a release waits, so that a burst of changes (a script of
/// admin edits) shares one: the purge takes the allocator's locks.
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
            // Cleared before the purge: a request from now on may free
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

/// Runs `load` (a whole configuration load) with this thread's
/// allocations in one of two arenas kept for loads, taken in turn.
///
/// The model a load builds then shares no page with the server's other
/// long-lived values, nor with the model in force, which a reload builds
/// beside: once that one is freed, its arena holds nothing, and all of it
/// goes back. Measured with jemalloc's statistics (100,000 domains in
/// one file): in the reloading thread's own arena, each model filled the
/// holes the one before had left, and the pages active around the same
/// bytes grew by 7 MB in the first reloads; with one arena for every
/// load by 13 MB; with two in turn they stayed as at the start. Runs
/// `load` as it is if jemalloc refuses an arena.
pub fn in_load_arena<T>(load: impl FnOnce() -> T) -> T {
    static LOAD_ARENAS: OnceLock<Option<[u32; 2]>> = OnceLock::new();
    static LOADS: AtomicUsize = AtomicUsize::new(0);
    let arenas = *LOAD_ARENAS.get_or_init(|| Some([new_arena()?, new_arena()?]));
    let turn = LOADS.fetch_add(1, Ordering::AcqRel) % 2;
    in_arena(arenas.map(|arenas| arenas[turn]), load)
}

/// Runs `work`, the run numbered `run` of a load's parse on a thread of
/// its own ([`crate::parallel::streamed`]), with that thread's
/// allocations in an arena kept for that run of every parse.
///
/// A parse allocates and frees several hundred MB, and jemalloc keeps
/// the records of the pages an arena ever held (its metadata) for good.
/// A parse thread lives for one load and got whichever arena it was
/// given: a reload's parse threads landed in arenas no parse had used
/// before, whose metadata grew by 1.3 MB each, once, at the first reload
/// (measured with jemalloc's statistics, 100,000 domains in one file:
/// RSS +6.8 % after 10 reloads, +2.3 % with these arenas). In arenas of
/// their own, every parse reuses the records of the first. Runs `work`
/// as it is if jemalloc refuses an arena.
pub fn in_parse_arena<T>(run: usize, work: impl FnOnce() -> T) -> T {
    static PARSE_ARENAS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    let arena = {
        let mut arenas = PARSE_ARENAS.lock().unwrap_or_else(PoisonError::into_inner);
        while arenas.len() <= run {
            match new_arena() {
                Some(arena) => arenas.push(arena),
                None => break,
            }
        }
        arenas.get(run).copied()
    };
    in_arena(arena, work)
}

/// A new arena of jemalloc's, used only by threads moved to it; its
/// number.
fn new_arena() -> Option<u32> {
    read_control(c"arenas.create")
}

/// Runs `work` with this thread's allocations in `arena`; as it is with
/// none, or if jemalloc refuses the switch.
fn in_arena<T>(arena: Option<u32>, work: impl FnOnce() -> T) -> T {
    let _switched = arena.and_then(ArenaSwitch::to);
    work()
}

/// This thread allocating in another arena until dropped (a panic
/// included).
struct ArenaSwitch {
    previous: u32,
}

impl ArenaSwitch {
    fn to(arena: u32) -> Option<ArenaSwitch> {
        let previous = read_control::<u32>(c"thread.arena")?;
        set_thread_arena(arena).then_some(ArenaSwitch { previous })
    }
}

impl Drop for ArenaSwitch {
    fn drop(&mut self) {
        set_thread_arena(self.previous);
    }
}

/// Moves this thread's allocations to `arena`. Its cache of freed blocks
/// is emptied first: kept, it would hand out blocks of the arena left.
fn set_thread_arena(arena: u32) -> bool {
    run_control(c"thread.tcache.flush");
    write_control(c"thread.arena", Some(arena))
}

/// The arena this thread allocates in (for tests).
#[cfg(test)]
pub(crate) fn thread_arena() -> Option<u32> {
    read_control(c"thread.arena")
}

/// One of jemalloc's readable controls, of type `T` (`bool`, `ssize_t`,
/// `unsigned`).
fn read_control<T: Copy + Default>(name: &CStr) -> Option<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>();
    // SAFETY: `value` is writable for `len` bytes, the size jemalloc
    // checks against the control's type (it fails rather than writing
    // past it), and the name is NUL-terminated.
    #[allow(unsafe_code)]
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (status == 0 && len == std::mem::size_of::<T>()).then_some(value)
}

/// Sets one of jemalloc's writable controls to `value`, of type `T`
/// (`unsigned`); with `None`, runs one that takes and gives nothing.
/// Whether jemalloc did.
fn write_control<T: Copy>(name: &CStr, mut value: Option<T>) -> bool {
    let (new, new_len) = match value.as_mut() {
        Some(value) => (std::ptr::from_mut(value).cast(), std::mem::size_of::<T>()),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: `new` is null with length 0, or readable for the size of
    // `T`, which jemalloc checks against the control's type; nothing is
    // read back (null); the name is NUL-terminated.
    #[allow(unsafe_code)]
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            new,
            new_len,
        )
    };
    status == 0
}

/// Runs one of jemalloc's controls that take and give nothing (a
/// purge, a cache flush); whether it did.
fn run_control(name: &CStr) -> bool {
    write_control::<u8>(name, None)
}

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

    /// The settings that return freed pages by themselves are in force
    /// (they are read from an exported symbol that nothing calls).
    #[test]
    fn jemalloc_returns_unused_pages_by_itself() {
        let settings = || -> Option<(bool, isize)> {
            Some((
                read_control(c"background_thread")?,
                read_control(c"opt.dirty_decay_ms")?,
            ))
        };
        assert_eq!(settings(), Some((true, 1000)));
    }

    /// Each run of a parse allocates in the arena kept for its number,
    /// whichever thread runs it, and the thread is back in its own
    /// arena afterwards.
    #[test]
    fn each_run_of_a_parse_allocates_in_an_arena_kept_for_that_run() {
        let on_a_new_thread = |run: usize| {
            std::thread::spawn(move || {
                let own = thread_arena();
                let inside = in_parse_arena(run, || (thread_arena(), vec![0u8; 100]).0);
                assert_eq!(thread_arena(), own, "back in its own arena");
                (own, inside)
            })
            .join()
            .expect("the thread ran")
        };
        let (own, first) = on_a_new_thread(0);
        let (_, again) = on_a_new_thread(0);
        let (_, other_run) = on_a_new_thread(1);
        assert!(first.is_some(), "jemalloc's thread.arena");
        assert_eq!(first, again, "the same run, the same arena");
        assert_ne!(first, own);
        assert_ne!(first, other_run);
        let loads: Vec<_> = (0..2).map(|_| in_load_arena(thread_arena)).collect();
        assert!(!loads.contains(&first) && !loads.contains(&other_run));
    }

    /// Loads allocate in the two arenas kept for them, in turn, and the
    /// thread is back in its own arena after each, a panic included.
    #[test]
    fn loads_allocate_in_two_arenas_of_their_own_in_turn() {
        let own = thread_arena().expect("jemalloc's thread.arena");
        // Other tests load meanwhile and take turns too: loads are made
        // until both arenas were seen (at most a few).
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            used.insert(in_load_arena(|| (thread_arena(), vec![0u8; 100]).0));
            assert_eq!(thread_arena(), Some(own));
            if used.len() >= 2 {
                break;
            }
        }
        assert_eq!(used.len(), 2, "{used:?}");
        assert!(
            used.iter().all(|a| a.is_some() && *a != Some(own)),
            "{used:?}"
        );
        let again = in_load_arena(thread_arena);
        assert!(used.contains(&again), "a third arena: {again:?}");
        let panicked = std::panic::catch_unwind(|| in_load_arena(|| panic!("a load that fails")));
        assert!(panicked.is_err());
        assert_eq!(thread_arena(), Some(own));
    }

    #[test]
    fn releasing_is_safe_to_call_repeatedly_and_concurrently() {
        let freed: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(freed);
        release_free_memory_soon();
        release_free_memory_soon();
        let _ = release_free_memory();
        assert!(purge(), "jemalloc knows the purge of all arenas");
    }
}
