//! Runs the real `sealpost-bench` binary's sink and generator against each
//! other on 127.0.0.1 with a small load, with and without STARTTLS, and
//! checks every accepted message arrived exactly once.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sealpost-bench");

fn json_line(output: &str) -> Value {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

fn run_pair(starttls: bool) {
    let (connections, per_connection) = (4u64, 10u64);
    let expect = connections * per_connection;
    let mut sink = Command::new(BIN);
    sink.args([
        "sink",
        "--listen",
        "127.0.0.1:0",
        "--idle-timeout",
        "20",
        "--expect",
        &expect.to_string(),
    ]);
    if starttls {
        sink.arg("--tls-self-signed");
    }
    let mut sink = sink.stdout(Stdio::piped()).spawn().expect("start sink");
    let mut sink_out = BufReader::new(sink.stdout.take().expect("sink stdout"));
    let mut first = String::new();
    sink_out
        .read_line(&mut first)
        .expect("sink says where it listens");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();

    let mut send = Command::new(BIN);
    send.args(["send", "--to", &addr, "--size", "4096", "--run-id", "t"]);
    send.args(["--connections", &connections.to_string()]);
    send.args(["--messages-per-connection", &per_connection.to_string()]);
    if starttls {
        send.arg("--starttls");
    }
    let sent = send.output().expect("run sender");
    assert!(
        sent.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let sent = json_line(&String::from_utf8_lossy(&sent.stdout));

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut sink_out, &mut rest).expect("sink report");
    assert!(sink.wait().expect("sink exits").success());
    let received = json_line(&rest);

    assert_eq!(sent["failed_connections"], 0, "{sent}");
    assert_eq!(sent["accepted"], expect, "{sent}");
    assert_eq!(received["stopped_by"], "expect", "{received}");
    assert_eq!(received["received"], sent["accepted"], "{received}");
    assert_eq!(received["unique"], sent["accepted"], "{received}");
    assert_eq!(received["duplicates"], 0, "{received}");
    assert_eq!(received["without_id"], 0, "{received}");
    assert!(sent["latency_ms"]["p99"].as_f64().expect("p99") > 0.0);
}

#[test]
fn sink_counts_every_message_once_plaintext() {
    run_pair(false);
}

#[test]
fn sink_counts_every_message_once_starttls() {
    run_pair(true);
}
