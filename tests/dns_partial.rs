//! A failed AAAA lookup (SERVFAIL) while A resolves, end to end through
//! the real `sealpost serve` and the signed test DNS (issue 14, part 4):
//! the levels without DANE deliver to the IPv4 address; the DANE levels
//! never use the host (RFC 7672 section 2.2); `mta-sts` uses it unless
//! DANE governs it (usable TLSA records, RFC 8461 section 2).
mod support;

use std::sync::Arc;

use hickory_server::proto::rr::RecordType;
use support::dns::TestDns;
use support::outbound::{
    base_config, deferred_events, delivered_event, loopback, self_signed_tls, submit, Mx,
};
use support::pki::{self, ALL_VERSIONS};
use support::sealpost::{free_port, Sealpost};
use support::smtp::accept_all;

/// A managed domain of tenant `acme` sending under `level`.
fn sender(domain: &str, level: &str) -> String {
    format!(
        "[[domains]]\nname = \"{domain}\"\ntenant = \"acme\"\n\
         outbound.default = {{ level = \"{level}\" }}\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_aaaa_lookup_stops_only_the_levels_that_need_dane() {
    let port = free_port();
    let dane_leaf = pki::self_signed(&["mx.half-dane.test"]);
    let tlsa = dane_leaf.tlsa_3_1_1();
    let dns = TestDns::builder()
        // No TLSA: DANE would not apply, but the host's AAAA fails.
        .mx("half.test", 10, "mx.half.test")
        .a("mx.half.test", loopback(2))
        .servfail_type("mx.half.test", RecordType::AAAA)
        // Usable TLSA: DANE governs, also under mta-sts.
        .mx("half-dane.test", 10, "mx.half-dane.test")
        .a("mx.half-dane.test", loopback(3))
        .servfail_type("mx.half-dane.test", RecordType::AAAA)
        .tlsa("_25._tcp.mx.half-dane.test", 3, 1, 1, &tlsa)
        .start()
        .await;
    let mx = Mx::start(
        loopback(2),
        port,
        "mx.half.test",
        self_signed_tls("mx.half.test", ALL_VERSIONS),
        Arc::new(accept_all),
    )
    .await;
    let mx_dane = Mx::start(
        loopback(3),
        port,
        "mx.half-dane.test",
        Some(pki::server_config(&dane_leaf, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let senders: String = [
        ("o.test", "opportunistic"),
        ("m.test", "mandatory"),
        ("s.test", "mta-sts"),
        ("od.test", "opportunistic-dane"),
        ("md.test", "mandatory-dane"),
    ]
    .iter()
    .map(|(domain, level)| sender(domain, level))
    .collect();
    let sealpost = Sealpost::start(|listen| base_config(listen, port, &dns, &senders));

    // Delivered: the levels without DANE, to the address that resolved.
    for from in ["o.test", "m.test", "s.test"] {
        let to = format!("to-{from}@half.test");
        submit(sealpost.smtp, &format!("a@{from}"), &to).await;
        let event = delivered_event(&sealpost, &to).await;
        assert_eq!(event["mx"], "mx.half.test", "{event}");
    }
    // Deferred: DANE cannot use a host whose address lookup failed.
    for from in ["od.test", "md.test"] {
        let to = format!("to-{from}@half.test");
        submit(sealpost.smtp, &format!("a@{from}"), &to).await;
        let events = deferred_events(&sealpost, &to, 1).await;
        let detail = events[0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("mx.half.test") && detail.contains("address lookup failed: SERVFAIL"),
            "{detail}"
        );
    }
    // mta-sts where usable TLSA records exist: DANE governs, and its rule
    // makes the host unusable.
    submit(sealpost.smtp, "a@s.test", "to@half-dane.test").await;
    let events = deferred_events(&sealpost, "to@half-dane.test", 1).await;
    let detail = events[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("address lookup failed: SERVFAIL"),
        "{detail}"
    );
    assert_eq!(
        mx.mails(),
        3,
        "only the three levels without DANE sent MAIL"
    );
    assert_eq!(mx_dane.mails(), 0, "the DANE-governed host was never used");
}
