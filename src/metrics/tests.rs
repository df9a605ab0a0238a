use super::*;

fn has(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
}

#[test]
fn counters_and_histogram_render_as_prometheus_text() {
    let metrics = Metrics::new();
    metrics.received("acme");
    metrics.received("acme");
    metrics.received("we\"ird");
    metrics.delivered("acme", Duration::from_millis(300));
    metrics.delivered("acme", Duration::from_secs(100_000));
    metrics.deferred("acme");
    metrics.deferral("mandatory-dane", "policy");
    metrics.bounced("acme");
    metrics.tls_outcome("mandatory-dane", "authenticated");
    metrics.refused(Refusal::ConnectionsPerIp);
    metrics.refused(Refusal::ConnectionsPerIp);
    let mut counts = Counts::default();
    counts.by_state.insert(StateKind::Deferred, 4);
    counts.by_tenant.insert("acme".into(), 2);
    let gauges = Gauges {
        config_generation: 3,
        disk_free_bytes: Some(5_000),
        disk_reserve_bytes: 1_000,
        certificates: vec![CertificateExpiry {
            name: "mta-sts.example.com".into(),
            not_after: 1_900_000_000,
        }],
    };
    metrics.set_acme_domains(BTreeMap::from([("valid", 2)]));
    metrics.set_cluster(true, 3);
    let text = metrics.render_with(&counts, &gauges);
    for line in [
        "sealpost_acme_domains{state=\"valid\"} 2",
        "sealpost_cluster_limits_shared 1",
        "sealpost_cluster_nodes_alive 3",
        "# TYPE sealpost_messages_received_total counter",
        "sealpost_messages_received_total{tenant=\"acme\"} 2",
        "sealpost_messages_received_total{tenant=\"we\\\"ird\"} 1",
        "sealpost_messages_received_total{tenant=\"other\"} 0",
        "sealpost_messages_delivered_total{tenant=\"acme\"} 2",
        "sealpost_messages_deferred_total{tenant=\"acme\"} 1",
        "sealpost_messages_bounced_total{tenant=\"acme\"} 1",
        "sealpost_deferrals_total{level=\"mandatory-dane\",reason=\"policy\"} 1",
        "sealpost_tls_outcomes_total{level=\"mandatory-dane\",outcome=\"authenticated\"} 1",
        "sealpost_smtp_refusals_total{reason=\"max_connections_per_ip\"} 2",
        "sealpost_smtp_refusals_total{reason=\"mail_loop\"} 0",
        "sealpost_queue_recipients{state=\"deferred\"} 4",
        "sealpost_queue_recipients{state=\"held\"} 0",
        "sealpost_queue_messages{tenant=\"acme\"} 2",
        "sealpost_config_generation 3",
        "sealpost_disk_free_bytes 5000",
        "sealpost_disk_reserve_bytes 1000",
        "sealpost_metrics_tenants_folded 0",
        "sealpost_tls_certificate_expiry_timestamp_seconds{name=\"mta-sts.example.com\"} 1900000000",
        "# TYPE sealpost_delivery_latency_seconds histogram",
        "sealpost_delivery_latency_seconds_bucket{le=\"0.1\"} 0",
        "sealpost_delivery_latency_seconds_bucket{le=\"0.5\"} 1",
        "sealpost_delivery_latency_seconds_bucket{le=\"14400\"} 1",
        "sealpost_delivery_latency_seconds_bucket{le=\"+Inf\"} 2",
        "sealpost_delivery_latency_seconds_sum 100000.3",
        "sealpost_delivery_latency_seconds_count 2",
    ] {
        has(&text, line);
    }
    assert_eq!(metrics.tenants()["acme"].received, 2);
    assert_eq!(
        metrics.deferrals()[&("mandatory-dane".to_string(), "policy".to_string())],
        1
    );
}

#[test]
fn ten_thousand_tenants_make_at_most_the_cap_plus_other() {
    let metrics = Metrics::new();
    metrics.admit(["big"]);
    let mut counts = Counts::default();
    for i in 0..10_000u64 {
        let tenant = format!("tenant-{i:05}");
        metrics.received(&tenant);
        metrics.delivered(&tenant, Duration::from_secs(1));
        metrics.deferred(&tenant);
        metrics.bounced(&tenant);
        counts.by_tenant.insert(tenant, i % 7);
    }
    for _ in 0..5 {
        metrics.received("big");
    }
    let text = metrics.render(&counts);
    let series = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .count()
    };
    for name in [
        "sealpost_messages_received_total",
        "sealpost_messages_delivered_total",
        "sealpost_messages_deferred_total",
        "sealpost_messages_bounced_total",
        "sealpost_queue_messages",
    ] {
        assert_eq!(series(name), TENANT_SERIES + 1, "{name}");
    }
    // Admitted first, so its own series although it sent last.
    has(&text, "sealpost_messages_received_total{tenant=\"big\"} 5");
    has(
        &text,
        "sealpost_messages_received_total{tenant=\"tenant-00000\"} 1",
    );
    has(
        &text,
        "sealpost_messages_received_total{tenant=\"other\"} 9901",
    );
    has(&text, "sealpost_metrics_tenants_folded 9901");
    // The sum over tenants stays exact.
    let total: u64 = text
        .lines()
        .filter(|l| l.starts_with("sealpost_messages_received_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 10_005);
    // The queue gauge shows the largest queues (6 messages each).
    has(&text, "sealpost_queue_messages{tenant=\"tenant-00006\"} 6");
    let queued: u64 = counts.by_tenant.values().sum();
    let shown: u64 = text
        .lines()
        .filter(|l| l.starts_with("sealpost_queue_messages{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(shown, queued);
    // The admin view keeps every tenant exact.
    assert_eq!(metrics.tenants().len(), 10_001);
}

#[test]
fn a_tenant_named_other_never_gets_a_series_of_its_own() {
    let metrics = Metrics::with_tenant_series(2);
    metrics.received(OTHER_TENANT);
    metrics.received("a");
    metrics.received("b");
    metrics.received("c");
    let text = metrics.render(&Counts::default());
    has(&text, "sealpost_messages_received_total{tenant=\"a\"} 1");
    has(&text, "sealpost_messages_received_total{tenant=\"b\"} 1");
    has(
        &text,
        "sealpost_messages_received_total{tenant=\"other\"} 2",
    );
    assert_eq!(
        text.matches("sealpost_messages_received_total{tenant=\"other\"}")
            .count(),
        1
    );
}

#[test]
fn the_tls_level_achieved_is_named_as_top_shows_it() {
    use crate::policy::SecurityLevel as L;
    use sealpost_queue::Authentication as A;
    let table = [
        (L::MandatoryDane, A::Dane, true, true, Some("DANE")),
        (L::MtaSts, A::WebPki, true, true, Some("MTA-STS")),
        (L::Mandatory, A::WebPki, true, true, Some("TLS")),
        (L::Opportunistic, A::None, true, true, Some("TLS")),
        (L::Opportunistic, A::None, false, true, Some("cleartext")),
        (L::MandatoryDane, A::None, false, false, None),
    ];
    for (level, auth, encrypted, ran, want) in table {
        assert_eq!(
            tls_achieved(level, auth, encrypted, ran),
            want,
            "{level:?} {auth:?}"
        );
    }
    let metrics = Metrics::new();
    metrics.destination_tls("example.com", "TLS");
    metrics.destination_tls("example.com", "DANE");
    metrics.peer_outcome("acme", "example.com", Some("DANE"), false);
    metrics.peer_outcome("acme", "example.com", None, true);
    metrics.peer_outcome("beta", "example.com", Some("cleartext"), false);
    let acme = metrics.peer_outcomes(Some("acme"));
    assert_eq!(acme.len(), 1);
    assert_eq!(
        (acme[0].1.dane, acme[0].1.refused, acme[0].1.cleartext),
        (1, 1, 0)
    );
    assert_eq!(metrics.peer_outcomes(None).len(), 2);
    assert_eq!(metrics.destinations_tls()["example.com"], "DANE");
}

#[test]
fn deferral_reasons_are_capped() {
    let metrics = Metrics::new();
    let known = metrics.deferrals().len();
    assert_eq!(known, 5 * DEFERRAL_KINDS.len());
    for i in 0..DEFERRAL_SERIES - known + 10 {
        metrics.deferral("opportunistic", &format!("r{i}"));
    }
    let deferrals = metrics.deferrals();
    assert_eq!(deferrals.len(), DEFERRAL_SERIES + 1);
    // The known kinds of every level exist from start.
    assert_eq!(deferrals[&("mta-sts".to_string(), "policy".to_string())], 0);
    assert_eq!(
        deferrals[&("opportunistic".to_string(), "other".to_string())],
        10
    );
}
