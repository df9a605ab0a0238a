//! One SMTP connection: drives the session machine over a TCP stream,
//! upgrades it in place on STARTTLS, and applies the RFC 5321 section
//! 4.5.3.2 server timeout to every read, a write timeout to every write
//! (plaintext and TLS alike: both go through [`MaybeTls`]), and a deadline
//! to the whole connection (`421 4.4.2`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::{Body, ConnectionInfo, Refusal, SessionHandler, Spool, TlsInfo, SPILL_BYTES};
use crate::smtp::{timeouts, Event, Reply, Session, SessionConfig, Verdict};
use crate::tls::MaybeTls;

/// How long the server waits for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the next command or the next piece of data (5 minutes).
    pub command: Duration,
    /// For the whole TLS handshake after STARTTLS.
    pub tls_handshake: Duration,
    /// For each write of replies (a client that does not read them).
    pub write: Duration,
    /// The longest the connection may live.
    pub session: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: timeouts::SERVER,
            tls_handshake: Duration::from_secs(60),
            write: Duration::from_secs(300),
            session: Duration::from_secs(3600),
        }
    }
}

/// Writes `bytes` within `limit`; a write that does not finish in time is
/// an error of kind `TimedOut`.
async fn write_within(stream: &mut MaybeTls, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client did not take our replies in time",
        )),
    }
}

/// Tells connections that the server stops: `None` while it runs, then
/// the instant by which a transaction in progress must have ended.
/// A session waiting between transactions gets `421 4.3.2` at once; one
/// in a transaction may finish it until then, and gets `421 4.3.2` when
/// it waits for the client past it.
pub type StopSignal = tokio::sync::watch::Receiver<Option<Instant>>;

/// Serves one connection to its end. `refusal`, when set, is sent instead
/// of the greeting (a connection limit was hit) and the connection closed.
#[allow(clippy::too_many_arguments)]
pub async fn serve_connection<H: SessionHandler>(
    stream: TcpStream,
    mut conn: ConnectionInfo,
    config: Arc<SessionConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: &H,
    timeouts: Timeouts,
    refusal: Option<Reply>,
    stop: StopSignal,
) -> std::io::Result<()> {
    let peer = conn.peer;
    let id = conn.id;
    let result = drive(
        stream, &mut conn, config, tls, handler, timeouts, refusal, stop,
    )
    .await;
    if let Err(e) = &result {
        if e.kind() == std::io::ErrorKind::TimedOut {
            info!(conn = id, %peer, reason = %Refusal::WriteTimeout, limit = ?timeouts.write, "connection closed: the client does not read its replies");
            handler.refused(&conn, Refusal::WriteTimeout);
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive<H: SessionHandler>(
    stream: TcpStream,
    conn: &mut ConnectionInfo,
    config: Arc<SessionConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: &H,
    timeouts: Timeouts,
    refusal: Option<Reply>,
    mut stop: StopSignal,
) -> std::io::Result<()> {
    let deadline = Instant::now() + timeouts.session;
    // The stop signal's sender is gone (the listener ended): stop watching.
    let mut stop_gone = false;
    let _ = stream.set_nodelay(true);
    let mut session = Session::new(config);
    if let Some(reply) = refusal {
        session.refuse(reply);
    }
    let mut stream = MaybeTls::Plain(stream);
    let mut buf = vec![0u8; 64 * 1024];
    // The spool of the transaction in progress, once its content passed
    // SPILL_BYTES; a new MAIL drops an abandoned one (which deletes it).
    let mut spool: Option<Spool> = None;
    loop {
        match session.next_event() {
            Event::NeedInput => {
                if session.body_buffered() >= SPILL_BYTES {
                    if spool.is_none() {
                        spool = handler.spool();
                    }
                    if let Some(spool) = spool.as_mut() {
                        spool.write(&session.take_body());
                    }
                }
                write_within(&mut stream, &session.take_output(), timeouts.write).await?;
                let draining = *stop.borrow();
                if let Some(end) = draining {
                    if session.transaction().is_none() || Instant::now() >= end {
                        info!(conn = conn.id, peer = %conn.peer, in_transaction = session.transaction().is_some(), "connection closed: sealpost is stopping");
                        session.shutting_down();
                        continue;
                    }
                }
                let mut wait_until = deadline.min(Instant::now() + timeouts.command);
                if let Some(end) = draining {
                    wait_until = wait_until.min(end);
                }
                let read = tokio::select! {
                    read = tokio::time::timeout_at(wait_until.into(), stream.read(&mut buf)) => Some(read),
                    changed = stop.changed(), if draining.is_none() && !stop_gone => {
                        stop_gone = changed.is_err();
                        None
                    }
                };
                // The stop began while waiting: look again (reads are
                // cancel-safe, nothing received is lost).
                let Some(read) = read else {
                    continue;
                };
                match read {
                    Err(_) if draining.is_some_and(|end| Instant::now() >= end) => {}
                    Ok(Ok(0)) => {
                        debug!(conn = conn.id, "peer closed the connection");
                        return Ok(());
                    }
                    Ok(Ok(n)) => session.receive(&buf[..n]),
                    Ok(Err(e)) => return Err(e),
                    Err(_) if Instant::now() >= deadline => {
                        info!(conn = conn.id, peer = %conn.peer, reason = %Refusal::SessionDeadline, limit = ?timeouts.session, "connection closed: session deadline reached");
                        handler.refused(conn, Refusal::SessionDeadline);
                        session.deadline_reached();
                    }
                    Err(_) => {
                        info!(conn = conn.id, peer = %conn.peer, "timeout waiting for the peer");
                        session.timed_out();
                    }
                }
            }
            Event::LimitReached(limit) => {
                let refusal = Refusal::from(limit);
                info!(conn = conn.id, peer = %conn.peer, reason = %refusal, "refused: limit reached");
                handler.refused(conn, refusal);
            }
            Event::Helo { domain, .. } => conn.helo = Some(domain),
            Event::MailFrom { from, params } => {
                spool = None;
                let verdict = handler.mail_from(conn, &from, &params);
                answer(&mut session, verdict)?;
            }
            Event::Rcpt { to, params } => {
                let (from, accepted) = match session.transaction() {
                    Some(t) => (t.from.clone(), t.recipients.len()),
                    None => return Err(std::io::Error::other("RCPT outside a transaction")),
                };
                let verdict = handler.rcpt(conn, &from, accepted, &to, &params);
                answer(&mut session, verdict)?;
            }
            Event::Auth { credentials } => {
                let username = credentials.username.clone();
                let verdict = handler.auth(conn, credentials).await;
                answer(&mut session, verdict)?;
                if let Some(user) = session.authenticated() {
                    info!(conn = conn.id, peer = %conn.peer, user, "authenticated");
                    conn.authenticated = Some(user.to_string());
                } else {
                    info!(conn = conn.id, peer = %conn.peer, user = %username, "authentication failed");
                }
            }
            Event::Message { envelope, body } => {
                let body = match spool.take() {
                    Some(mut spool) => {
                        spool.write(&body);
                        Body::Spooled(spool)
                    }
                    None => Body::Memory(body),
                };
                let verdict = handler.message(conn, envelope, body).await;
                answer(&mut session, verdict)?;
            }
            Event::StartTls => {
                write_within(&mut stream, &session.take_output(), timeouts.write).await?;
                let Some(tls) = tls.clone() else {
                    return Err(std::io::Error::other("STARTTLS accepted without TLS"));
                };
                let plain = stream.into_plain()?;
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let handshake =
                    tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(plain));
                let tls_stream = match handshake.await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        warn!(conn = conn.id, peer = %conn.peer, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                    Err(_) => {
                        warn!(conn = conn.id, peer = %conn.peer, "TLS handshake timed out");
                        return Ok(());
                    }
                };
                let (_, server) = tls_stream.get_ref();
                let info = TlsInfo {
                    version: server
                        .protocol_version()
                        .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
                    cipher: server
                        .negotiated_cipher_suite()
                        .and_then(|s| s.suite().as_str())
                        .unwrap_or("unknown")
                        .to_string(),
                    sni: server.server_name().map(str::to_string),
                };
                info!(
                    conn = conn.id,
                    peer = %conn.peer,
                    version = info.version_name(),
                    cipher = %info.cipher,
                    "TLS established"
                );
                conn.tls = Some(info);
                conn.helo = None;
                conn.authenticated = None;
                stream = MaybeTls::Server(Box::new(tls_stream));
                session.tls_established().map_err(std::io::Error::other)?;
            }
            Event::AwaitingAnswer => {
                return Err(std::io::Error::other("session event left unanswered"));
            }
            Event::Close => {
                write_within(&mut stream, &session.take_output(), timeouts.write).await?;
                let _ = tokio::time::timeout(timeouts.write, stream.shutdown()).await;
                return Ok(());
            }
        }
    }
}

fn answer(session: &mut Session, verdict: Verdict) -> std::io::Result<()> {
    session.answer(verdict).map_err(std::io::Error::other)
}
