//! The web console over HTTPS against the real `sealpost serve`: sign-in
//! (rotated Secure/HttpOnly/SameSite=Strict cookie, equal answers for
//! unknown users, limits), CSRF tokens, idle timeout, security headers;
//! every route; one test per authorization rule (a tenant administrator
//! of acme cannot read or change beta's domains, peers, queue or audit
//! records; only operators change the default for unspecified domains);
//! changes written through the admin API's path (tenant file, audit log,
//! live policy); a bad peer pattern refused next to its field.
mod support;

#[path = "console/client.rs"]
mod client;
#[path = "console/setup.rs"]
mod setup;

use std::time::Duration;

use setup::{start, ALICE, BOB, OPERATOR};
use support::sealpost::NO_DNS;

/// Every `<script` on a page loads a file: no inline script.
fn no_inline_script(body: &str) -> bool {
    body.match_indices("<script").all(|(i, _)| {
        let tag_end = body[i..].find('>').map_or(body.len(), |e| i + e);
        body[i..tag_end].contains("src=\"/static/")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_rotates_a_secure_cookie_and_pages_carry_security_headers() {
    let console = start(NO_DNS, "30m");
    let mut c = console.client();
    let page = c.get("/domains").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login");

    let login = c.get("/login").await;
    assert_eq!(login.status, 200);
    let cookie = login.header("set-cookie").to_owned();
    for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let csp = login.header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(login
        .header("strict-transport-security")
        .contains("max-age="));
    assert_eq!(login.header("x-frame-options"), "DENY");
    assert!(no_inline_script(&login.body), "{}", login.body);
    let before = c.cookies["sealpost_console"].clone();

    let answer = c
        .post(
            "/login",
            &[
                ("user", ALICE.0),
                ("password", ALICE.1),
                ("csrf", &login.csrf()),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), "/domains");
    let after = c.cookies["sealpost_console"].clone();
    assert_ne!(before, after, "a new session token at sign-in");

    let domains = c.get("/domains").await;
    assert_eq!(domains.status, 200);
    assert!(domains.body.contains("acme.test"), "{}", domains.body);
    assert!(no_inline_script(&domains.body));
    assert_eq!(domains.header("cache-control"), "no-store");
    assert_eq!(c.get("/").await.header("location"), "/domains");

    // The token that carried the sign-in form is worth nothing now.
    let mut planted = console.client();
    planted
        .cookies
        .insert("sealpost_console".into(), before.clone());
    assert_eq!(planted.get("/domains").await.status, 303);

    for (path, kind) in [
        ("/static/console.css", "text/css"),
        ("/static/console.js", "text/javascript"),
    ] {
        let asset = c.get(path).await;
        assert_eq!(asset.status, 200, "{path}");
        assert!(asset.header("content-type").starts_with(kind));
    }

    // Sign out: the session ends.
    let csrf = domains.csrf();
    let out = c.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let mut old = console.client();
    old.cookies.insert("sealpost_console".into(), after);
    assert_eq!(old.get("/domains").await.header("location"), "/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_users_and_wrong_passwords_get_one_answer_and_sign_in_is_limited() {
    let console = start(NO_DNS, "30m");
    let mut c = console.client();
    let unknown = c.sign_in("mallory", "guess").await;
    let wrong = c.sign_in(ALICE.0, "guess").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.status, 401);
    let message = |p: &client::Page| {
        let start = p.body.find(r#"class="error""#).expect("an error");
        p.body[start..start + 80].to_owned()
    };
    assert_eq!(message(&unknown), message(&wrong));
    // Five failures from this address: even the right password waits.
    for _ in 0..3 {
        assert_eq!(c.sign_in(ALICE.0, "guess").await.status, 401);
    }
    let limited = c.sign_in(ALICE.0, ALICE.1).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.body.contains("Too many failed sign-ins"));
    assert_eq!(c.sign_in(BOB.0, BOB.1).await.status, 429, "per address");
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_the_sessions_csrf_token_are_refused() {
    let console = start(NO_DNS, "30m");
    let mut c = console.client();
    assert_eq!(c.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let file = console.tenant_file("acme");
    for csrf in ["", "0000"] {
        let answer = c
            .post("/domains/acme.test/disable", &[("csrf", csrf)])
            .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
    }
    // Another session's token is not this session's.
    let mut other = console.client();
    assert_eq!(other.sign_in(OPERATOR.0, OPERATOR.1).await.status, 303);
    let theirs = other.get("/domains").await.csrf();
    let answer = c
        .post("/domains/acme.test/disable", &[("csrf", &theirs)])
        .await;
    assert_eq!(answer.status, 403);
    // No sign-in without the sign-in form's token either.
    let mut fresh = console.client();
    let answer = fresh
        .post("/login", &[("user", ALICE.0), ("password", ALICE.1)])
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(console.tenant_file("acme"), file);
    assert!(console.audit().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ends_after_the_idle_timeout() {
    let console = start(NO_DNS, "2s");
    let mut c = console.client();
    assert_eq!(c.sign_in(ALICE.0, ALICE.1).await.status, 303);
    assert_eq!(c.get("/domains").await.status, 200);
    // Idle for longer than the timeout (a wait for time to pass).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let page = c.get("/domains").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_cannot_read_another_tenants_domains_or_peers() {
    let console = start(NO_DNS, "30m");
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let list = alice.get("/domains").await;
    assert!(list.body.contains("acme.test"));
    assert!(!list.body.contains("beta.test"), "{}", list.body);
    let missing = alice.get("/domains/nowhere.test").await;
    assert_eq!(missing.status, 404);
    for path in [
        "/domains/beta.test",
        "/domains/BETA.test.",
        "/domains/beta.test/peers/outbound/secret-partner.example/edit",
    ] {
        let page = alice.get(path).await;
        assert_eq!(page.status, 404, "{path}");
        assert_eq!(
            page.body, missing.body,
            "{path}: the same answer as nothing"
        );
        assert!(!page.body.contains("secret-partner"));
    }
    // The operator reads it.
    let mut ops = console.client();
    assert_eq!(ops.sign_in(OPERATOR.0, OPERATOR.1).await.status, 303);
    let page = ops.get("/domains/beta.test").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("secret-partner.example"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_cannot_change_another_tenants_domains_or_peers() {
    let console = start(NO_DNS, "30m");
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let csrf = alice.get("/domains").await.csrf();
    let beta = console.tenant_file("beta");
    let peer = "/domains/beta.test/peers/outbound/secret-partner.example";
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/domains/beta.test/disable".into(), vec![]),
        (
            "/domains/beta.test/defaults/outbound".into(),
            vec![("level", "opportunistic"), ("min_tls", "any")],
        ),
        (
            "/domains/beta.test/peers/outbound".into(),
            vec![
                ("peer", "x.example"),
                ("level", "mandatory"),
                ("min_tls", "any"),
            ],
        ),
        (
            peer.into(),
            vec![("level", "opportunistic"), ("min_tls", "any")],
        ),
        (format!("{peer}/disable"), vec![]),
        (format!("{peer}/delete"), vec![]),
        (format!("{peer}/probe"), vec![]),
    ];
    for (path, mut form) in attempts {
        form.push(("csrf", &csrf));
        let answer = alice.post(&path, &form).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
    }
    assert_eq!(console.tenant_file("beta"), beta, "nothing written");
    assert!(console.audit().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_cannot_see_another_tenants_queue() {
    let console = start(NO_DNS, "30m");
    // Inbound mail for each tenant waits (no downstream route).
    for to in ["carol@acme.test", "dave@beta.test"] {
        support::sealpost::submit(
            console.sealpost.smtp,
            "x@sender.example",
            &[to],
            b"Subject: t\r\n\r\nhi\r\n",
        )
        .await
        .expect("queued");
    }
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let page = alice.get("/activity").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("carol@acme.test"), "{}", page.body);
    assert!(!page.body.contains("dave@beta.test"), "{}", page.body);
    let mut ops = console.client();
    assert_eq!(ops.sign_in(OPERATOR.0, OPERATOR.1).await.status, 303);
    let page = ops.get("/activity").await;
    assert!(page.body.contains("carol@acme.test") && page.body.contains("dave@beta.test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_cannot_see_another_tenants_audit_records() {
    let console = start(NO_DNS, "30m");
    let mut bob = console.client();
    assert_eq!(bob.sign_in(BOB.0, BOB.1).await.status, 303);
    let peer = "/domains/beta.test/peers/outbound/secret-partner.example/disable";
    let answer = bob.submit("/domains/beta.test", peer, &[]).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let audit = console.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["user"], "bob");
    assert_eq!(audit[0]["tenant"], "beta");

    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let page = alice.get("/activity").await;
    assert!(page.body.contains("No changes recorded."), "{}", page.body);
    assert!(!page.body.contains("bob") && !page.body.contains("beta.test"));
    let mut ops = console.client();
    assert_eq!(ops.sign_in(OPERATOR.0, OPERATOR.1).await.status, 303);
    let page = ops.get("/activity").await;
    assert!(
        page.body.contains("peers edit") && page.body.contains("bob"),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_operators_see_and_change_the_default_for_unspecified_domains() {
    let console = start(NO_DNS, "30m");
    let main = std::fs::read_to_string(console.sealpost.config_path()).expect("main");
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let page = alice.get("/domains").await;
    assert!(
        !page.body.contains(r#"id="global-outbound""#),
        "{}",
        page.body
    );
    let answer = alice
        .post(
            "/defaults/outbound",
            &[
                ("level", "mandatory"),
                ("min_tls", "1.2"),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        std::fs::read_to_string(console.sealpost.config_path()).expect("main"),
        main
    );

    let mut ops = console.client();
    assert_eq!(ops.sign_in(OPERATOR.0, OPERATOR.1).await.status, 303);
    let page = ops.get("/domains").await;
    assert!(page.body.contains(r#"id="global-outbound""#));
    assert!(page.body.contains("beta.test") && page.body.contains("acme.test"));
    let answer = ops
        .submit(
            "/domains",
            "/defaults/outbound",
            &[("level", "mandatory"), ("min_tls", "1.2")],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let main = std::fs::read_to_string(console.sealpost.config_path()).expect("main");
    assert!(
        main.contains(r#"outbound = { level = "mandatory", min_tls = "1.2" }"#),
        "{main}"
    );
    let page = ops.get("/domains").await;
    assert!(
        page.body
            .contains(r#"id="global-outbound-current">Mandatory TLS, TLS 1.2<"#),
        "{}",
        page.body
    );
    let audit = console.audit();
    assert_eq!(audit.last().expect("a record")["tenant"], "(defaults)");
    assert_eq!(audit.last().expect("a record")["user"], "ops");
    // A level that does not exist inbound is refused next to its field.
    let answer = ops
        .submit(
            "/domains",
            "/defaults/inbound",
            &[("level", "mandatory-dane"), ("min_tls", "any")],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(
        answer.body.contains(r#"id="global-inbound-level-error""#),
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_are_added_edited_disabled_and_deleted_through_the_admin_path() {
    let console = start(NO_DNS, "30m");
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let page = alice.get("/domains/acme.test").await;
    assert_eq!(page.status, 200);
    // The inbound form offers no outbound-only level.
    let inbound = &page.body[page.body.find(r#"id="add-inbound""#).expect("inbound form")..];
    let select = &inbound[..inbound.find("</select>").expect("select")];
    assert!(
        select.contains("Mandatory TLS") && !select.contains("outbound only"),
        "{select}"
    );
    for word in [
        "TLS 1.3",
        "TLS 1.2",
        "No restriction",
        "Mandatory DANE TLS (outbound only)",
        "MTA-STS (outbound only)",
    ] {
        assert!(page.body.contains(word), "{word}");
    }

    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/outbound",
            &[
                ("peer", "bank.example"),
                ("level", "mandatory-dane"),
                ("min_tls", "1.3"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let file = console.tenant_file("acme");
    assert!(
        file.contains("# acme's domain") && file.contains("bank.example"),
        "{file}"
    );
    let row = |body: &str| {
        let start = body.find(r#"data-peer="bank.example""#)?;
        Some(body[start..start + body[start..].find("</tr>")?].to_owned())
    };
    let page = alice.get("/domains/acme.test").await;
    let r = row(&page.body).expect("the new row");
    assert!(
        r.contains("Mandatory DANE TLS (outbound only)") && r.contains("TLS 1.3"),
        "{r}"
    );
    assert!(
        r.contains("Enabled") && r.contains("(this peer&#39;s entry)"),
        "{r}"
    );

    let peer = "/domains/acme.test/peers/outbound/bank.example";
    let answer = alice
        .submit("/domains/acme.test", &format!("{peer}/disable"), &[])
        .await;
    assert_eq!(answer.status, 303);
    let r = row(&alice.get("/domains/acme.test").await.body).expect("row");
    assert!(r.contains("Disabled"), "{r}");
    assert!(
        r.contains("Opportunistic TLS, No restriction (this entry is disabled"),
        "{r}"
    );

    let edit = alice.get(&format!("{peer}/edit")).await;
    assert_eq!(edit.status, 200);
    let answer = alice
        .submit(
            &format!("{peer}/edit"),
            peer,
            &[
                ("level", "mandatory"),
                ("min_tls", "1.2"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let r = row(&alice.get("/domains/acme.test").await.body).expect("row");
    assert!(
        r.contains("Mandatory TLS") && r.contains("TLS 1.2") && r.contains("Enabled"),
        "{r}"
    );

    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/defaults/inbound",
            &[("level", "mandatory"), ("min_tls", "1.2")],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let page = alice.get("/domains/acme.test").await;
    assert!(
        page.body
            .contains(r#"id="default-inbound-current">Mandatory TLS, TLS 1.2<"#),
        "{}",
        page.body
    );
    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/defaults/inbound/remove",
            &[],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let page = alice.get("/domains/acme.test").await;
    let want = r#"id="default-inbound-current">Opportunistic TLS, No restriction (the default for unspecified domains)<"#;
    assert!(page.body.contains(want), "{}", page.body);

    let answer = alice
        .submit("/domains/acme.test", &format!("{peer}/delete"), &[])
        .await;
    assert_eq!(answer.status, 303);
    assert!(row(&alice.get("/domains/acme.test").await.body).is_none());
    assert!(!console.tenant_file("acme").contains("bank.example"));

    let answer = alice
        .submit("/domains", "/domains/acme.test/disable", &[])
        .await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), "/domains");
    let page = alice.get("/domains").await;
    assert!(
        page.body.contains(r#"<td class="status">Disabled</td>"#),
        "{}",
        page.body
    );

    let changes: Vec<String> = console
        .audit()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["user"].as_str().unwrap_or(""),
                r["change"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "alice peers add",
            "alice peers edit",
            "alice peers edit",
            "alice domains defaults",
            "alice domains defaults",
            "alice peers remove",
            "alice domains disable"
        ]
    );
    let activity = alice.get("/activity").await;
    assert!(activity.body.contains("peers remove"), "{}", activity.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_peer_pattern_is_shown_next_to_its_field_and_nothing_is_written() {
    let console = start(NO_DNS, "30m");
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let file = console.tenant_file("acme");
    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/outbound",
            &[
                ("peer", "bad..example"),
                ("level", "mandatory"),
                ("min_tls", "any"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(
        answer.body.contains(r#"id="add-outbound-peer-error""#),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains(r#"value="bad..example""#),
        "what was typed stays"
    );
    // A level that does not apply inbound, posted by hand.
    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/inbound",
            &[
                ("peer", "192.0.2.0/24"),
                ("level", "mandatory-dane"),
                ("min_tls", "any"),
            ],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(
        answer.body.contains(r#"id="add-inbound-level-error""#),
        "{}",
        answer.body
    );
    assert_eq!(console.tenant_file("acme"), file);
    assert!(console.audit().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_peer_is_probed_on_demand() {
    use std::sync::Arc;
    use support::outbound::{dest_dns, dest_mx};
    let dns = dest_dns().await;
    let mx_port = support::sealpost::free_port();
    let _mx = dest_mx(mx_port, None, Arc::new(support::smtp::accept_all)).await;
    let extra = format!(
        "[delivery]\nsmtp_port = {mx_port}\n\n{}",
        support::sealpost::dns_section(&dns.settings())
    );
    let console = start(&extra, "30m");
    let mut alice = console.client();
    assert_eq!(alice.sign_in(ALICE.0, ALICE.1).await.status, 303);
    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/outbound",
            &[
                ("peer", "dest.test"),
                ("level", "mandatory"),
                ("min_tls", "any"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let page = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/outbound/dest.test/probe",
            &[],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let start = page
        .body
        .find("Probe of dest.test")
        .expect("the probe's result");
    let result = &page.body[start..];
    assert!(result.contains("mx.dest.test"), "{result}");
    // Inbound peers have no probe.
    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/inbound",
            &[
                ("peer", "192.0.2.7"),
                ("level", "mandatory"),
                ("min_tls", "any"),
            ],
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let answer = alice
        .submit(
            "/domains/acme.test",
            "/domains/acme.test/peers/inbound/192.0.2.7/probe",
            &[],
        )
        .await;
    assert_eq!(answer.status, 404);
}
