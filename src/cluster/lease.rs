//! Connection leases: one per connection open to a destination, counted
//! in Redis (`sealpost:conn:<destination>`, see [`super::scripts`]) while
//! limits are shared and on the node always; renewed while held, released
//! when dropped, expired by Redis when the node that held it crashed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::local::local_connections;
use super::{lock, scripts, Inner};

/// Keeps a fleet lease alive while its connection is: every third of
/// `lease_ttl`, while Redis answers. A lease taken during an outage is
/// written to Redis at the first renewal after it.
pub(super) async fn renew(inner: Arc<Inner>, destination: String, member: String) {
    let key = scripts::connections_key(&destination);
    let ttl = inner.config.lease_ttl.as_millis() as u64;
    let mut ticker =
        tokio::time::interval((inner.config.lease_ttl / 3).max(Duration::from_millis(100)));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !inner.shared.load(Ordering::SeqCst) {
            continue;
        }
        let script = &inner.scripts.renew;
        let (key, member) = (&key, &member);
        let _: Result<i64, _> = inner
            .run(|mut redis| async move {
                script
                    .key(key)
                    .arg(member)
                    .arg(ttl)
                    .invoke_async(&mut redis)
                    .await
            })
            .await;
    }
}

/// One connection to a destination, counted against its limit until
/// released (by [`ConnectionLease::release`] or by dropping it). A lease
/// whose node crashed expires in Redis after `lease_ttl`.
pub struct ConnectionLease {
    pub(super) inner: Arc<Inner>,
    pub(super) destination: String,
    /// `<node>/<n>`: the member of the destination's lease set.
    pub(super) member: String,
    /// Counted in Redis (else a `local:` limit).
    pub(super) fleet: bool,
    pub(super) renewer: Option<JoinHandle<()>>,
    pub(super) released: bool,
}

impl std::fmt::Debug for ConnectionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLease")
            .field("destination", &self.destination)
            .field("member", &self.member)
            .field("fleet", &self.fleet)
            .finish()
    }
}

impl ConnectionLease {
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// While limits are local (Redis out), whether this node holds more
    /// connections to the destination than its share: it held them when
    /// Redis failed. Such a connection is closed after its message
    /// instead of pooled, so the node comes down to its share.
    pub(crate) fn over_share(&self) -> bool {
        if !self.fleet || self.inner.shared.load(Ordering::SeqCst) {
            return false;
        }
        let limit = self.inner.config.connection_limit(&self.destination);
        let share = local_connections(limit.max, self.inner.alive.load(Ordering::SeqCst));
        lock(&self.inner.local).connections(&self.destination) > share
    }

    /// Releases the lease and waits until Redis has forgotten it (or the
    /// attempt failed: then it expires by itself).
    pub async fn release(mut self) {
        self.released = true;
        self.forget_locally();
        if self.fleet && self.inner.shared.load(Ordering::SeqCst) {
            release_in_redis(
                Arc::clone(&self.inner),
                self.destination.clone(),
                self.member.clone(),
            )
            .await;
        }
    }

    fn forget_locally(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
        lock(&self.inner.local).release_connection(&self.destination);
        if self.fleet {
            lock(&self.inner.held).remove(&self.member);
        }
    }
}

impl Drop for ConnectionLease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.forget_locally();
        if self.fleet && self.inner.shared.load(Ordering::SeqCst) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(release_in_redis(
                    Arc::clone(&self.inner),
                    std::mem::take(&mut self.destination),
                    std::mem::take(&mut self.member),
                ));
            }
        }
    }
}

async fn release_in_redis(inner: Arc<Inner>, destination: String, member: String) {
    let key = scripts::connections_key(&destination);
    let script = &inner.scripts.release;
    let _: Result<i64, _> = inner
        .run(
            |mut redis| async move { script.key(&key).arg(&member).invoke_async(&mut redis).await },
        )
        .await;
}
