//! The admin server in process, with a delivery engine stand-in: the
//! destination table and flush come from the [`DeliveryView`], a refused
//! reload carries every error line, and the CLI prints the destinations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::Method;
use sealpost_queue::{Queue, QueueOptions};

use super::client::AdminClient;
use super::views::unix_ms;
use super::{AdminServer, AdminState, DeliveryView, DestinationStatus};
use crate::cli::{self, AdminOptions, GlobalOptions};
use crate::config::{AdminConfig, Config};
use crate::live::LiveConfig;
use crate::metrics::Metrics;

/// A refused reload with two validation errors.
fn two_errors() -> crate::live::ReloadError {
    use crate::config::{ConfigError, ConfigErrorKind, ConfigErrors, LoadError, Location};
    let at = |line, given: &str| ConfigError {
        file: "t.toml".into(),
        location: Some(Location { line, column: 1 }),
        kind: ConfigErrorKind::BadAdminGroup {
            given: given.into(),
        },
    };
    LoadError::Invalid(ConfigErrors(vec![at(1, "first"), at(2, "second")])).into()
}

struct Engine {
    backoff_until: u64,
}

impl DeliveryView for Engine {
    fn destinations(&self) -> Vec<DestinationStatus> {
        vec![DestinationStatus {
            name: "example.com".into(),
            mx_hosts: vec!["mx1.example.com".into(), "mx2.example.com".into()],
            tls: Some("DANE: 2 usable TLSA at mx1".into()),
            active_connections: 1,
            idle_connections: 2,
            waiting: 3,
            backoff_until: Some(self.backoff_until),
            last_error: Some("421 4.7.0 try later".into()),
            last_reason: None,
        }]
    }
    fn flush(&self, destination: &str) -> bool {
        destination == "example.com"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_come_from_the_delivery_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path().join("queue"), QueueOptions::default()).expect("queue");
    let config = Config::parse("", "test.toml", Some(dir.path())).expect("config");
    let backoff_until = unix_ms(SystemTime::now()) + 90_000;
    let state = Arc::new(AdminState {
        queue: Arc::new(queue),
        live: Arc::new(LiveConfig::new(config)),
        metrics: Arc::new(Metrics::new()),
        delivery: Arc::new(Engine { backoff_until }),
        reload: Arc::new(|| Err(two_errors())),
        health: Arc::new(crate::service::Health::new(
            Arc::new(crate::inbound::storage::Storage::with_space(
                dir.path().join("queue"),
                Box::new(crate::inbound::storage::DiskSpace),
            )),
            Arc::new(crate::service::Heartbeat::default()),
            Arc::new(|| None),
        )),
        certificates: Default::default(),
        drain: Arc::new(crate::admin::drain::NoDrain),
        tls_reports: None,
    });
    let socket = dir.path().join("admin.sock");
    let admin_config = AdminConfig {
        socket: socket.clone(),
        group: None,
        metrics_listen: None,
    };
    let server = AdminServer::start(&admin_config, state)
        .await
        .expect("start");
    let client = AdminClient::new(&socket, Duration::from_secs(10));

    // Health: live always; not ready before the listeners and the engine run.
    let live = client
        .request(Method::GET, "/healthz/live", None)
        .await
        .expect("answer");
    assert_eq!(live.status, 200);
    let ready = client
        .request(Method::GET, "/healthz/ready", None)
        .await
        .expect("answer");
    assert_eq!(ready.status, 503);
    let value: serde_json::Value = serde_json::from_slice(&ready.body).expect("JSON");
    let failing: Vec<&str> = value["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(failing, ["listeners", "delivery_engine"], "{value}");
    assert_eq!(value["ready"], false);

    let answer = client
        .request(Method::GET, "/destinations", None)
        .await
        .expect("answer");
    assert_eq!(answer.status, 200);
    let value: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    let row = &value["destinations"][0];
    assert_eq!(row["name"], "example.com");
    assert_eq!(row["tls"], "DANE: 2 usable TLSA at mx1");
    assert_eq!(row["waiting"], 3);
    assert_eq!(row["backoff_until"], backoff_until);
    let flushed = client
        .request(Method::POST, "/destinations/example.com/flush", None)
        .await
        .expect("answer");
    assert_eq!(flushed.status, 200);
    let unknown = client
        .request(Method::POST, "/destinations/other.example/flush", None)
        .await
        .expect("answer");
    assert_eq!(unknown.status, 404);

    let reload = client
        .request(Method::POST, "/reload", None)
        .await
        .expect("answer");
    assert_eq!(reload.status, 422);
    assert_eq!(
        reload.error_text(),
        format!(
            "the new configuration was refused; the one in force stays\n  {}\n  {}",
            "t.toml:1:1: bad `admin.group` `first`: write a group name or a numeric group id",
            "t.toml:2:1: bad `admin.group` `second`: write a group name or a numeric group id"
        )
    );

    // The CLI's table (its own runtime, so on a plain thread).
    let options = AdminOptions {
        socket: Some(socket.clone()),
        json: false,
    };
    let (status, out) = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = cli::destinations(&GlobalOptions::default(), &options, &mut out, &mut err)
            .expect("write");
        (status, String::from_utf8_lossy(&out).into_owned())
    })
    .join()
    .expect("the CLI thread");
    assert_eq!(status, cli::EXIT_OK);
    let row = out
        .lines()
        .find(|l| l.starts_with("example.com"))
        .unwrap_or_else(|| panic!("a row for example.com in\n{out}"));
    for cell in [
        "mx1.example.com,mx2.example.com",
        "DANE: 2 usable TLSA at mx1",
        "1/2/3",
        "421 4.7.0 try later",
    ] {
        assert!(row.contains(cell), "{cell} in {row}");
    }
    assert!(
        row.contains("m") && row.contains("more"),
        "backoff in {row}"
    );

    drop(server);
    assert!(!socket.exists(), "the socket file goes with the server");
}
