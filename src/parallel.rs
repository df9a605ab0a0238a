//! A large configuration's work spread over the cores (issue 17):
//! deserializing 10,000 tenant files or 100,000 domain sections is a list
//! of independent items. [`in_runs`] cuts such a list into one contiguous
//! run per core and gives back the runs' results in the list's order, so
//! that errors come out as a single thread would produce them.
//!
//! Only work whose results are short-lived belongs here (the raw parse,
//! dropped once checked): glibc gives each thread an arena of its own, and
//! long-lived values made on a loader thread (the policy model, the files'
//! text) pinned the arenas' pages among the parse's freed memory. Measured
//! with the policy built on every core: RSS at rest 124 -> 171 MB with
//! `tenants.d/`, and +250 % after 10 whole reloads of one file
//! (docs/benchmarks.md, session 7).

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
