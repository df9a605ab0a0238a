//! MTA-STS discovery through sealpost's real resolver: the `_mta-sts` TXT
//! record is served by the in-process signed test zone, the policy by a real
//! HTTPS server on loopback, and the cache ties them together.
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::rdata::TXT;
use hickory_server::proto::rr::{RData, RecordType};
use sealpost::mta_sts::{
    HttpsFetcherConfig, HttpsPolicyFetcher, ManualClock, Mode, PolicyCache, PolicyStore,
    StaticHosts, StsTxtSource, TrustRoots, TxtLookupError,
};
use support::dns::TestDns;
use support::https::{HttpsServer, Reply};
use support::pki::{self, TestCa};

async fn zone() -> TestDns {
    TestDns::builder()
        .txt("_mta-sts.secure.test", &["v=STSv1; ", "id=20261123"])
        .txt("_mta-sts.secure.test", &["v=spf1 -all"])
        .a("mta-sts.secure.test", Ipv4Addr::LOCALHOST)
        .a("nosts.secure.test", Ipv4Addr::LOCALHOST)
        .txt("_mta-sts.down.secure.test", &["v=STSv1; id=1"])
        .servfail("_mta-sts.down.secure.test")
        .bogus_zone("broken.test")
        .txt("_mta-sts.broken.test", &["v=STSv1; id=1"])
        .start()
        .await
}

#[tokio::test]
async fn the_resolver_answers_txt_lookups_for_mta_sts() {
    let dns = zone().await;
    let resolver = dns.resolver();

    let mut records = resolver
        .lookup_txt("_mta-sts.secure.test.")
        .await
        .expect("records");
    records.sort();
    // The two strings of one record are joined; the other record stays apart.
    assert_eq!(records, ["v=STSv1; id=20261123", "v=spf1 -all"]);

    assert_eq!(
        resolver.lookup_txt("_mta-sts.nosts.secure.test.").await,
        Err(TxtLookupError::NoRecords {
            name: "_mta-sts.nosts.secure.test.".into()
        })
    );
    assert!(matches!(
        resolver.lookup_txt("_mta-sts.down.secure.test.").await,
        Err(TxtLookupError::Failed { .. })
    ));
    // A bogus answer is a failure, not "no policy": a cached policy would
    // stay in force.
    assert!(matches!(
        resolver.lookup_txt("_mta-sts.broken.test.").await,
        Err(TxtLookupError::Failed { reason, .. }) if reason.contains("bogus")
    ));
}

#[tokio::test]
async fn a_policy_is_discovered_through_dns_and_fetched_over_https() {
    let dns = zone().await;
    let ca = TestCa::new("sealpost test CA");
    let leaf = ca.issue(&["mta-sts.secure.test"]);
    let policy = "version: STSv1\nmode: enforce\nmx: *.secure.test\nmax_age: 86400\n";
    let host = HttpsServer::start(pki::server_config(&leaf, pki::ALL_VERSIONS), move |_, _| {
        Reply::text(policy)
    })
    .await;
    let hosts = StaticHosts(HashMap::from([(
        "mta-sts.secure.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]));
    let config = HttpsFetcherConfig {
        roots: TrustRoots::only(vec![ca.cert.clone()]),
        port: host.port(),
        timeout: Duration::from_secs(10),
    };
    let fetcher = Arc::new(HttpsPolicyFetcher::new(&config, Arc::new(hosts)).expect("fetcher"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PolicyStore::open(&dir.path().join("mta-sts")).expect("store");
    let resolver = Arc::new(dns.resolver());
    let cache = PolicyCache::new(
        resolver.clone(),
        fetcher,
        store,
        Arc::new(ManualClock::new(1_800_000_000)),
    );

    let lookup = cache.policy_for("secure.test").await;
    assert_eq!(lookup.mode(), Some(Mode::Enforce), "{}", lookup.reason);
    assert_eq!(lookup.id(), Some("20261123"));
    assert_eq!(host.hits(), 1);

    // Unchanged TXT id: the cached policy serves, nothing is fetched.
    assert_eq!(cache.policy_for("secure.test").await.id(), Some("20261123"));
    assert_eq!(host.hits(), 1);

    // The TXT id changes in DNS: the next lookup fetches the policy again.
    dns.set(
        "_mta-sts.secure.test",
        RecordType::TXT,
        vec![RData::TXT(TXT::new(vec!["v=STSv1; id=20261124".into()]))],
    )
    .await;
    resolver.clear_cache();
    assert_eq!(cache.policy_for("secure.test").await.id(), Some("20261124"));
    assert_eq!(host.hits(), 2);
}
