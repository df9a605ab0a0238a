//! The fleet's copy of fetched policies, as the cache sees it: a node of a
//! fleet (`[cluster]`) asks it before fetching a policy and publishes what
//! it fetched, so that one fetch serves every node (RFC 8461 section 3.3
//! lets a sender cache a policy until its `max_age`). The node's own sled
//! store stays the durable copy; the shared one only saves fetches.
//!
//! The trait keeps the cache free of Redis: `crate::cluster` implements it.

use futures_util::future::BoxFuture;

use super::store::{CachedPolicy, UnixSeconds};

/// Policies shared by the nodes of a fleet.
pub trait SharedPolicies: Send + Sync {
    /// The policy another node fetched for `domain` under TXT `id`, if it
    /// is still fresh at `now`. `None` also when the shared copy cannot be
    /// read (the node then fetches it itself).
    fn get<'a>(
        &'a self,
        domain: &'a str,
        id: &'a str,
        now: UnixSeconds,
    ) -> BoxFuture<'a, Option<CachedPolicy>>;

    /// Offers a policy this node fetched to the others (best effort).
    fn publish<'a>(&'a self, policy: &'a CachedPolicy) -> BoxFuture<'a, ()>;
}
