//! Every endpoint of the admin API against a server with deferred mail.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_answers_every_endpoint() {
    let metrics_port = free_port();
    let mut s = setup(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\"")).await;
    let c = client(&s.socket);

    // The socket file: private to the server's user.
    let mode = std::fs::metadata(&s.socket)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Summary: everything deferred, for three reasons.
    let summary = get(&c, "/queue/summary").await;
    assert_eq!(summary["messages"], 3, "{summary}");
    assert_eq!(summary["recipients_by_state"]["deferred"], 3, "{summary}");
    for state in ["queued", "active", "held", "failed"] {
        assert_eq!(
            summary["recipients_by_state"][state].as_u64().unwrap_or(0),
            0,
            "{state}: {summary}"
        );
    }
    assert_eq!(summary["messages_by_tenant"]["acme"], 3, "{summary}");
    for destination in ["refusing.test", "inbound:open.example", "faraway.test"] {
        assert_eq!(
            summary["recipients_by_destination"][destination], 1,
            "{destination}: {summary}"
        );
    }
    assert_eq!(summary["oldest"]["id"], s.deferred.as_str(), "{summary}");
    assert!(summary["oldest"]["age_seconds"].as_u64() >= Some(7000));
    let reasons = summary["top_defer_reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 3, "{summary}");
    let reason_count = |want: &dyn Fn(&str) -> bool| {
        reasons
            .iter()
            .filter(|r| r["reason"].as_str().is_some_and(want))
            .map(|r| r["recipients"].as_u64().expect("count"))
            .sum::<u64>()
    };
    assert_eq!(reason_count(&|r| r == GREYLISTED), 1, "{summary}");
    assert_eq!(reason_count(&|r| r == REFUSED_BY_RECEIVER), 1, "{summary}");
    assert_eq!(
        reason_count(&|r| r.contains(FARAWAY_DNS_FAILED)),
        1,
        "{summary}"
    );
    assert_eq!(summary["defer_scan_complete"], true);

    // Listing, filters and cursor pages.
    let all = get(&c, "/queue/messages").await;
    assert_eq!(
        ids(&all),
        vec![s.deferred.clone(), s.inbound.clone(), s.outbound.clone()]
    );
    assert!(all["next_cursor"].is_null());
    let mut walked = Vec::new();
    let mut path = "/queue/messages?limit=1".to_string();
    for _ in 0..10 {
        let page = get(&c, &path).await;
        walked.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/queue/messages?limit=1&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, ids(&all));
    let filters = [
        ("tenant=acme", vec![&s.deferred, &s.inbound, &s.outbound]),
        ("tenant=bank", vec![]),
        ("domain=open.example", vec![&s.inbound]),
        ("recipient=erin%40faraway.test", vec![&s.outbound]),
        (
            "sender=carol%40open.example",
            vec![&s.deferred, &s.outbound],
        ),
        ("state=deferred", vec![&s.deferred, &s.inbound, &s.outbound]),
        ("state=queued", vec![]),
        ("reason=GREYLISTED", vec![&s.deferred, &s.inbound]),
        ("reason=said%3A%20451", vec![&s.inbound]),
        ("reason=faraway.test", vec![&s.outbound]),
        ("min_age=1h", vec![&s.deferred]),
        ("min_age=3h", vec![]),
    ];
    for (query, want) in filters {
        let page = get(&c, &format!("/queue/messages?{query}")).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids(&page), want, "{query}");
    }
    let listed = &all["messages"];
    assert_eq!(listed[0]["recipients"][0]["state"], "deferred");
    assert_eq!(listed[0]["recipients"][0]["last_reason"], GREYLISTED);
    assert_eq!(listed[1]["recipients"][0]["attempts"], 1);
    assert_eq!(
        listed[1]["recipients"][0]["last_reason"],
        REFUSED_BY_RECEIVER
    );

    // One message: envelope, recipient states, attempts with TLS details,
    // the accepted policy and the effective one.
    let shown = get(&c, &format!("/queue/messages/{}", s.deferred)).await;
    assert_eq!(shown["mail_from"], "carol@open.example");
    assert_eq!(shown["tenant"], "acme");
    let rcpt = &shown["recipients"][0];
    assert_eq!(rcpt["address"], "dave@refusing.test");
    assert_eq!(rcpt["state"], "deferred");
    assert!(rcpt["next_attempt_ms"].as_u64().is_some());
    let attempt = &rcpt["attempts"][0];
    assert_eq!(attempt["mx_host"], "mx1.refusing.test");
    assert_eq!(attempt["tls_version"], "TLSv1.3");
    assert_eq!(attempt["cipher"], "TLS13_AES_256_GCM_SHA384");
    assert_eq!(attempt["authentication"], "dane");
    assert_eq!(attempt["result"], "deferred");
    assert_eq!(attempt["reason"], GREYLISTED);
    assert_eq!(shown["accepted_policy"]["level"], "opportunistic");
    assert_eq!(
        shown["accepted_policy"]["explanation"],
        "outbound default for open.example"
    );
    assert_eq!(shown["effective_policy"]["direction"], "outbound");
    assert_eq!(shown["effective_policy"]["managed_domain"], "open.example");
    let inbound = get(&c, &format!("/queue/messages/{}", s.inbound)).await;
    let rcpt = &inbound["recipients"][0];
    assert_eq!(rcpt["destination"], "inbound:open.example");
    assert_eq!(rcpt["state"], "deferred");
    // At least the first retry (5 minutes, less jitter) away.
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    assert!(
        rcpt["next_attempt_ms"].as_u64() > Some(now_ms + 60_000),
        "{inbound}"
    );
    let attempt = &rcpt["attempts"][0];
    assert_eq!(attempt["ip"], "127.0.0.1", "{inbound}");
    assert!(attempt["tls_version"].is_null(), "{inbound}");
    assert_eq!(attempt["result"], "deferred", "{inbound}");
    assert_eq!(attempt["reason"], REFUSED_BY_RECEIVER, "{inbound}");
    assert!(inbound["effective_policy"].is_null());
    assert!(inbound["accepted_policy"]["explanation"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let outbound = get(&c, &format!("/queue/messages/{}", s.outbound)).await;
    let attempt = &outbound["recipients"][0]["attempts"][0];
    assert!(attempt["ip"].is_null(), "no host was reached: {outbound}");
    assert!(
        attempt["reason"]
            .as_str()
            .is_some_and(|r| r.contains(FARAWAY_DNS_FAILED)),
        "{outbound}"
    );

    // Metrics of those attempts: two deferred for acme, the TLS outcome of
    // each connection tried (the metrics follow the queue's record).
    let first_attempts = [
        ("sealpost_messages_deferred_total{tenant=\"acme\"}", 2.0),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"plaintext\"}",
            1.0,
        ),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"refused\"}",
            1.0,
        ),
    ];
    let deadline = Instant::now() + WAIT;
    let mut samples = scrape(&c).await;
    while first_attempts
        .iter()
        .any(|(series, n)| sample(&samples, series) != Some(*n))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples = scrape(&c).await;
    }
    for (series, n) in first_attempts {
        assert_eq!(sample(&samples, series), Some(n), "{series}: {samples:?}");
    }

    // Actions on one message. Released and retried mail is due at once:
    // the engine attempts it again and it is deferred again.
    let one = |id: &str, action: &str| format!("/queue/messages/{id}/{action}");
    assert_eq!(post(&c, &one(&s.inbound, "hold"), "").await["touched"], 1);
    assert_eq!(post(&c, &one(&s.inbound, "hold"), "").await["touched"], 0);
    let held = get(&c, "/queue/messages?state=held").await;
    assert_eq!(ids(&held), vec![s.inbound.clone()]);
    assert_eq!(
        post(&c, &one(&s.inbound, "release"), "").await["touched"],
        1
    );
    let again = deferred_again(&c, &s.inbound, 1).await;
    assert_eq!(
        again["recipients"][0]["attempts"][1]["reason"],
        REFUSED_BY_RECEIVER
    );
    assert_eq!(post(&c, &one(&s.deferred, "retry"), "").await["touched"], 1);
    let again = deferred_again(&c, &s.deferred, 1).await;
    assert!(
        again["recipients"][0]["attempts"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(REFUSING_DNS_FAILED)),
        "{again}"
    );
    let bounced = post(
        &c,
        &one(&s.outbound, "bounce"),
        r#"{"bounce_reason": "cancelled by the customer"}"#,
    )
    .await;
    assert_eq!(bounced["touched"], 1);
    // The engine queues the DSN to carol (open.example, by its route: the
    // refusing receiver defers it) and the bounced message is done.
    let dsn = dsn_deferred(&c, &s.outbound).await;
    assert_eq!(
        refused(&c, Method::POST, &one(&s.outbound, "hold"), None).await,
        404
    );

    // Actions on a filter; one that matches everything needs confirm_all.
    let held = post(&c, "/queue/actions/hold", r#"{"tenant": "acme"}"#).await;
    assert_eq!(held["touched"], 3, "the deferred one, inbound and the DSN");
    let before: Vec<(String, usize)> = {
        let mut v = Vec::new();
        for id in [&s.deferred, &s.inbound, &dsn] {
            let m = get(&c, &format!("/queue/messages/{id}")).await;
            v.push((id.clone(), attempts(&m)));
        }
        v
    };
    let released = post(&c, "/queue/actions/release", r#"{"state": "held"}"#).await;
    assert_eq!(released["touched"], 3);
    for (id, n) in &before {
        deferred_again(&c, id, *n).await;
    }
    // refusing.test is paused after its failed lookup: its mail is
    // deferred without a try.
    let again = get(&c, &format!("/queue/messages/{}", s.deferred)).await;
    assert!(
        again["recipients"][0]["attempts"][2]["reason"]
            .as_str()
            .is_some_and(
                |r| r.starts_with("destination paused until") && r.contains(REFUSING_DNS_FAILED)
            ),
        "{again}"
    );
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/delete", Some("{}")).await,
        400
    );
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/delete", None).await,
        400
    );
    assert_eq!(post(&c, &one(&dsn, "delete"), "").await["touched"], 1);
    let deleted = post(&c, "/queue/actions/delete", r#"{"domain": "open.example"}"#).await;
    assert_eq!(deleted["touched"], 1);
    assert_eq!(
        ids(&get(&c, "/queue/messages").await),
        vec![s.deferred.clone()]
    );

    // Destinations: the engine's, with the queued counts.
    let destinations = get(&c, "/destinations").await;
    let rows = destinations["destinations"].as_array().expect("rows");
    let row = |name: &str| {
        rows.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {destinations}"))
    };
    let inbound_row = row("inbound:open.example");
    let route_ip = s.peers.receiver.addr.ip().to_string();
    assert_eq!(
        inbound_row["mx_hosts"],
        serde_json::json!([route_ip]),
        "{destinations}"
    );
    assert!(inbound_row["last_error"].is_null(), "{destinations}");
    assert!(inbound_row["backoff_until"].is_null(), "{destinations}");
    for (name, error) in [
        ("faraway.test", FARAWAY_DNS_FAILED),
        ("refusing.test", REFUSING_DNS_FAILED),
    ] {
        let row = row(name);
        assert!(
            row["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(error)),
            "{destinations}"
        );
        assert!(row["backoff_until"].as_u64().is_some(), "{destinations}");
        assert_eq!(row["mx_hosts"], serde_json::json!([]), "{destinations}");
    }
    assert_eq!(destinations["queued_recipients"]["refusing.test"], 1);
    assert_eq!(
        destinations["queued_recipients"]
            .as_object()
            .map(|q| q.len()),
        Some(1),
        "{destinations}"
    );
    // A flush clears the backoff (and closes idle connections).
    let flushed = post(&c, "/destinations/refusing.test/flush", "").await;
    assert_eq!(flushed["flushed"], "refusing.test");
    wait_get(&c, "/destinations", |d| {
        d["destinations"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["name"] == "refusing.test" && r["backoff_until"].is_null())
        })
    })
    .await;
    assert_eq!(
        refused(&c, Method::POST, "/destinations/nowhere.test/flush", None).await,
        404
    );

    // Tenants: domains from the configuration, counters from the metrics
    // (which follow the queue's record of each attempt).
    let tenants = wait_get(&c, "/tenants", |t| {
        t["tenants"]
            .as_array()
            .is_some_and(|l| l.iter().any(|t| t["name"] == "acme" && t["deferred"] == 7))
    })
    .await;
    let list = tenants["tenants"].as_array().expect("tenants");
    let acme = list.iter().find(|t| t["name"] == "acme").expect("acme");
    assert_eq!(acme["domains"][0]["name"], "open.example");
    assert_eq!(acme["received"], 2);
    assert_eq!(acme["queued_messages"], 1);
    assert_eq!(acme["bounced"], 1, "{acme}");
    // Deferred attempts: the first two, the release of inbound, the retry,
    // the DSN's, then inbound's and the DSN's after the release of all
    // three (refusing.test was paused: no attempt).
    assert_eq!(acme["deferred"], 7, "{acme}");
    assert_eq!(acme["delivered"], 0, "{acme}");
    // Its tenant actor published the configured limit.
    assert_eq!(acme["max_in_flight"], 3, "{acme}");
    let bank = list.iter().find(|t| t["name"] == "bank").expect("bank");
    assert_eq!(bank["domains"][0]["name"], "strict.example");
    assert_eq!(bank["received"], 0);

    // Policy explain: the same answer as the CLI.
    let explained = get(
        &c,
        "/policy/explain?from=carol%40open.example&to=x%40gmail.com",
    )
    .await;
    let (_, cli, _) = run_cli(
        &s.sealpost.config_path(),
        &[
            "policy",
            "explain",
            "--from",
            "carol@open.example",
            "--to",
            "x@gmail.com",
            "--json",
        ],
    );
    let cli: Value = serde_json::from_str(&cli).expect("CLI JSON");
    assert_eq!(explained, cli);
    assert_eq!(
        refused(&c, Method::GET, "/policy/explain?from=a%40b.example", None).await,
        400
    );
    assert_eq!(
        refused(
            &c,
            Method::GET,
            "/policy/explain?from=a%40open.example&to=b%40c.example&direction=sideways",
            None
        )
        .await,
        400
    );

    // Metrics: on the socket and on the TCP listener, every line parses.
    let answer = call(&c, Method::GET, "/metrics", None).await;
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body).expect("UTF-8");
    let samples = assert_prometheus_text(&text);
    assert_eq!(
        sample(
            &samples,
            "sealpost_messages_received_total{tenant=\"acme\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "sealpost_queue_recipients{state=\"deferred\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "sealpost_queue_recipients{state=\"failed\"}"),
        Some(0.0)
    );
    for (series, n) in [
        ("sealpost_messages_bounced_total{tenant=\"acme\"}", 1.0),
        ("sealpost_messages_deferred_total{tenant=\"acme\"}", 7.0),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"plaintext\"}",
            5.0,
        ),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"refused\"}",
            2.0,
        ),
    ] {
        assert_eq!(sample(&samples, series), Some(n), "{series}");
    }
    assert_eq!(
        sample(
            &samples,
            "sealpost_messages_delivered_total{tenant=\"acme\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &samples,
            "sealpost_delivery_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(0.0)
    );
    assert_eq!(sample(&samples, "sealpost_config_generation"), Some(1.0));
    let tcp = tcp_request(metrics_port, "GET /metrics HTTP/1.1").await;
    assert!(tcp.starts_with("HTTP/1.1 200"), "{tcp}");
    let body = tcp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_prometheus_text(body);
    assert!(body.contains("sealpost_messages_received_total{tenant=\"acme\"} 2"));
    let tcp = tcp_request(metrics_port, "POST /metrics HTTP/1.1").await;
    assert!(tcp.starts_with("HTTP/1.1 405"), "{tcp}");
    let tcp = tcp_request(metrics_port, "GET /queue/summary HTTP/1.1").await;
    assert!(tcp.starts_with("HTTP/1.1 404"), "{tcp}");

    // Bad input: 4xx with a JSON error, and the server keeps answering.
    let unknown = "00000000000000ff";
    let bad = [
        (
            Method::GET,
            "/queue/messages/not-an-id".to_string(),
            None,
            400,
        ),
        (Method::GET, format!("/queue/messages/{unknown}"), None, 404),
        (Method::POST, one(unknown, "hold"), None, 404),
        (Method::POST, one(&s.deferred, "explode"), None, 404),
        (
            Method::POST,
            one(&s.deferred, "hold"),
            Some("{not json"),
            400,
        ),
        (
            Method::POST,
            one(&s.deferred, "hold"),
            Some(r#"{"bounce_reason": "x"}"#),
            400,
        ),
        (Method::GET, "/queue/messages?state=lost".into(), None, 400),
        (Method::GET, "/queue/messages?colour=red".into(), None, 400),
        (
            Method::GET,
            "/queue/messages?min_age=soon".into(),
            None,
            400,
        ),
        (Method::GET, "/queue/messages?limit=0".into(), None, 400),
        (Method::GET, "/queue/messages?cursor=zz".into(), None, 400),
        (
            Method::GET,
            "/queue/messages?recipient=a%40b.example&domain=b.example".into(),
            None,
            400,
        ),
        (Method::GET, "/queue/messages?tenant=%zz".into(), None, 400),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some("[1, 2"),
            400,
        ),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some(r#"{"tenant": "acme", "colour": "red"}"#),
            400,
        ),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some(r#"{"state": "lost"}"#),
            400,
        ),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some(r#"{"confirm_all": "yes"}"#),
            400,
        ),
        (Method::GET, "/nowhere".into(), None, 404),
        (Method::DELETE, "/queue/summary".into(), None, 405),
        (Method::GET, "/reload".into(), None, 405),
    ];
    for (method, path, body, status) in bad {
        assert_eq!(
            refused(&c, method.clone(), &path, body).await,
            status,
            "{method} {path} {body:?}"
        );
    }
    let huge = format!("{{\"tenant\": \"{}\"}}", "a".repeat(100_000));
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/hold", Some(&huge)).await,
        413
    );

    // The same cap without a Content-Length (chunked), and garbage instead
    // of HTTP: refused, the server carries on.
    let mut chunked =
        b"POST /queue/actions/hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 30_000).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 30_000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_request(&s.socket, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    let answer = raw_request(&s.socket, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // A client that sends half a request and stalls does not block others.
    let mut stalled = tokio::net::UnixStream::connect(&s.socket)
        .await
        .expect("connect");
    stalled
        .write_all(b"GET /queue/summary HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut stalled_body = tokio::net::UnixStream::connect(&s.socket)
        .await
        .expect("connect");
    stalled_body
        .write_all(
            b"POST /queue/actions/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ten",
        )
        .await
        .expect("write");
    assert_eq!(get(&c, "/queue/summary").await["messages"], 1);
    drop(stalled);
    drop(stalled_body);

    // SIGTERM: the socket file goes away with the server.
    s.sealpost.stop();
    assert!(!s.socket.exists(), "the socket file is removed at shutdown");
}
