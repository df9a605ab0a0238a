//! The MTA-STS policy cache (RFC 8461 sections 3, 5.1 and 10.3) with a real
//! sled store in a temporary directory, an in-memory TXT source, a scripted
//! fetcher (and, for single-flight, the real HTTPS fetcher) and a manual
//! clock: nothing sleeps.
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sealpost::mta_sts::{
    BounceCheck, DiscoveryFailure, HttpsFetcherConfig, HttpsPolicyFetcher, LookupReason,
    ManualClock, Mode, PolicyCache, PolicyFetcher, PolicyStore, RefreshOutcome, StaticHosts,
    StsTxtSource, TrustRoots, TxtProblem, RETRY_AFTER_FAILURE,
};
use support::https::{HttpsServer, Reply};
use support::pki::{self, TestCa};
use support::sts::{MemoryTxt, ScriptedFetcher};

const DOMAIN: &str = "example.test";
const T0: u64 = 1_800_000_000;

fn policy(mode: &str, max_age: u64) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: mx.example.test\nmax_age: {max_age}\n")
}

struct Rig {
    txt: Arc<MemoryTxt>,
    fetcher: Arc<ScriptedFetcher>,
    clock: Arc<ManualClock>,
    cache: PolicyCache,
}

fn rig(dir: &Path) -> Rig {
    rig_with(
        dir,
        Arc::new(MemoryTxt::default()),
        Arc::new(ScriptedFetcher::default()),
        Arc::new(ManualClock::new(T0)),
    )
}

fn rig_with(
    dir: &Path,
    txt: Arc<MemoryTxt>,
    fetcher: Arc<ScriptedFetcher>,
    clock: Arc<ManualClock>,
) -> Rig {
    let store = PolicyStore::open(&dir.join("mta-sts")).expect("open store");
    let cache = PolicyCache::new(txt.clone(), fetcher.clone(), store, clock.clone());
    Rig {
        txt,
        fetcher,
        clock,
        cache,
    }
}

#[tokio::test]
async fn fetched_once_then_served_from_cache_until_id_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.serve(DOMAIN, &policy("enforce", 86400));

    let first = r.cache.policy_for(DOMAIN).await;
    assert_eq!(first.reason, LookupReason::Fetched);
    assert_eq!(first.mode(), Some(Mode::Enforce));
    let cached = first.policy.as_ref().expect("policy");
    assert_eq!((cached.id.as_str(), cached.fetched_at), ("one", T0));
    assert_eq!(cached.expires_at, T0 + 86400);

    r.clock.advance(3600);
    // Case and a trailing dot do not make another domain.
    let second = r.cache.policy_for("Example.TEST.").await;
    assert_eq!(second.reason, LookupReason::CachedCurrent);
    assert_eq!(second.policy, first.policy);
    assert_eq!(r.fetcher.calls(), 1);

    // New id: the new policy is fetched and replaces the old one.
    r.txt.publish(DOMAIN, "two");
    r.fetcher.serve(DOMAIN, &policy("testing", 600));
    let third = r.cache.policy_for(DOMAIN).await;
    assert_eq!(third.reason, LookupReason::Fetched);
    assert_eq!(
        (third.mode(), third.id()),
        (Some(Mode::Testing), Some("two"))
    );
    assert_eq!(r.fetcher.calls(), 2);
}

#[tokio::test]
async fn cached_policy_survives_vanished_txt_dns_failure_and_failed_refresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.serve(DOMAIN, &policy("enforce", 86400));
    assert_eq!(
        r.cache.policy_for(DOMAIN).await.reason,
        LookupReason::Fetched
    );

    r.txt.remove(DOMAIN);
    let gone = r.cache.policy_for(DOMAIN).await;
    assert_eq!(
        gone.reason,
        LookupReason::CachedTxtAbsent {
            txt: TxtProblem::Absent
        }
    );
    assert_eq!(gone.mode(), Some(Mode::Enforce));

    r.txt.servfail(DOMAIN);
    let failed = r.cache.policy_for(DOMAIN).await;
    assert!(matches!(
        failed.reason,
        LookupReason::CachedTxtAbsent {
            txt: TxtProblem::LookupFailed(_)
        }
    ));
    assert_eq!(failed.mode(), Some(Mode::Enforce));

    r.txt.set(
        DOMAIN,
        Ok(vec!["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]),
    );
    let invalid = r.cache.policy_for(DOMAIN).await;
    assert!(matches!(
        invalid.reason,
        LookupReason::CachedTxtAbsent {
            txt: TxtProblem::Invalid(_)
        }
    ));

    // A new id whose policy cannot be fetched: the old policy stays.
    r.txt.publish(DOMAIN, "two");
    r.fetcher.fail(DOMAIN, 503);
    let kept = r.cache.policy_for(DOMAIN).await;
    assert!(
        matches!(kept.reason, LookupReason::CachedFetchFailed { .. }),
        "{kept:?}"
    );
    assert_eq!((kept.mode(), kept.id()), (Some(Mode::Enforce), Some("one")));
    assert_eq!(r.fetcher.calls(), 2);
    assert_eq!(r.txt.queried().len(), 5, "one TXT lookup per query");

    // Once expired, a cached policy is no longer applied.
    r.clock.advance(86400);
    r.txt.remove(DOMAIN);
    let expired = r.cache.policy_for(DOMAIN).await;
    assert_eq!(expired.policy, None);
    assert_eq!(
        expired.reason,
        LookupReason::NoPolicy {
            txt: TxtProblem::Absent
        }
    );
}

#[tokio::test]
async fn failed_fetch_is_not_retried_within_five_minutes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.fail(DOMAIN, 404);

    let first = r.cache.policy_for(DOMAIN).await;
    assert!(
        matches!(first.reason, LookupReason::FetchFailed { .. }),
        "{first:?}"
    );
    assert_eq!(first.policy, None);

    r.clock.advance(RETRY_AFTER_FAILURE - 1);
    let waiting = r.cache.policy_for(DOMAIN).await;
    match &waiting.reason {
        LookupReason::RetryWait { until, failure } => {
            assert_eq!(*until, T0 + RETRY_AFTER_FAILURE);
            assert_eq!(failure.tlsrpt_result_type(), "sts-policy-fetch-error");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.fetcher.calls(), 1, "no fetch within 5 minutes");

    // An invalid policy is a failure too (and reported as such).
    r.clock.advance(1);
    r.fetcher
        .serve(DOMAIN, "version: STSv1\nmode: enforce\nmax_age: 60\n");
    let invalid = r.cache.policy_for(DOMAIN).await;
    match &invalid.reason {
        LookupReason::FetchFailed {
            failure: f @ DiscoveryFailure::Invalid { .. },
        } => {
            assert_eq!(f.tlsrpt_result_type(), "sts-policy-invalid")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.fetcher.calls(), 2);

    r.clock.advance(RETRY_AFTER_FAILURE);
    r.fetcher.serve(DOMAIN, &policy("enforce", 600));
    let ok = r.cache.policy_for(DOMAIN).await;
    assert_eq!(ok.reason, LookupReason::Fetched);
    assert_eq!(r.fetcher.calls(), 3);
}

#[tokio::test]
async fn negative_cache_keeps_cached_policy_without_refetching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.serve(DOMAIN, &policy("enforce", 86400));
    r.cache.policy_for(DOMAIN).await;
    r.txt.publish(DOMAIN, "two");
    r.fetcher.fail(DOMAIN, 500);
    r.cache.policy_for(DOMAIN).await;
    let wait = r.cache.policy_for(DOMAIN).await;
    assert_eq!(
        wait.reason,
        LookupReason::CachedRetryWait {
            until: T0 + RETRY_AFTER_FAILURE
        }
    );
    assert_eq!(wait.id(), Some("one"));
    assert_eq!(r.fetcher.calls(), 2);
}

#[tokio::test]
async fn cache_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    {
        let r = rig_with(
            dir.path(),
            Arc::new(MemoryTxt::default()),
            Arc::new(ScriptedFetcher::default()),
            clock.clone(),
        );
        r.txt.publish(DOMAIN, "one");
        r.fetcher.serve(DOMAIN, &policy("enforce", 86400));
        assert_eq!(
            r.cache.policy_for(DOMAIN).await.reason,
            LookupReason::Fetched
        );
    } // the cache and its sled database are closed here

    clock.advance(3600);
    let r = rig_with(
        dir.path(),
        Arc::new(MemoryTxt::default()),
        Arc::new(ScriptedFetcher::default()),
        clock.clone(),
    );
    // The TXT record is gone and the policy host is down: still enforced.
    r.fetcher.fail(DOMAIN, 503);
    let after = r.cache.policy_for(DOMAIN).await;
    assert_eq!(
        after.reason,
        LookupReason::CachedTxtAbsent {
            txt: TxtProblem::Absent
        }
    );
    assert_eq!(
        (after.mode(), after.id()),
        (Some(Mode::Enforce), Some("one"))
    );
    let cached = after.policy.expect("policy");
    assert_eq!((cached.fetched_at, cached.expires_at), (T0, T0 + 86400));
    // The same id in DNS: used without a fetch.
    r.txt.publish(DOMAIN, "one");
    assert_eq!(
        r.cache.policy_for(DOMAIN).await.reason,
        LookupReason::CachedCurrent
    );
    assert_eq!(r.fetcher.calls(), 0);
}

#[tokio::test]
async fn refresh_before_expiry_and_drop_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.txt.publish("weekly.test", "w1");
    r.fetcher.serve(DOMAIN, &policy("enforce", 3600));
    r.fetcher
        .serve("weekly.test", &policy("enforce", 7 * 86400));
    r.cache.policy_for(DOMAIN).await;
    r.cache.policy_for("weekly.test").await;

    r.clock.advance(1799);
    assert_eq!(r.cache.refresh_due().await, vec![], "not yet at half-life");
    r.clock.advance(1);
    r.fetcher.serve(DOMAIN, &policy("enforce", 7200));
    assert_eq!(
        r.cache.refresh_due().await,
        vec![RefreshOutcome::Refreshed {
            domain: DOMAIN.into(),
            id: "one".into()
        }]
    );
    let entry = r.cache.cached(DOMAIN).expect("entry");
    assert_eq!(
        (entry.fetched_at, entry.expires_at),
        (T0 + 1800, T0 + 1800 + 7200)
    );

    // A failed refresh keeps the policy, and is not retried for 5 minutes.
    r.clock.set(T0 + 1800 + 3600);
    r.fetcher.fail(DOMAIN, 500);
    let failed = r.cache.refresh_due().await;
    assert!(
        matches!(failed.as_slice(), [RefreshOutcome::Failed { domain, .. }] if domain == DOMAIN),
        "{failed:?}"
    );
    assert_eq!(
        r.cache.refresh_due().await,
        vec![RefreshOutcome::Waiting {
            domain: DOMAIN.into(),
            until: T0 + 1800 + 3600 + RETRY_AFTER_FAILURE
        }]
    );
    assert_eq!(r.cache.policy_for(DOMAIN).await.mode(), Some(Mode::Enforce));

    // A week-long policy is refreshed daily; the expired one is dropped.
    r.clock.set(T0 + 86400);
    let outcomes = r.cache.refresh_due().await;
    assert!(outcomes.contains(&RefreshOutcome::Dropped {
        domain: DOMAIN.into()
    }));
    assert!(outcomes.contains(&RefreshOutcome::Refreshed {
        domain: "weekly.test".into(),
        id: "w1".into()
    }));
    assert_eq!(r.cache.cached(DOMAIN), None);
}

#[tokio::test]
async fn recheck_before_bounce_tells_a_changed_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.serve(DOMAIN, &policy("enforce", 86400));
    r.cache.policy_for(DOMAIN).await;
    assert!(matches!(
        r.cache.recheck_before_bounce(DOMAIN, "one").await,
        BounceCheck::Unchanged(_)
    ));
    // A new id whose fetch just failed: normal lookups wait 5 minutes...
    r.txt.publish(DOMAIN, "two");
    r.fetcher.fail(DOMAIN, 503);
    r.cache.policy_for(DOMAIN).await;
    r.fetcher.serve(DOMAIN, &policy("testing", 86400));
    assert!(matches!(
        r.cache.policy_for(DOMAIN).await.reason,
        LookupReason::CachedRetryWait { .. }
    ));
    assert_eq!(r.fetcher.calls(), 2);
    // ...but the check before a bounce fetches the new policy at once.
    match r.cache.recheck_before_bounce(DOMAIN, "one").await {
        BounceCheck::Changed(lookup) => {
            assert_eq!(lookup.reason, LookupReason::Fetched);
            assert_eq!(lookup.mode(), Some(Mode::Testing));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.fetcher.calls(), 3);
}

#[tokio::test]
async fn never_looks_up_a_parent_domain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.serve(DOMAIN, &policy("enforce", 86400));
    let lookup = r.cache.policy_for("sub.example.test").await;
    assert_eq!(lookup.policy, None);
    assert_eq!(
        r.txt.queried(),
        vec!["_mta-sts.sub.example.test.".to_string()]
    );
    assert_eq!(r.fetcher.calls(), 0);
}

#[tokio::test]
async fn concurrent_lookups_share_one_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rig(dir.path());
    r.txt.publish(DOMAIN, "one");
    r.fetcher.serve(DOMAIN, &policy("enforce", 86400));
    let lookups = (0..16).map(|_| r.cache.policy_for(DOMAIN));
    let results = futures_util::future::join_all(lookups).await;
    assert_eq!(r.fetcher.calls(), 1);
    assert!(results.iter().all(|l| l.id() == Some("one")));
    let fetched = results
        .iter()
        .filter(|l| l.reason == LookupReason::Fetched)
        .count();
    assert_eq!(fetched, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_share_one_https_request() {
    let ca = TestCa::new("sealpost test CA");
    let leaf = ca.issue(&["mta-sts.example.test"]);
    let body = policy("enforce", 86400);
    let server = HttpsServer::start(pki::server_config(&leaf, pki::ALL_VERSIONS), move |_, _| {
        Reply::Delayed(Duration::from_millis(50), Box::new(Reply::text(&body)))
    })
    .await;
    let hosts = StaticHosts(HashMap::from([(
        "mta-sts.example.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]));
    let config = HttpsFetcherConfig {
        roots: TrustRoots::only(vec![ca.cert.clone()]),
        port: server.port(),
        timeout: Duration::from_secs(10),
    };
    let fetcher: Arc<dyn PolicyFetcher> =
        Arc::new(HttpsPolicyFetcher::new(&config, Arc::new(hosts)).expect("fetcher"));
    let txt = Arc::new(MemoryTxt::default());
    txt.publish(DOMAIN, "one");
    let txt_source: Arc<dyn StsTxtSource> = txt.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PolicyStore::open(&dir.path().join("mta-sts")).expect("store");
    let cache = Arc::new(PolicyCache::new(
        txt_source,
        fetcher,
        store,
        Arc::new(ManualClock::new(T0)),
    ));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.policy_for(DOMAIN).await })
        })
        .collect();
    for task in tasks {
        let lookup = task.await.expect("task");
        assert_eq!(lookup.mode(), Some(Mode::Enforce));
    }
    assert_eq!(server.hits(), 1);
}
