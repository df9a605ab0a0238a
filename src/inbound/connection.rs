//! One SMTP connection: drives the session machine over a TCP stream,
//! upgrades it in place on STARTTLS, and applies the RFC 5321 section
//! 4.5.3.2 server timeout to every read.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::{Body, ConnectionInfo, SessionHandler, Spool, TlsInfo, SPILL_BYTES};
use crate::smtp::{timeouts, Event, Reply, Session, SessionConfig, Verdict};
use crate::tls::MaybeTls;

/// How long the server waits for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the next command or the next piece of data (5 minutes).
    pub command: Duration,
    /// For the whole TLS handshake after STARTTLS.
    pub tls_handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: timeouts::SERVER,
            tls_handshake: Duration::from_secs(60),
        }
    }
}

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
) -> std::io::Result<()> {
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
                stream.write_all(&session.take_output()).await?;
                match tokio::time::timeout(timeouts.command, stream.read(&mut buf)).await {
                    Ok(Ok(0)) => {
                        debug!(conn = conn.id, "peer closed the connection");
                        return Ok(());
                    }
                    Ok(Ok(n)) => session.receive(&buf[..n]),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        info!(conn = conn.id, peer = %conn.peer, "timeout waiting for the peer");
                        session.timed_out();
                    }
                }
            }
            Event::Helo { domain, .. } => conn.helo = Some(domain),
            Event::MailFrom { from, params } => {
                spool = None;
                let verdict = handler.mail_from(&conn, &from, &params);
                answer(&mut session, verdict)?;
            }
            Event::Rcpt { to, params } => {
                let (from, accepted) = match session.transaction() {
                    Some(t) => (t.from.clone(), t.recipients.len()),
                    None => return Err(std::io::Error::other("RCPT outside a transaction")),
                };
                let verdict = handler.rcpt(&conn, &from, accepted, &to, &params);
                answer(&mut session, verdict)?;
            }
            Event::Auth { credentials } => {
                let username = credentials.username.clone();
                let verdict = handler.auth(&conn, credentials).await;
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
                let verdict = handler.message(&conn, envelope, body).await;
                answer(&mut session, verdict)?;
            }
            Event::StartTls => {
                stream.write_all(&session.take_output()).await?;
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
                stream.write_all(&session.take_output()).await?;
                let _ = stream.shutdown().await;
                return Ok(());
            }
        }
    }
}

fn answer(session: &mut Session, verdict: Verdict) -> std::io::Result<()> {
    session.answer(verdict).map_err(std::io::Error::other)
}
