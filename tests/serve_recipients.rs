//! Valid-recipient lists through the real binary: `[[domains]] recipients`
//! files give unknown local parts `550 5.1.1`, `postmaster` is always
//! accepted, SIGHUP re-reads the files (a broken file keeps the list in
//! force), and `config check` names a bad line by file and line.
mod support;

use std::time::Duration;

use support::sealpost::{greet, run_cli, server_head, Sealpost, NO_DNS};
use support::smtp::{code, command};

fn config(port: u16) -> String {
    format!(
        r#"
{head}
{NO_DNS}
[[domains]]
name = "listed.example"
tenant = "acme"
recipients = "listed.txt"

[[domains]]
name = "open.example"
tenant = "acme"

[[domains]]
name = "off.example"
tenant = "acme"
enabled = false
recipients = "listed-off.txt"
"#,
        head = server_head(port)
    )
}

/// One transaction's RCPT replies (`CODE X.Y.Z`), then RSET.
async fn rcpt_codes(server: &Sealpost, recipients: &[&str]) -> Vec<String> {
    let (mut tcp, _) = greet(server.smtp).await;
    assert_eq!(
        command(&mut tcp, "MAIL FROM:<someone@sender.test>")
            .await
            .code,
        250
    );
    let mut codes = Vec::new();
    for rcpt in recipients {
        let answer = command(&mut tcp, &format!("RCPT TO:<{rcpt}>")).await;
        if answer.code == 550 {
            assert_eq!(
                answer.lines[0],
                format!("<{rcpt}>: Recipient address rejected: user unknown"),
                "{answer:?}"
            );
        }
        codes.push(code(&answer));
    }
    command(&mut tcp, "QUIT").await;
    codes
}

#[tokio::test]
async fn unknown_local_parts_are_refused_and_sighup_rereads_the_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("listed.txt");
    std::fs::write(&list, "# staff\nalice\nBob@listed.example\n").expect("write");
    std::fs::write(dir.path().join("listed-off.txt"), "x\n").expect("write");
    let mut server = Sealpost::start_in(dir, config);

    let table = [
        ("alice@listed.example", "250 2.1.5"),
        ("ALICE@Listed.Example", "250 2.1.5"),
        ("bob@listed.example", "250 2.1.5"),
        ("carol@listed.example", "550 5.1.1"),
        ("PostMaster@listed.example", "250 2.1.5"),
        ("anyone@open.example", "250 2.1.5"),
        // A disabled domain is not ours at all: relay denied, not 550.
        ("carol@off.example", "554 5.7.1"),
    ];
    let (rcpts, want): (Vec<&str>, Vec<&str>) = table.iter().copied().unzip();
    assert_eq!(rcpt_codes(&server, &rcpts).await, want);

    // Add carol and reload.
    std::fs::write(&list, "alice\nBob@listed.example\ncarol\n").expect("write");
    server.signal("-HUP");
    let mut got = Vec::new();
    for _ in 0..500 {
        got = rcpt_codes(&server, &["carol@listed.example"]).await;
        if got == ["250 2.1.5"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got, ["250 2.1.5"], "carol is listed after SIGHUP");

    // A broken list on reload: the configuration in force stays.
    std::fs::write(&list, "alice\nnot valid\n").expect("write");
    server.signal("-HUP");
    let failed = "reload failed; the configuration and certificates in force stay";
    assert!(
        server.wait_for(Duration::from_secs(10), |s| !s.events(failed).is_empty()),
        "the broken list is refused:\n{}",
        server.log()
    );
    let error = server.events(failed)[0]["error"].to_string();
    assert!(error.contains("listed.txt:2:1: bad recipient"), "{error}");
    assert_eq!(
        rcpt_codes(&server, &["carol@listed.example", "dave@listed.example"]).await,
        ["250 2.1.5", "550 5.1.1"]
    );
    server.stop();
}

#[test]
fn config_check_names_the_bad_line_of_a_recipients_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("listed.txt"),
        "alice\n\nbob@elsewhere.test\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("listed-off.txt"), "x\n").expect("write");
    let path = dir.path().join("sealpost.toml");
    std::fs::write(&path, config(2525)).expect("write");
    let (code, _, stderr) = run_cli(&path, &["config", "check"]);
    assert_eq!(code, Some(1));
    let want = format!(
        "{}:3:1: bad recipient `bob@elsewhere.test`",
        dir.path().join("listed.txt").display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}
