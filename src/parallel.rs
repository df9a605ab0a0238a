//! A large configuration's work spread over the cores (issue 17): reading
//! 10,000 tenant files, deserializing them, and checking 100,000 domains
//! are each a list of independent items. [`in_runs`] cuts such a list into
//! one contiguous run per core and gives back the runs' results in the
//! list's order, so that errors and partitions come out as a single
//! thread would produce them.

/// Fewer policy partitions (tenant files) than this in a run are not
/// worth a thread.
pub(crate) const PARTITIONS_PER_RUN: usize = 256;

/// `work` applied to `items` cut into one contiguous run per core, each at
/// least `min_run` items long (a shorter run is not worth a thread); the
/// results in the order of the runs. The last run is done on this thread.
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
    let mut runs = items.chunks(per_run);
    let last = runs.next_back().unwrap_or_default();
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = runs.map(|run| scope.spawn(move || work(run))).collect();
        let last = work(last);
        let mut results: Vec<R> = others
            .into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        results.push(last);
        results
    })
}

/// [`in_runs`] for work that takes its items: `items` cut into one run
/// per core, each at least `min_run` long, moved to `work`; the results in
/// the order of the runs.
pub(crate) fn in_owned_runs<T, R>(
    mut items: Vec<T>,
    min_run: usize,
    work: impl Fn(Vec<T>) -> R + Sync,
) -> Vec<R>
where
    T: Send,
    R: Send,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_run = items.len().div_ceil(threads).max(min_run).max(1);
    if items.len() <= per_run {
        return vec![work(items)];
    }
    // The runs `chunks(per_run)` would give, cut off from the back.
    let mut runs = Vec::with_capacity(threads);
    while !items.is_empty() {
        let last_start = (items.len() - 1) / per_run * per_run;
        runs.push(items.split_off(last_start));
    }
    runs.reverse();
    let last = runs.pop().unwrap_or_default();
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = runs
            .into_iter()
            .map(|run| scope.spawn(move || work(run)))
            .collect();
        let last = work(last);
        let mut results: Vec<R> = others
            .into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        results.push(last);
        results
    })
}

/// Drops `value` on a thread of its own: freeing a large parse (the raw
/// structs of 100,000 domains) takes a tenth of a second that the caller
/// need not wait for. What it freed then goes back to the system
/// ([`crate::memory`]): a release asked for before the drop ended would
/// miss it. Dropped here if no thread can be started.
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T) {
    // Should no thread start, the closure, and `value` with it, is
    // dropped by `spawn` itself.
    let spawned = std::thread::Builder::new()
        .name("config-drop".into())
        .spawn(move || {
            drop(value);
            crate::memory::release_free_memory_soon();
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no thread to drop a parse on; dropped here");
    }
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
    fn owned_runs_are_the_runs_of_in_runs() {
        let items: Vec<usize> = (0..1_000).collect();
        for min_run in [1, 7, 64, 999, 1_000, 5_000] {
            let borrowed = in_runs(&items, min_run, <[usize]>::to_vec);
            let owned = in_owned_runs(items.clone(), min_run, |run| run);
            assert_eq!(owned, borrowed, "min_run {min_run}");
        }
        assert_eq!(in_owned_runs(Vec::<u8>::new(), 4, |run| run.len()), vec![0]);
    }

    #[test]
    fn a_dropped_value_is_dropped() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        struct Signal(std::sync::mpsc::Sender<()>);
        impl Drop for Signal {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        drop_elsewhere(Signal(tx));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropped");
    }
}
