//! The shared MTA-STS policy cache (RFC 8461 section 3.3 lets a sender
//! cache a policy until its `max_age`): a node that fetched a policy
//! publishes it under `sealpost:mta-sts:<domain>`, expiring with the
//! policy; another node whose TXT lookup gives the same `id` uses it
//! instead of fetching. Each node's sled cache stays the durable copy; the
//! shared entry only saves fetches, and is never trusted past
//! `expires_at` or for another `id`.

use futures_util::future::BoxFuture;
use redis::AsyncCommands;

use super::scripts::mta_sts_key;
use super::{Cluster, ClusterError};
use crate::mta_sts::store::{CachedPolicy, UnixSeconds};
use crate::mta_sts::SharedPolicies;

/// The MTA-STS cache's view of the fleet: a Redis failure reads as "not
/// shared" (the node fetches itself) and a publish is best effort.
impl SharedPolicies for Cluster {
    fn get<'a>(
        &'a self,
        domain: &'a str,
        id: &'a str,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Option<CachedPolicy>> {
        Box::pin(async move { self.shared_mta_sts(domain, id, now).await.ok().flatten() })
    }

    fn publish<'a>(&'a self, policy: &'a CachedPolicy) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.publish_mta_sts(policy).await {
                tracing::debug!(domain = %policy.domain, error = %e, "MTA-STS policy not shared with the fleet");
            }
        })
    }
}

impl Cluster {
    /// Publishes a policy this node fetched, until it expires.
    pub async fn publish_mta_sts(&self, policy: &CachedPolicy) -> Result<(), ClusterError> {
        if !self.is_shared() {
            return Err(ClusterError::Local);
        }
        let json = serde_json::to_string(policy).map_err(|e| ClusterError::Decode {
            key: mta_sts_key(&policy.domain),
            reason: e.to_string(),
        })?;
        let key = mta_sts_key(&policy.domain);
        let expires_ms = policy.expires_at.saturating_mul(1000);
        self.run(move |mut redis| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&json)
                .arg("PXAT")
                .arg(expires_ms)
                .query_async::<()>(&mut redis)
                .await
        })
        .await
    }

    /// The policy another node published for `domain` under TXT `id`, if
    /// it is still fresh at `now`. `Ok(None)`: fetch it yourself.
    pub async fn shared_mta_sts(
        &self,
        domain: &str,
        id: &str,
        now: UnixSeconds,
    ) -> Result<Option<CachedPolicy>, ClusterError> {
        if !self.is_shared() {
            return Err(ClusterError::Local);
        }
        let key = mta_sts_key(domain);
        let json: Option<String> = {
            let key = key.clone();
            self.run(move |mut redis| async move { redis.get(&key).await })
                .await?
        };
        let Some(json) = json else { return Ok(None) };
        let policy: CachedPolicy =
            serde_json::from_str(&json).map_err(|e| ClusterError::Decode {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        let usable = policy.id == id
            && policy.is_fresh(now)
            && policy
                .domain
                .eq_ignore_ascii_case(domain.trim_end_matches('.'));
        Ok(usable.then_some(policy))
    }
}
