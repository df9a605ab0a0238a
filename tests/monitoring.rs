//! The monitoring kit in `dist/`: the Prometheus alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`,
//! each alert fires on series shaped like sealpost's), and every metric
//! the Grafana dashboard queries is exposed by a live `sealpost serve`
//! that has received and delivered mail.
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::sealpost::{free_port, http_get, server_head, submit, Sealpost, NO_DNS};
use support::smtp::{accept_all, TestSmtpServer};

const RULES: &str = "dist/prometheus/sealpost-rules.yml";
const RULE_TESTS: &str = "dist/prometheus/sealpost-rules.test.yml";
const DASHBOARD: &str = "dist/grafana/sealpost.json";

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then_some("promtool")
}

fn run_promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(_) = promtool() else {
        eprintln!(
            "skipped: promtool is not installed (Debian: apt-get install prometheus; .ci/run does it as root)"
        );
        return;
    };
    run_promtool(&["check", "rules", RULES]);
    run_promtool(&["test", "rules", RULE_TESTS]);
}

/// Metric names in a PromQL expression: identifiers starting with
/// `sealpost_` (histogram series names mapped to their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sealpost_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| base.ends_with("_seconds"))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

/// Every metric family in an exposition (its `# TYPE` line), and the
/// names that have at least one sample.
fn families(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut typed = BTreeSet::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            sampled.insert(name.to_string());
        }
    }
    (typed, sampled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_in_a_live_scrape() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut wanted: Vec<(String, String)> = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a panel title").to_string();
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {title}: no sealpost metric in {expr}"
            );
            wanted.extend(names.into_iter().map(|n| (title.clone(), n)));
        }
    }

    let downstream =
        TestSmtpServer::start("downstream.test", None, std::sync::Arc::new(accept_all)).await;
    let route = downstream.addr;
    let metrics_port = free_port();
    let sealpost = Sealpost::start(move |port| {
        format!(
            "{head}\n{NO_DNS}\n[admin]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
             [limits]\nmin_free_disk = 1024\n\n\
             [[domains]]\nname = \"open.test\"\ntenant = \"acme\"\n\
             route = {{ hosts = [\"{route}\"], level = \"opportunistic\" }}\n",
            head = server_head(port)
        )
    });
    submit(
        sealpost.smtp,
        "a@sender.test",
        &["b@open.test"],
        b"Subject: hi\r\n\r\nhello\r\n",
    )
    .await
    .expect("250");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (status, body) = http_get(metrics, "/metrics");
        assert_eq!(status, 200, "{body}");
        if body.contains("sealpost_messages_delivered_total{tenant=\"acme\"} 1")
            || std::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (typed, sampled) = families(&text);
    for (title, name) in &wanted {
        assert!(
            typed.contains(name),
            "panel {title:?} queries {name}, which the scrape lacks:\n{text}"
        );
    }
    // Sealpost's self-signed certificate, the disk and the traffic show.
    for name in [
        "sealpost_messages_received_total",
        "sealpost_messages_delivered_total",
        "sealpost_tls_outcomes_total",
        "sealpost_delivery_latency_seconds_bucket",
        "sealpost_queue_recipients",
        "sealpost_disk_free_bytes",
        "sealpost_disk_reserve_bytes",
        "sealpost_tls_certificate_expiry_timestamp_seconds",
    ] {
        assert!(sampled.contains(name), "no sample of {name}:\n{text}");
    }
    assert!(
        text.contains("sealpost_disk_reserve_bytes 1024\n"),
        "{text}"
    );
    assert!(
        text.contains("sealpost_tls_certificate_expiry_timestamp_seconds{name=\"default\"}"),
        "{text}"
    );
    // And every metric an alert rule reads.
    let rules = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES))
        .expect("read the rules");
    for name in metric_names(&rules) {
        assert!(
            typed.contains(&name),
            "the rules read {name}, which the scrape lacks"
        );
    }
}
