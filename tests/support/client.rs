//! Helpers for the SMTP client tests (`tests/smtp_client*.rs`): a
//! recording `TestSmtpServer`, common envelopes and parameters, a WebPKI
//! verifier for the test CA, and a one-connection scripted fake server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{
    ClientConfig, Connection, Delivery, OutboundMessage, Peer, RecipientOutcome, Timeouts,
    TlsAuthentication, TlsParams, TlsRequirement,
};
use sealpost::smtp::{ForwardPath, Host, Mailbox, ReversePath};

use super::pki::{self, TestCa};
use super::smtp::{Ask, Decide, TestSmtpServer};

pub const MX: &str = "mx.test";
pub const BODY: &[u8] = b"Subject: hello\r\n\r\nsecret body line\r\n.starts with a dot\r\n";

pub fn config() -> Arc<ClientConfig> {
    let mut c = ClientConfig::new("client.test");
    c.timeouts = Timeouts::uniform(Duration::from_secs(10));
    Arc::new(c)
}

pub fn peer(addr: SocketAddr) -> Peer {
    Peer {
        mx_host: MX.into(),
        addr,
        local: None,
    }
}

pub fn params(req: TlsRequirement, min: MinTlsVersion) -> TlsParams {
    TlsParams::new(req, min, MX).expect("name")
}

pub fn mailbox(local: &str) -> Mailbox {
    Mailbox {
        local_part: local.into(),
        host: Host::Domain("dest.test".into()),
    }
}

pub fn sender() -> ReversePath {
    ReversePath::Mailbox(Mailbox {
        local_part: "alice".into(),
        host: Host::Domain("src.test".into()),
    })
}

pub fn rcpts(names: &[&str]) -> Vec<ForwardPath> {
    names
        .iter()
        .map(|n| ForwardPath::Mailbox(mailbox(n)))
        .collect()
}

/// A server whose decide closure also records every MAIL it saw.
pub struct Recorded {
    pub server: TestSmtpServer,
    pub mails: Arc<Mutex<u32>>,
}

pub async fn server(tls: Option<Arc<rustls::ServerConfig>>, decide: Arc<Decide>) -> Recorded {
    let mails = Arc::new(Mutex::new(0));
    let count = mails.clone();
    let wrapped: Arc<Decide> = Arc::new(move |ask: Ask<'_>| {
        if matches!(ask, Ask::Mail(_)) {
            *count.lock().expect("lock") += 1;
        }
        decide(ask)
    });
    Recorded {
        server: TestSmtpServer::start(MX, tls, wrapped).await,
        mails,
    }
}

impl Recorded {
    pub fn mails(&self) -> u32 {
        *self.mails.lock().expect("lock")
    }

    /// Asserts that no transaction reached the receiver.
    pub fn assert_nothing_sent(&self) {
        assert_eq!(self.mails(), 0, "receiver saw a MAIL command");
        assert!(self.server.received().is_empty(), "receiver got a message");
    }
}

pub fn tls_server(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    pki::server_config(&pki::self_signed(&[MX]), versions)
}

pub async fn send_one(conn: &mut Connection, to: &[ForwardPath]) -> Vec<RecipientOutcome> {
    let from = sender();
    let msg = OutboundMessage {
        from: &from,
        to,
        body: BODY,
        requiretls: false,
    };
    match conn.send(&msg).await.expect("send") {
        Delivery::Attempted(outcomes) => outcomes,
        Delivery::Refused(r) => panic!("refused: {r}"),
    }
}

pub fn all_delivered(outcomes: &[RecipientOutcome]) -> bool {
    outcomes
        .iter()
        .all(|o| matches!(o, RecipientOutcome::Delivered(r) if r.code == 250))
}

/// Requires a certificate chaining to `ca` (WebPKI name check).
pub fn webpki_verifier(ca: &TestCa) -> TlsRequirement {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(ca.roots()),
        pki::provider(),
    )
    .build()
    .expect("verifier");
    TlsRequirement::RequireVerified {
        verifier,
        kind: TlsAuthentication::WebPki,
    }
}

/// A one-connection line-based fake server: `reply(line)` gives the bytes
/// to answer with (greeting for the empty line at start); records lines.
pub async fn fake_server(
    reply: fn(&str) -> &'static [u8],
) -> (
    SocketAddr,
    Arc<Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        let _ = w.write_all(reply("")).await;
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().expect("lock").push(line.clone());
            if w.write_all(reply(&line)).await.is_err() {
                return;
            }
        }
    });
    (addr, seen, task)
}
