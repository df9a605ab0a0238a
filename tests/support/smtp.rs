//! Test SMTP peers.
//!
//! - [`run_script`]: drives the sans-IO [`Session`] in memory with byte
//!   segments (what a client sends before waiting), answering its events
//!   with a closure, and records replies and messages.
//! - [`TestSmtpServer`]: a receiving SMTP server on 127.0.0.1 (optional
//!   STARTTLS with a `pki.rs` certificate) that records envelopes and
//!   bodies, answering MAIL/RCPT/DATA from a scriptable closure; for the
//!   delivery engine's tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sealpost::smtp::{Envelope, Event, Reply, ReplyParser, Session, SessionConfig, Verdict};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The event a [`Decide`] closure is asked about.
#[derive(Debug, Clone)]
pub enum Ask<'a> {
    Mail(&'a sealpost::smtp::ReversePath),
    Rcpt(&'a sealpost::smtp::ForwardPath),
    Message(&'a Envelope, &'a [u8]),
}

/// Answers the session's questions.
pub type Decide = dyn Fn(Ask<'_>) -> Verdict + Send + Sync;

/// Accepts everything, with a queue id on messages.
pub fn accept_all(ask: Ask<'_>) -> Verdict {
    match ask {
        Ask::Message(..) => Verdict::AcceptWith(Reply::new(250, (2, 0, 0), "Ok: queued as TEST")),
        _ => Verdict::Accept,
    }
}

/// What a scripted session did.
#[derive(Debug, Default)]
pub struct Transcript {
    pub replies: Vec<Reply>,
    pub messages: Vec<(Envelope, Vec<u8>)>,
    pub tls_handshakes: u32,
    pub closed: bool,
}

impl Transcript {
    /// Each reply as `CODE` or `CODE X.Y.Z`.
    pub fn codes(&self) -> Vec<String> {
        self.replies
            .iter()
            .map(|r| match r.enhanced {
                Some(e) => format!("{} {e}", r.code),
                None => r.code.to_string(),
            })
            .collect()
    }
}

/// Runs `segments` through a new session. Each segment is what the client
/// sends before it waits; `split` cuts every segment into pieces fed one at
/// a time (the result must not depend on it). A STARTTLS accepted inside a
/// segment drops the rest of that segment (plaintext sent before the
/// handshake) and the handshake "succeeds" before the next segment.
pub fn run_script(
    config: SessionConfig,
    segments: &[Vec<u8>],
    split: &dyn Fn(&[u8]) -> Vec<Vec<u8>>,
    decide: &Decide,
) -> Transcript {
    let mut session = Session::new(Arc::new(config));
    let mut transcript = Transcript::default();
    let mut parser = ReplyParser::new();
    let mut tls_pending = false;
    'segments: for segment in segments {
        if tls_pending {
            session.tls_established().expect("awaiting TLS");
            transcript.tls_handshakes += 1;
            tls_pending = false;
        }
        for piece in split(segment) {
            session.receive(&piece);
            let stop = pump(&mut session, decide, &mut transcript);
            parser.push(&session.take_output());
            while let Some(reply) = parser.next_reply() {
                transcript.replies.push(reply.expect("server reply parses"));
            }
            match stop {
                Stop::NeedInput => {}
                Stop::StartTls => {
                    tls_pending = true;
                    continue 'segments;
                }
                Stop::Close => {
                    transcript.closed = true;
                    break 'segments;
                }
            }
        }
    }
    if !transcript.closed {
        // Drain any replies that need no input (e.g. a final close).
        if let Stop::Close = pump(&mut session, decide, &mut transcript) {
            transcript.closed = true;
        }
        parser.push(&session.take_output());
        while let Some(reply) = parser.next_reply() {
            transcript.replies.push(reply.expect("server reply parses"));
        }
    }
    transcript
}

enum Stop {
    NeedInput,
    StartTls,
    Close,
}

fn pump(session: &mut Session, decide: &Decide, transcript: &mut Transcript) -> Stop {
    loop {
        match session.next_event() {
            Event::NeedInput => return Stop::NeedInput,
            Event::Helo { .. } => {}
            Event::MailFrom { from, .. } => {
                session.answer(decide(Ask::Mail(&from))).expect("pending");
            }
            Event::Rcpt { to, .. } => {
                session.answer(decide(Ask::Rcpt(&to))).expect("pending");
            }
            Event::Message { envelope, body } => {
                let verdict = decide(Ask::Message(&envelope, &body));
                transcript.messages.push((envelope, body));
                session.answer(verdict).expect("pending");
            }
            Event::StartTls => return Stop::StartTls,
            Event::AwaitingAnswer => panic!("every event was answered"),
            Event::Close => return Stop::Close,
        }
    }
}

/// A message the test server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub envelope: Envelope,
    pub body: Vec<u8>,
    /// The TLS version in use, if any (e.g. `TLSv1_3`).
    pub tls_version: Option<String>,
}

/// A receiving SMTP server on 127.0.0.1 for tests of SMTP clients.
pub struct TestSmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestSmtpServer {
    /// Starts listening on 127.0.0.1 (a free port). With `tls`, STARTTLS is
    /// offered with that config (see `pki::server_config`).
    pub async fn start(
        hostname: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> TestSmtpServer {
        let config = SessionConfig {
            hostname: hostname.to_string(),
            ..SessionConfig::default()
        };
        TestSmtpServer::start_with_config(config, tls, decide).await
    }

    /// Like [`TestSmtpServer::start`] with a chosen session config (size
    /// limit, recipients per message, ...); `tls_available` follows `tls`.
    pub async fn start_with_config(
        config: SessionConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> TestSmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let config = Arc::new(SessionConfig {
            tls_available: tls.is_some(),
            ..config
        });
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (config, tls, decide, store) =
                    (config.clone(), tls.clone(), decide.clone(), store.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, config, tls, decide, store).await;
                });
            }
        });
        TestSmtpServer {
            addr,
            received,
            task,
        }
    }

    /// Messages received so far, in order of completion.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for TestSmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    config: Arc<SessionConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    decide: Arc<Decide>,
    store: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let mut session = Session::new(config);
    let mut plain = stream;
    if !run(&mut plain, &mut session, &*decide, &store, None).await? {
        return Ok(());
    }
    let Some(tls) = tls else { return Ok(()) };
    let mut stream = tokio_rustls::TlsAcceptor::from(tls).accept(plain).await?;
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"));
    session.tls_established().map_err(std::io::Error::other)?;
    run(&mut stream, &mut session, &*decide, &store, version).await?;
    Ok(())
}

/// Drives the session on `stream`; returns true when STARTTLS was accepted.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    decide: &Decide,
    store: &Mutex<Vec<Received>>,
    tls_version: Option<String>,
) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match session.next_event() {
            Event::NeedInput => {
                stream.write_all(&session.take_output()).await?;
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok(false);
                }
                session.receive(&buf[..n]);
            }
            Event::Helo { .. } => {}
            Event::AwaitingAnswer => return Err(std::io::Error::other("unanswered event")),
            Event::MailFrom { from, .. } => session
                .answer(decide(Ask::Mail(&from)))
                .map_err(std::io::Error::other)?,
            Event::Rcpt { to, .. } => session
                .answer(decide(Ask::Rcpt(&to)))
                .map_err(std::io::Error::other)?,
            Event::Message { envelope, body } => {
                let verdict = decide(Ask::Message(&envelope, &body));
                if matches!(verdict, Verdict::Accept | Verdict::AcceptWith(_)) {
                    store.lock().expect("lock").push(Received {
                        envelope,
                        body,
                        tls_version: tls_version.clone(),
                    });
                }
                session.answer(verdict).map_err(std::io::Error::other)?;
            }
            Event::StartTls => {
                stream.write_all(&session.take_output()).await?;
                stream.flush().await?;
                return Ok(true);
            }
            Event::Close => {
                stream.write_all(&session.take_output()).await?;
                stream.shutdown().await.ok();
                return Ok(false);
            }
        }
    }
}
