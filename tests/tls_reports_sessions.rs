//! What a TLS report (RFC 8460 section 4) counts, end to end through the
//! real `sealpost serve`, the test DNS serving a signed zone, and STARTTLS
//! MX hosts on their own loopback addresses; each report is read back
//! with `sealpost tls-reports show`:
//!
//! - under `mandatory-dane`, an MX host without DNSSEC-validated TLSA
//!   records is a `dane-required` failure (section 4.3), beside the
//!   success of the host that took the message;
//! - every session counts: hosts that failed a policy check before a
//!   later host took the message are failures with their MX host and
//!   receiving IP (a TLSA mismatch under DANE, no STARTTLS under
//!   `mandatory`), and the later host is a success;
//! - a failure after a connection was made names the local address it
//!   came from (`sending-mta-ip`).
mod support;

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;
use support::dns::TestDns;
use support::outbound::{base_config, delivered_event, loopback, submit, utc_today, Mx};
use support::pki::{self, ALL_VERSIONS};
use support::sealpost::{free_port, run_cli, Sealpost};
use support::smtp::accept_all;

/// A running sealpost with its DNS and MX hosts (kept alive with it).
struct World {
    sealpost: Sealpost,
    _dns: TestDns,
    _mx: Vec<Mx>,
}

/// sealpost (tenant `acme`, sender domain `acme.test`) and three
/// destinations:
///
/// - `req.test` (`mandatory-dane`): `mx1` has no TLSA records (validated
///   denial), `mx2` matching TLSA 3 1 1;
/// - `next.test` (`mandatory-dane`): `mx1` TLSA for another key, `mx2`
///   matching TLSA 3 1 1;
/// - `plainfirst.test` (`mandatory`): `mx1` without STARTTLS, `mx2` with.
async fn world() -> World {
    let stranger = pki::self_signed(&["stranger.test"]);
    let req1 = pki::self_signed(&["mx1.req.test"]);
    let req2 = pki::self_signed(&["mx2.req.test"]);
    let next1 = pki::self_signed(&["mx1.next.test"]);
    let next2 = pki::self_signed(&["mx2.next.test"]);
    let dns = TestDns::builder()
        .mx("req.test", 10, "mx1.req.test")
        .mx("req.test", 20, "mx2.req.test")
        .a("mx1.req.test", loopback(21))
        .a("mx2.req.test", loopback(22))
        .tlsa("_25._tcp.mx2.req.test", 3, 1, 1, &req2.tlsa_3_1_1())
        .mx("next.test", 10, "mx1.next.test")
        .mx("next.test", 20, "mx2.next.test")
        .a("mx1.next.test", loopback(23))
        .a("mx2.next.test", loopback(24))
        .tlsa("_25._tcp.mx1.next.test", 3, 1, 1, &stranger.tlsa_3_1_1())
        .tlsa("_25._tcp.mx2.next.test", 3, 1, 1, &next2.tlsa_3_1_1())
        .mx("plainfirst.test", 10, "mx1.plainfirst.test")
        .mx("plainfirst.test", 20, "mx2.plainfirst.test")
        .a("mx1.plainfirst.test", loopback(25))
        .a("mx2.plainfirst.test", loopback(26))
        .start()
        .await;
    let port = free_port();
    let tls = |leaf: &pki::Leaf| Some(pki::server_config(leaf, ALL_VERSIONS));
    let mut mx = Vec::new();
    for (last, name, tls) in [
        (21, "mx1.req.test", tls(&req1)),
        (22, "mx2.req.test", tls(&req2)),
        (23, "mx1.next.test", tls(&next1)),
        (24, "mx2.next.test", tls(&next2)),
        (25, "mx1.plainfirst.test", None),
        (
            26,
            "mx2.plainfirst.test",
            tls(&pki::self_signed(&["mx2.plainfirst.test"])),
        ),
    ] {
        mx.push(Mx::start(loopback(last), port, name, tls, Arc::new(accept_all)).await);
    }
    let extra = r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = { level = "opportunistic" }
outbound.peers = [
  { peer = "req.test", level = "mandatory-dane" },
  { peer = "next.test", level = "mandatory-dane" },
  { peer = "plainfirst.test", level = "mandatory" },
]
"#;
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, extra));
    World {
        sealpost,
        _dns: dns,
        _mx: mx,
    }
}

/// Delivers one message to `bob@<domain>` and returns the day's report
/// for `domain` as `sealpost tls-reports show` prints it.
async fn report_after_delivery(world: &World, domain: &str) -> Value {
    let to = format!("bob@{domain}");
    submit(world.sealpost.smtp, "alice@acme.test", &to).await;
    delivered_event(&world.sealpost, &to).await;
    let config = world.sealpost.config_path();
    let (code, shown, err) = run_cli(
        &config,
        &["tls-reports", "show", &utc_today(), "acme", domain],
    );
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&shown).expect("show prints JSON")
}

/// The policy of `report` whose `mx-host` lists `mx` (TLSA policies name
/// their host).
fn policy_of<'a>(report: &'a Value, mx: &str) -> &'a Value {
    report["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .find(|p| {
            p["policy"]["mx-host"]
                .as_array()
                .is_some_and(|hosts| hosts.iter().any(|h| h == mx))
        })
        .unwrap_or_else(|| panic!("no policy for {mx} in {report:#}"))
}

fn counts(policy: &Value) -> (u64, u64) {
    let summary = &policy["summary"];
    (
        summary["total-successful-session-count"]
            .as_u64()
            .expect("count"),
        summary["total-failure-session-count"]
            .as_u64()
            .expect("count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dane_required_counts_for_an_mx_host_without_tlsa_records() {
    let world = world().await;
    let report = report_after_delivery(&world, "req.test").await;

    let skipped = policy_of(&report, "mx1.req.test");
    assert_eq!(skipped["policy"]["policy-type"], "tlsa", "{report:#}");
    assert_eq!(counts(skipped), (0, 1), "{report:#}");
    let failure = &skipped["failure-details"][0];
    assert_eq!(failure["result-type"], "dane-required", "{report:#}");
    assert_eq!(failure["receiving-mx-hostname"], "mx1.req.test");
    assert_eq!(failure["failed-session-count"], 1);

    let used = policy_of(&report, "mx2.req.test");
    assert_eq!(used["policy"]["policy-type"], "tlsa");
    assert_eq!(counts(used), (1, 0), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_that_failed_before_the_delivery_count_as_failures() {
    let world = world().await;

    // DANE: the first MX's certificate does not match its TLSA records.
    let report = report_after_delivery(&world, "next.test").await;
    let refused = policy_of(&report, "mx1.next.test");
    assert_eq!(refused["policy"]["policy-type"], "tlsa", "{report:#}");
    assert_eq!(counts(refused), (0, 1), "{report:#}");
    let failure = &refused["failure-details"][0];
    assert_eq!(failure["result-type"], "validation-failure", "{report:#}");
    assert_eq!(failure["receiving-mx-hostname"], "mx1.next.test");
    assert_eq!(failure["receiving-ip"], "127.0.0.23");
    assert_eq!(counts(policy_of(&report, "mx2.next.test")), (1, 0));

    // `mandatory`: the first MX offers no STARTTLS; no policy either way.
    let report = report_after_delivery(&world, "plainfirst.test").await;
    let policies = report["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 1, "{report:#}");
    let policy = &policies[0];
    assert_eq!(policy["policy"]["policy-type"], "no-policy-found");
    assert_eq!(counts(policy), (1, 1), "{report:#}");
    let failure = &policy["failure-details"][0];
    assert_eq!(failure["result-type"], "starttls-not-supported");
    assert_eq!(failure["receiving-mx-hostname"], "mx1.plainfirst.test");
    assert_eq!(failure["receiving-ip"], "127.0.0.25");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failure_after_connecting_names_the_sending_address() {
    let world = world().await;
    let report = report_after_delivery(&world, "next.test").await;
    let failure = &policy_of(&report, "mx1.next.test")["failure-details"][0];
    let sending: IpAddr = failure["sending-mta-ip"]
        .as_str()
        .unwrap_or_else(|| panic!("no sending-mta-ip in {report:#}"))
        .parse()
        .expect("an IP address");
    assert!(sending.is_loopback(), "{sending}");

    // A host ruled out before any connection has no sending address.
    let report = report_after_delivery(&world, "req.test").await;
    let failure = &policy_of(&report, "mx1.req.test")["failure-details"][0];
    assert!(failure.get("sending-mta-ip").is_none(), "{report:#}");
}
