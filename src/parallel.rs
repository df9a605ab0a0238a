//! A large configuration's work spread over the cores (issue 17):
//! reading 10,000 tenant files and deserializing them, or 100,000 domain
//! sections of one file, are lists of independent items. [`in_runs`] and
//! [`streamed`] cut such a list into one contiguous run per core, each run
//! on a thread of its own, and give back the results in the list's order,
//! so that errors come out as a single thread would produce them.
//!
//! A load streams the parse: the loading thread checks each file's (or
//! section's) domains and builds the policy model as the parse threads
//! hand the files over, so the checks overlap the parse instead of
//! following it (session 8: `serve` listening in 0.77 s instead of 1.05 s,
//! `docs/benchmarks.md`).
//!
//! The lasting values are made on the loading thread, never on a loader
//! thread: the allocator gives threads arenas of their own, and long-lived
//! values made among a loader thread's parse garbage pinned its pages.
//! Tried in session 7 with glibc's allocator and measured: with the policy
//! built on every core, RSS at rest went from 124 to 171 MB with
//! `tenants.d/`, and to +250 % after 10 whole reloads of one file. The
//! files' text, read on the loader threads before any parse, is the one
//! exception; with it, RSS at rest stayed at 124 MB with `tenants.d/`
//! (session 8). jemalloc (`crate::memory`, since session 9) also spreads
//! threads over arenas; the rule was kept, not measured again. A parse's
//! threads allocate in arenas kept for parses, one per run
//! (`crate::memory::in_parse_arena`): a reload's new threads would
//! otherwise grow the metadata of arenas no parse had used before.

/// `work` applied to `items` cut into one contiguous run per core, each at
/// least `min_run` items long (a shorter run is not worth a thread); the
/// results in the order of the runs. When there are several, each gets a
/// thread of its own: this thread's arena, where the lasting values are
/// made, gets none of the parse's garbage (the tenant files' text, read
/// this way, is the one exception the module's notes explain).
pub(crate) fn in_runs<T, R>(items: &[T], min_run: usize, work: impl Fn(&[T]) -> R + Sync) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let Some(runs) = runs(items, min_run) else {
        return vec![work(items)];
    };
    let work = &work;
    std::thread::scope(|scope| {
        let runs: Vec<_> = runs.map(|run| scope.spawn(move || work(run))).collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// `items` cut into one contiguous run per core, each at least `min_run`
/// items long; `None` when that leaves a single run (not worth a thread).
fn runs<T>(items: &[T], min_run: usize) -> Option<std::slice::Chunks<'_, T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_run = items.len().div_ceil(threads).max(min_run).max(1);
    (items.len() > per_run).then(|| items.chunks(per_run))
}

/// How many results [`streamed`] hands over at a time.
const STREAM_BATCH: usize = 32;

/// `work` applied to each of `items` on other threads, one contiguous run
/// of items per core (each at least `min_run` long), and `each` applied on
/// this thread to every result, in the items' order, as soon as it and the
/// results before it are ready: this thread checks what the loader
/// threads parse while they parse the next items (a load pipelined this
/// way keeps both cores busy during what was its serial part). With a
/// single run, everything happens on this thread.
pub(crate) fn streamed<T, R>(
    items: &[T],
    min_run: usize,
    work: impl Fn(&T) -> R + Sync,
    mut each: impl FnMut(R),
) where
    T: Sync,
    R: Send,
{
    let Some(runs) = runs(items, min_run) else {
        items.iter().map(&work).for_each(each);
        return;
    };
    let work = &work;
    std::thread::scope(|scope| {
        let runs: Vec<_> = runs
            .enumerate()
            .map(|(index, run)| {
                let (results, receiver) = std::sync::mpsc::channel::<Vec<R>>();
                let thread = scope.spawn(move || {
                    crate::memory::in_parse_arena(index, || {
                        // In batches: a message per item (100,000 domain
                        // sections) kept this thread waking the other.
                        for batch in run.chunks(STREAM_BATCH) {
                            let done = batch.iter().map(work).collect();
                            // The receiver is gone only if `each` panicked.
                            if results.send(done).is_err() {
                                break;
                            }
                        }
                    });
                });
                (thread, receiver)
            })
            .collect();
        for (thread, receiver) in runs {
            receiver.iter().flatten().for_each(&mut each);
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_every_item_once_in_order() {
        let items: Vec<usize> = (0..1_000).collect();
        for min_run in [1, 7, 64, 999, 1_000, 5_000] {
            let runs = in_runs(&items, min_run, |run| run.to_vec());
            assert!(runs.iter().all(|r| !r.is_empty()), "min_run {min_run}");
            let joined: Vec<usize> = runs.into_iter().flatten().collect();
            assert_eq!(joined, items, "min_run {min_run}");
        }
        assert_eq!(in_runs(&[] as &[u8], 4, <[u8]>::len), vec![0]);
    }

    #[test]
    fn streamed_results_reach_this_thread_in_order() {
        let items: Vec<usize> = (0..1_000).collect();
        let here = std::thread::current().id();
        for min_run in [1, 7, 64, 999, 1_000, 5_000] {
            let mut seen = Vec::new();
            let mut worker_threads = std::collections::HashSet::new();
            streamed(
                &items,
                min_run,
                |&item| (item * 2, std::thread::current().id()),
                |(doubled, worker)| {
                    assert_eq!(std::thread::current().id(), here);
                    worker_threads.insert(worker);
                    seen.push(doubled / 2);
                },
            );
            assert_eq!(seen, items, "min_run {min_run}");
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if min_run * 2 <= items.len() && cores > 1 {
                assert!(!worker_threads.contains(&here), "min_run {min_run}");
            }
        }
        let mut none = 0;
        streamed(&[] as &[u8], 4, |_| 1, |_| none += 1);
        assert_eq!(none, 0);
    }

    /// A parse's threads allocate in the arenas kept for parses, run by
    /// run (`crate::memory::in_parse_arena`), not in arenas of their own.
    #[test]
    fn streamed_work_allocates_in_the_arenas_kept_for_parses() {
        let items: Vec<usize> = (0..1_000).collect();
        let mut seen = Vec::new();
        streamed(
            &items,
            1,
            |&item| (item, crate::memory::thread_arena()),
            |found| seen.push(found),
        );
        // Each item in the arena kept for its run; all on this thread
        // (in its own arena) when there is a single run.
        let expected: Vec<_> = match runs(&items, 1) {
            Some(runs) => (runs.enumerate())
                .flat_map(|(index, run)| {
                    let kept = crate::memory::in_parse_arena(index, crate::memory::thread_arena);
                    run.iter().map(move |&item| (item, kept))
                })
                .collect(),
            None => (items.iter())
                .map(|&item| (item, crate::memory::thread_arena()))
                .collect(),
        };
        assert_eq!(seen, expected);
    }
}
