//! The queue, destinations and reload commands against the running server.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_shows_and_acts_on_the_queue_of_the_running_server() {
    let mut s = setup("").await;
    let cfg = s.sealpost.config_path();
    let c = client(&s.socket);

    let summary = ok(&cfg, &["queue", "summary"]);
    assert!(summary.contains("messages: 3"), "{summary}");
    assert!(summary.contains(&s.deferred), "{summary}");
    assert!(summary.contains(GREYLISTED), "{summary}");
    assert!(summary.contains(REFUSED_BY_RECEIVER), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.split_whitespace().eq(["deferred", "3"])),
        "{summary}"
    );
    assert_eq!(
        ok_json(&cfg, &["queue", "summary", "--json"])["messages"],
        3
    );

    let list = ok(&cfg, &["queue", "list"]);
    assert!(list.starts_with("ID "), "{list}");
    for id in [&s.deferred, &s.inbound, &s.outbound] {
        assert!(list.contains(id.as_str()), "{id} in {list}");
    }
    let page = ok_json(
        &cfg,
        &["queue", "list", "--domain", "open.example", "--json"],
    );
    assert_eq!(ids(&page), vec![s.inbound.clone()]);
    let first = ok(&cfg, &["queue", "list", "--limit", "1"]);
    assert!(
        first.contains(&format!("more: --cursor {}", s.deferred)),
        "{first}"
    );
    let second = ok_json(
        &cfg,
        &[
            "queue",
            "list",
            "--limit",
            "1",
            "--cursor",
            &s.deferred,
            "--json",
        ],
    );
    assert_eq!(ids(&second), vec![s.inbound.clone()]);
    let filtered = ok_json(
        &cfg,
        &[
            "queue",
            "list",
            "--state",
            "deferred",
            "--min-age",
            "1h",
            "--reason",
            "greylist",
            "--sender",
            "carol@open.example",
            "--tenant",
            "acme",
            "--json",
        ],
    );
    assert_eq!(ids(&filtered), vec![s.deferred.clone()]);
    let deferred = ok_json(&cfg, &["queue", "list", "--state", "deferred", "--json"]);
    assert_eq!(
        ids(&deferred),
        vec![s.deferred.clone(), s.inbound.clone(), s.outbound.clone()]
    );

    let shown = ok(&cfg, &["queue", "show", &s.deferred]);
    for want in [
        "carol@open.example",
        "dave@refusing.test",
        "mx1.refusing.test [192.0.2.25]",
        "TLSv1.3 TLS13_AES_256_GCM_SHA384, authenticated: dane",
        GREYLISTED,
        "outbound default for open.example",
    ] {
        assert!(shown.contains(want), "{want} in {shown}");
    }
    let shown = ok(&cfg, &["queue", "show", &s.inbound]);
    assert!(shown.contains(REFUSED_BY_RECEIVER), "{shown}");
    let shown = ok_json(&cfg, &["queue", "show", &s.inbound, "--json"]);
    assert_eq!(shown["recipients"][0]["address"], "bob@open.example");
    assert_eq!(
        shown["recipients"][0]["attempts"][0]["reason"],
        REFUSED_BY_RECEIVER
    );

    // Released and retried mail is attempted again and deferred again.
    assert_eq!(ok(&cfg, &["queue", "hold", &s.inbound]), "1 message held\n");
    assert_eq!(
        ok_json(&cfg, &["queue", "release", "--state", "held", "--json"])["touched"],
        1
    );
    deferred_again(&c, &s.inbound, 1).await;
    assert_eq!(
        ok(&cfg, &["queue", "retry", &s.deferred]),
        "1 message scheduled for retry now\n"
    );
    deferred_again(&c, &s.deferred, 1).await;
    assert_eq!(
        ok(
            &cfg,
            &[
                "queue",
                "bounce",
                &s.outbound,
                "--bounce-reason",
                "cancelled"
            ]
        ),
        "1 message bounced\n"
    );
    let dsn = dsn_deferred(&c, &s.outbound).await;
    let shown = ok(&cfg, &["queue", "show", &dsn]);
    assert!(shown.contains("carol@open.example"), "{shown}");
    assert_eq!(
        ok(
            &cfg,
            &["queue", "hold", "--recipient", "dave@refusing.test"]
        ),
        "1 message held\n"
    );

    // Refusals: everything without --all, an unknown id, a bad filter,
    // an id together with a filter (a usage error).
    let (code, _, stderr) = run_cli(&cfg, &["queue", "delete"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--all"), "{stderr}");
    let (code, _, stderr) = run_cli(&cfg, &["queue", "show", "00000000000000ff"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no message 00000000000000ff"), "{stderr}");
    let (code, _, stderr) = run_cli(&cfg, &["queue", "show", &s.outbound]);
    assert_eq!(code, Some(1), "bounced and done");
    assert!(
        stderr.contains(&format!("no message {}", s.outbound)),
        "{stderr}"
    );
    let (code, _, stderr) = run_cli(&cfg, &["queue", "list", "--state", "lost"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown state `lost`"), "{stderr}");
    let (code, _, _) = run_cli(&cfg, &["queue", "delete", &s.deferred, "--tenant", "acme"]);
    assert_eq!(code, Some(2));

    // The engine's destinations, with the queued counts.
    let destinations = ok(&cfg, &["destinations"]);
    assert!(destinations.starts_with("DESTINATION "), "{destinations}");
    let route_ip = s.peers.receiver.addr.ip().to_string();
    let row = |name: &str| -> Vec<&str> {
        destinations
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {destinations}"))
            .split_whitespace()
            .collect()
    };
    // DESTINATION QUEUED MX ...: inbound and the DSN by the route.
    assert_eq!(
        row("inbound:open.example")[..3],
        ["inbound:open.example", "2", route_ip.as_str()],
        "{destinations}"
    );
    for (name, error) in [
        ("faraway.test", FARAWAY_DNS_FAILED),
        ("refusing.test", REFUSING_DNS_FAILED),
    ] {
        let line = row(name).join(" ");
        assert!(
            line.contains(" more ") && line.contains(error),
            "backoff and last error of {name} in {destinations}"
        );
    }
    let json = ok_json(&cfg, &["destinations", "--json"]);
    assert_eq!(json["queued_recipients"]["refusing.test"], 1, "{json}");
    let names: Vec<&str> = json["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for name in ["inbound:open.example", "faraway.test", "refusing.test"] {
        assert!(names.contains(&name), "{name} in {json}");
    }

    let reloaded = ok(&cfg, &["reload"]);
    assert!(reloaded.contains("generation 2"), "{reloaded}");
    assert_eq!(ok_json(&cfg, &["reload", "--json"])["generation"], 3);
    let good = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(
        &cfg,
        format!("{good}\n[defaults]\noutbound = {{ level = \"never\" }}\n"),
    )
    .expect("write");
    // The broken file is also the CLI's own configuration: name the socket.
    let socket = s.socket.to_str().expect("utf-8");
    let (code, _, stderr) = run_cli(&cfg, &["reload", "--socket", socket]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("never"),
        "{stderr}"
    );
    std::fs::write(&cfg, good).expect("write");

    // --socket instead of the configuration's path: the held one, inbound
    // and the DSN.
    let deleted = ok(&cfg, &["queue", "delete", "--all", "--socket", socket]);
    assert_eq!(deleted, "3 messages deleted\n");

    // Not running: a clear message and exit 1.
    s.sealpost.stop();
    let (code, _, stderr) = run_cli(&cfg, &["queue", "summary"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sealpost is not running"), "{stderr}");
    let (code, _, stderr) = run_cli(&cfg, &["reload"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sealpost is not running"), "{stderr}");
}
