//! A TTL cache with single-flight: while a lookup for a key is under way,
//! other callers asking for the same key wait for that one result instead
//! of sending their own query. Generic and free of DNS types so it can be
//! tested on its own.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};

struct Entry<V> {
    value: Arc<V>,
    expires: Instant,
}

/// A fetch in progress, shared by every caller waiting for it.
type Flight<V> = Shared<BoxFuture<'static, (Arc<V>, Duration)>>;

struct State<K, V> {
    ready: HashMap<K, Entry<V>>,
    inflight: HashMap<K, Flight<V>>,
}

/// Values by key until their TTL runs out, at most `capacity` of them.
pub(crate) struct SingleFlightCache<K, V> {
    capacity: usize,
    state: Mutex<State<K, V>>,
}

impl<K, V> SingleFlightCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub fn new(capacity: usize) -> Self {
        SingleFlightCache {
            capacity,
            state: Mutex::new(State {
                ready: HashMap::new(),
                inflight: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K, V>> {
        // A panic while holding the lock leaves only a cache behind: keep
        // using it rather than propagating the poison.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The cached value for `key`, or the value `fetch` produces (with the
    /// time it may be cached). Concurrent callers with the same key share
    /// one `fetch`. `fetch` is only called when no value is cached and
    /// none is being fetched. The fetch runs inside the callers' futures:
    /// if every caller is cancelled, the next caller for that key resumes
    /// the same fetch.
    pub(crate) async fn get_or_fetch<F, Fut>(&self, key: K, fetch: F) -> Arc<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = (V, Duration)> + Send + 'static,
    {
        let shared = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(entry) = state.ready.get(&key) {
                if entry.expires > now {
                    return entry.value.clone();
                }
                state.ready.remove(&key);
            }
            match state.inflight.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let fut = fetch();
                    let shared = async move {
                        let (value, ttl) = fut.await;
                        (Arc::new(value), ttl)
                    }
                    .boxed()
                    .shared();
                    state.inflight.insert(key.clone(), shared.clone());
                    shared
                }
            }
        };
        let (value, ttl) = shared.clone().await;
        let mut state = self.lock();
        if state
            .inflight
            .get(&key)
            .is_some_and(|current| current.ptr_eq(&shared))
        {
            state.inflight.remove(&key);
            if !ttl.is_zero() && self.capacity > 0 {
                let now = Instant::now();
                if state.ready.len() >= self.capacity {
                    state.ready.retain(|_, entry| entry.expires > now);
                }
                if state.ready.len() >= self.capacity {
                    // Still full of live entries: drop an arbitrary one.
                    if let Some(victim) = state.ready.keys().next().cloned() {
                        state.ready.remove(&victim);
                    }
                }
                state.ready.insert(
                    key,
                    Entry {
                        value: value.clone(),
                        expires: now + ttl,
                    },
                );
            }
        }
        value
    }

    /// Number of live cached values.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .ready
            .values()
            .filter(|entry| entry.expires > now)
            .count()
    }

    /// Forget everything cached (in-flight fetches continue).
    pub fn clear(&self) {
        self.lock().ready.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(SingleFlightCache::<&'static str, u32>::new(16));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, wait) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            let mut wait = wait.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", move || {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = wait.wait_for(|go| *go).await;
                            (7, Duration::from_secs(60))
                        }
                    })
                    .await
            }));
        }
        // Let every task reach the cache before the fetch completes.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        release.send(true).expect("receivers alive");
        for task in tasks {
            assert_eq!(*task.await.expect("task"), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn zero_ttl_is_not_cached_and_capacity_is_bounded() {
        let cache = SingleFlightCache::<u32, u32>::new(2);
        let v = cache
            .get_or_fetch(1, || async { (1, Duration::ZERO) })
            .await;
        assert_eq!(*v, 1);
        assert_eq!(cache.len(), 0);
        for key in 0..5 {
            cache
                .get_or_fetch(key, move || async move { (key, Duration::from_secs(60)) })
                .await;
        }
        assert!(cache.len() <= 2);
        // A cached value is returned without calling fetch.
        let hit = cache
            .get_or_fetch(4, || async { panic!("must come from the cache") })
            .await;
        assert_eq!(*hit, 4);
    }
}
