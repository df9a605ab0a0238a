//! A large configuration's work spread over the cores (issue 17):
//! deserializing 10,000 tenant files or 100,000 domain sections is a list
//! of independent items. [`in_runs`] cuts such a list into one contiguous
//! run per core and gives back the runs' results in the list's order, so
//! that errors come out as a single thread would produce them.
//!
//! Only work whose results are short-lived belongs here (the raw parse,
//! dropped once checked), and the loading thread takes no run itself:
//! glibc gives each thread an arena of its own, and long-lived values made
//! on a loader thread (the policy model, the files' text), or parse
//! garbage on the loading thread, pinned pages among freed memory. Tried
//! in session 7 and measured: with the policy built on every core, RSS at
//! rest went from 124 to 171 MB with `tenants.d/`, and to +250 % after 10
//! whole reloads of one file (docs/benchmarks.md).

/// `work` applied to `items` cut into one contiguous run per core, each at
/// least `min_run` items long (a shorter run is not worth a thread); the
/// results in the order of the runs. When there are several, each gets a
/// thread of its own: this thread's arena, where the lasting values are
/// made, gets none of the parse's garbage.
pub(crate) fn in_runs<T, R>(items: &[T], min_run: usize, work: impl Fn(&[T]) -> R + Sync) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_run = items.len().div_ceil(threads).max(min_run).max(1);
    if items.len() <= per_run {
        return vec![work(items)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let runs: Vec<_> = items
            .chunks(per_run)
            .map(|run| scope.spawn(move || work(run)))
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
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
}
