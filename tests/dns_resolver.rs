//! The validating resolver against the in-process signed test zone: every
//! answer kind with its DNSSEC status, MX rules (null MX, implicit MX),
//! TXT concatenation, CNAME'd TLSA names, the cache and single flight.
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::RecordType;
use sealpost::dns::{DnssecStatus, Lookup, LookupFailure, MxHost, MxLookup, TlsaRecord};
use support::dns::TestDns;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn zone() -> TestDns {
    TestDns::builder()
        .mx("secure.test", 20, "mx2.secure.test")
        .mx("secure.test", 10, "mx1.secure.test")
        .a("mx1.secure.test", LOCAL)
        .aaaa("mx1.secure.test", Ipv6Addr::LOCALHOST)
        .a("mx2.secure.test", LOCAL)
        .tlsa("_25._tcp.mx1.secure.test", 3, 1, 1, &[0x11; 32])
        .null_mx("nullmx.test")
        .a("implicit.test", LOCAL)
        .txt("_mta-sts.secure.test", &["v=STSv1; ", "id=20260101"])
        .txt("multi.secure.test", &["one"])
        .txt("multi.secure.test", &["two"])
        .cname("_25._tcp.alias.secure.test", "_25._tcp.mx1.secure.test")
        .a("alias.secure.test", LOCAL)
        .cname("www.secure.test", "mx1.secure.test")
        .insecure_zone("plain.test")
        .mx("plain.test", 10, "mx.plain.test")
        .a("mx.plain.test", LOCAL)
        .tlsa("_25._tcp.mx.plain.test", 3, 1, 1, &[0x22; 32])
        .bogus_zone("broken.test")
        .mx("broken.test", 10, "mx.broken.test")
        .a("mx.broken.test", LOCAL)
        .a("tampered.test", LOCAL)
        .bad_signature("tampered.test", RecordType::A)
        .a("down.secure.test", LOCAL)
        .servfail("down.secure.test")
        .secure_zone("child.test")
        .nsec3_zone("hashed.test")
        .a("mx.hashed.test", LOCAL)
        .a("mx.child.test", LOCAL)
        .tlsa("*._tcp.mx.wild.secure.test", 3, 1, 1, &[0x33; 32])
        .a("mx.wild.secure.test", LOCAL)
        .start()
        .await
}

#[tokio::test]
async fn answers_carry_their_dnssec_status() {
    let dns = zone().await;
    let resolver = dns.resolver();

    assert_eq!(
        resolver.a("mx2.secure.test").await,
        Lookup::Records {
            records: vec![IpAddr::V4(LOCAL)],
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.a("mx.plain.test").await,
        Lookup::Records {
            records: vec![IpAddr::V4(LOCAL)],
            dnssec: DnssecStatus::Insecure
        }
    );
    assert_eq!(
        resolver.a("mx.broken.test").await,
        Lookup::Failed(LookupFailure::Bogus)
    );
    assert_eq!(
        resolver.a("tampered.test").await,
        Lookup::Failed(LookupFailure::Bogus)
    );
    assert_eq!(
        resolver.a("down.secure.test").await,
        Lookup::Failed(LookupFailure::ServFail)
    );
}

#[tokio::test]
async fn secure_denial_is_told_apart_from_insecure_denial() {
    let dns = zone().await;
    let resolver = dns.resolver();
    // NXDOMAIN: no name `_25._tcp.mx2.secure.test`.
    assert_eq!(
        resolver.tlsa("mx2.secure.test", 25).await.lookup,
        Lookup::NxDomain {
            dnssec: DnssecStatus::Secure
        }
    );
    // NODATA: the name exists without that type.
    assert_eq!(
        resolver.aaaa("mx2.secure.test").await,
        Lookup::NoData {
            dnssec: DnssecStatus::Secure
        }
    );
    // NXDOMAIN.
    assert_eq!(
        resolver.a("nothing.secure.test").await,
        Lookup::NxDomain {
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.a("nothing.plain.test").await,
        Lookup::NxDomain {
            dnssec: DnssecStatus::Insecure
        }
    );
    assert_eq!(
        resolver.aaaa("mx.plain.test").await,
        Lookup::NoData {
            dnssec: DnssecStatus::Insecure
        }
    );
}

#[tokio::test]
async fn mx_rules() {
    let dns = zone().await;
    let resolver = dns.resolver();
    assert_eq!(
        resolver.mx("secure.test").await,
        MxLookup::Hosts {
            hosts: vec![
                MxHost {
                    preference: 10,
                    exchange: "mx1.secure.test".into()
                },
                MxHost {
                    preference: 20,
                    exchange: "mx2.secure.test".into()
                },
            ],
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.mx("nullmx.test").await,
        MxLookup::NullMx {
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.mx("implicit.test").await,
        MxLookup::Implicit {
            host: MxHost {
                preference: 0,
                exchange: "implicit.test".into()
            },
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.mx("absent.test").await,
        MxLookup::NoMailDomain {
            nxdomain: true,
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.mx("multi.secure.test").await,
        MxLookup::NoMailDomain {
            nxdomain: false,
            dnssec: DnssecStatus::Secure
        },
        "a name with neither MX nor address records",
    );
}

#[tokio::test]
async fn txt_strings_of_one_record_are_concatenated() {
    let dns = zone().await;
    let resolver = dns.resolver();
    assert_eq!(
        resolver.txt("_mta-sts.secure.test").await,
        Lookup::Records {
            records: vec!["v=STSv1; id=20260101".to_string()],
            dnssec: DnssecStatus::Secure
        }
    );
    let mut multi = resolver.txt("multi.secure.test").await.records().to_vec();
    multi.sort();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(
        resolver.txt("_mta-sts.plain.test").await,
        Lookup::NxDomain {
            dnssec: DnssecStatus::Insecure
        }
    );
}

#[tokio::test]
async fn tlsa_follows_cname_at_the_tlsa_name() {
    let dns = zone().await;
    let resolver = dns.resolver();
    let tlsa = resolver.tlsa("alias.secure.test", 25).await;
    assert_eq!(tlsa.base_domain, "alias.secure.test");
    assert_eq!(tlsa.tlsa_name, "_25._tcp.alias.secure.test");
    assert_eq!(
        tlsa.lookup,
        Lookup::Records {
            records: vec![TlsaRecord {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![0x11; 32]
            }],
            dnssec: DnssecStatus::Secure
        }
    );
    // The insecure zone's TLSA records are insecure.
    assert_eq!(
        resolver.tlsa("mx.plain.test", 25).await.lookup.dnssec(),
        Some(DnssecStatus::Insecure)
    );
}

#[tokio::test]
async fn address_lookup_reports_the_cname_target() {
    let dns = zone().await;
    let resolver = dns.resolver();
    let addresses = resolver.addresses("www.secure.test").await;
    assert_eq!(addresses.host, "www.secure.test");
    assert_eq!(addresses.canonical, "mx1.secure.test");
    let mut found = addresses.lookup.records().to_vec();
    found.sort();
    assert_eq!(found, [IpAddr::V4(LOCAL), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    assert_eq!(addresses.lookup.dnssec(), Some(DnssecStatus::Secure));
}

#[tokio::test]
async fn answers_are_cached_and_concurrent_lookups_share_one_query() {
    let dns = zone().await;
    let resolver = std::sync::Arc::new(dns.resolver());
    let before = resolver.stats().upstream_lookups;
    let lookups: Vec<_> = (0..16)
        .map(|_| {
            let resolver = resolver.clone();
            tokio::spawn(async move { resolver.mx("secure.test").await })
        })
        .collect();
    for lookup in lookups {
        let mx = lookup.await.expect("task");
        assert_eq!(mx.dnssec(), Some(DnssecStatus::Secure));
    }
    assert_eq!(resolver.stats().upstream_lookups, before + 1);
    // Cached: another lookup sends nothing upstream.
    resolver.mx("secure.test").await;
    assert_eq!(resolver.stats().upstream_lookups, before + 1);
    resolver.clear_cache();
    resolver.mx("secure.test").await;
    assert_eq!(resolver.stats().upstream_lookups, before + 2);
}

#[tokio::test]
async fn a_silent_server_is_a_timeout() {
    // A bound socket that never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut settings =
        sealpost::dns::ResolverSettings::new(vec![silent.local_addr().expect("addr")]);
    settings.timeout = std::time::Duration::from_millis(100);
    settings.attempts = 1;
    let resolver = sealpost::dns::Resolver::new(&settings).expect("resolver");
    assert_eq!(
        resolver.a("mx.example.test").await,
        Lookup::Failed(LookupFailure::Timeout)
    );
}

#[test]
fn settings_errors_are_reported() {
    let none = sealpost::dns::ResolverSettings::new(Vec::new());
    assert!(matches!(
        sealpost::dns::Resolver::new(&none),
        Err(sealpost::dns::ResolverError::NoNameservers)
    ));
    let mut missing =
        sealpost::dns::ResolverSettings::new(vec!["127.0.0.1:53".parse().expect("addr")]);
    missing.trust_anchor =
        sealpost::dns::TrustAnchorSource::DnskeyFile("/nonexistent/anchor.dnskey".into());
    assert!(matches!(
        sealpost::dns::Resolver::new(&missing),
        Err(sealpost::dns::ResolverError::TrustAnchor { .. })
    ));
}

#[tokio::test]
async fn a_signed_child_zone_validates_through_its_ds() {
    let dns = zone().await;
    let resolver = dns.resolver();
    assert_eq!(
        resolver.a("mx.child.test").await,
        Lookup::Records {
            records: vec![IpAddr::V4(LOCAL)],
            dnssec: DnssecStatus::Secure
        }
    );
}

/// A wildcard `*._tcp.<host>` synthesizes `_25._tcp.<host>`. hickory
/// 0.26.3 judges wildcard-synthesized answers bogus (BIND's delv
/// validates them). sealpost then treats such a TLSA lookup as failed:
/// that MX is unreachable, the safe direction. This test pins the
/// behaviour so a hickory upgrade that fixes it is noticed.
#[tokio::test]
async fn wildcard_tlsa_answers_are_treated_as_bogus() {
    let dns = zone().await;
    let resolver = dns.resolver();
    let tlsa = resolver.tlsa("mx.wild.secure.test", 25).await;
    assert_eq!(tlsa.tlsa_name, "_25._tcp.mx.wild.secure.test");
    assert_eq!(tlsa.lookup, Lookup::Failed(LookupFailure::Bogus));
}

#[tokio::test]
async fn nsec3_denials_are_secure() {
    let dns = zone().await;
    let resolver = dns.resolver();
    assert_eq!(
        resolver.tlsa("mx.hashed.test", 25).await.lookup,
        Lookup::NxDomain {
            dnssec: DnssecStatus::Secure
        }
    );
    assert_eq!(
        resolver.aaaa("mx.hashed.test").await,
        Lookup::NoData {
            dnssec: DnssecStatus::Secure
        }
    );
    // Trap: hickory-server 0.26.3 puts NSEC3 records without RRSIGs in the
    // authority section of positive answers, and hickory-resolver then
    // judges the answer bogus. Real authoritative servers do not send
    // them; the test zones use NSEC where positive answers matter.
    assert_eq!(
        resolver.a("mx.hashed.test").await,
        Lookup::Failed(LookupFailure::Bogus)
    );
}

#[tokio::test]
async fn records_can_change_while_serving() {
    use hickory_server::proto::rr::{rdata::TXT, RData};
    let dns = zone().await;
    let resolver = dns.resolver();
    assert_eq!(
        resolver.txt("_mta-sts.secure.test").await.records(),
        ["v=STSv1; id=20260101"]
    );
    let new_txt = RData::TXT(TXT::new(vec!["v=STSv1; id=20260202".to_string()]));
    dns.set("_mta-sts.secure.test", RecordType::TXT, vec![new_txt])
        .await;
    // Still cached...
    assert_eq!(
        resolver.txt("_mta-sts.secure.test").await.records(),
        ["v=STSv1; id=20260101"]
    );
    // ...until the cache is cleared; the new RRset validates as secure.
    resolver.clear_cache();
    assert_eq!(
        resolver.txt("_mta-sts.secure.test").await,
        Lookup::Records {
            records: vec!["v=STSv1; id=20260202".to_string()],
            dnssec: DnssecStatus::Secure
        }
    );
    // Deleting it leaves a secure denial.
    dns.set("_mta-sts.secure.test", RecordType::TXT, Vec::new())
        .await;
    let fresh = dns.resolver();
    assert!(fresh.txt("_mta-sts.secure.test").await.is_secure_denial());
}
