//! The console in a real headless browser (Debian's `chromium` over
//! WebDriver): a tenant administrator adds an outbound peer with Mandatory
//! DANE TLS and TLS 1.3, sees the mail to it wait, disables the peer, sees
//! the policy in force change, and the next SMTP delivery through
//! `sealpost serve` follows it; an operator changes the default for
//! unspecified domains; a bad peer pattern is shown next to its field and
//! the tenant file is unchanged. Each page's screenshot is saved in
//! `docs/console/` for `docs/console.md`. Skipped (with a note) when
//! chromium or chromedriver is not installed.
mod support;

#[path = "console/browser.rs"]
mod browser;
#[path = "console/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "console/setup.rs"]
#[allow(dead_code)]
mod setup;

use std::sync::Arc;

use browser::Browser;
use setup::{start, ALICE, OPERATOR};
use support::outbound::{deferred_events, delivered_event, dest_dns, dest_mx, submit, until, WAIT};
use support::sealpost::{dns_section, free_port};
use support::smtp::accept_all;

fn skip() -> bool {
    if browser::available() {
        return false;
    }
    eprintln!("skipped: chromium and chromium-driver are not installed (see .ci/run)");
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_adds_and_disables_a_peer_and_delivery_follows() {
    if skip() {
        return;
    }
    let dns = dest_dns().await;
    let mx_port = free_port();
    let mx = dest_mx(mx_port, None, Arc::new(accept_all)).await;
    let extra = format!(
        "[delivery]\nsmtp_port = {mx_port}\nfirst_retry = \"1s\"\nmax_retry_interval = \"2s\"\ndestination_backoff = \"1s\"\nmax_destination_backoff = \"1s\"\n\n{}",
        dns_section(&dns.settings())
    );
    let console = start(&extra, "30m");
    let b = Browser::start(console.addr).await;

    b.goto("/login").await;
    b.screenshot("sign-in").await;
    b.sign_in(ALICE.0, ALICE.1).await;
    b.screenshot("domains").await;

    b.goto("/domains/acme.test").await;
    b.type_into("#add-outbound-peer", "dest.test").await;
    b.choose("#add-outbound-level", "mandatory-dane").await;
    b.choose("#add-outbound-min_tls", "1.3").await;
    b.click("#add-outbound button[type=submit]").await;
    let row = r#"tr[data-peer="dest.test"]"#;
    b.wait_text(
        &format!("{row} .level"),
        "Mandatory DANE TLS (outbound only)",
    )
    .await;
    assert_eq!(b.text(&format!("{row} .min-tls")).await, "TLS 1.3");
    assert!(b
        .text(&format!("{row} .effective"))
        .await
        .starts_with("Mandatory DANE TLS (outbound only), TLS 1.3"));
    b.screenshot("domain").await;

    // Mail to it waits: dest.test publishes no TLSA records.
    submit(console.sealpost.smtp, "a@acme.test", "one@dest.test").await;
    deferred_events(&console.sealpost, "one@dest.test", 1).await;
    assert_eq!(mx.mails(), 0);

    b.click(&format!("{row} form[action$='/disable'] button"))
        .await;
    b.wait_text(&format!("{row} .status"), "Disabled").await;
    b.wait_text(
        &format!("{row} .effective"),
        "Opportunistic TLS, No restriction (this entry is disabled",
    )
    .await;
    // The next attempt of the queued message follows the new rule.
    let delivered = delivered_event(&console.sealpost, "one@dest.test").await;
    assert!(until(WAIT, || mx.mails() == 1).await, "{delivered}");

    b.goto("/domains/acme.test/peers/outbound/dest.test/edit")
        .await;
    b.screenshot("edit-peer").await;
    // The activity page counts the delivery (in cleartext: dest.test's
    // server offers no STARTTLS) and the attempt the DANE rule refused.
    let outcome =
        |column: usize| format!(r#"#outcomes tr[data-peer="dest.test"] td:nth-child({column})"#);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        b.goto("/activity").await;
        if b.has(&outcome(5)).await && b.text(&outcome(5)).await == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery counted for dest.test: {}",
            b.text("#outcomes").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for (column, with) in [(2, "DANE"), (3, "MTA-STS"), (4, "TLS")] {
        assert_eq!(b.text(&outcome(column)).await, "0", "delivered with {with}");
    }
    let refused: u64 = b
        .text(&outcome(6))
        .await
        .parse()
        .expect("a count of refusals");
    assert!(refused >= 1, "the DANE refusal is counted");
    let changes = b.text("#audit").await;
    assert!(
        changes.contains("peers add") && changes.contains("alice"),
        "{changes}"
    );
    b.screenshot("activity").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_changes_the_default_for_unspecified_domains() {
    if skip() {
        return;
    }
    let console = start(support::sealpost::NO_DNS, "30m");
    let b = Browser::start(console.addr).await;
    b.sign_in(OPERATOR.0, OPERATOR.1).await;
    assert_eq!(
        b.text("#global-outbound-current").await,
        "Opportunistic TLS, No restriction"
    );
    b.choose("#global-outbound-level", "mandatory").await;
    b.choose("#global-outbound-min_tls", "1.2").await;
    b.click("#global-outbound button[type=submit]").await;
    b.wait_text("#global-outbound-current", "Mandatory TLS, TLS 1.2")
        .await;
    let main = std::fs::read_to_string(console.sealpost.config_path()).expect("main file");
    assert!(
        main.contains(r#"outbound = { level = "mandatory", min_tls = "1.2" }"#),
        "{main}"
    );
    b.screenshot("operator-domains").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_peer_pattern_shows_an_error_and_the_tenant_file_is_unchanged() {
    if skip() {
        return;
    }
    let console = start(support::sealpost::NO_DNS, "30m");
    let file = console.tenant_file("acme");
    let b = Browser::start(console.addr).await;
    b.sign_in(ALICE.0, ALICE.1).await;
    b.goto("/domains/acme.test").await;
    b.type_into("#add-outbound-peer", "bad..example").await;
    b.click("#add-outbound button[type=submit]").await;
    let error = b.wait_text("#add-outbound-peer-error", "").await;
    assert!(!error.is_empty(), "an error next to the peer field");
    assert_eq!(console.tenant_file("acme"), file);
    b.screenshot("bad-peer").await;
    b.stop().await;
}
