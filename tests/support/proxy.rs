//! A TCP proxy on 127.0.0.1 that plays a network attacker between an SMTP
//! client and server, for cleartext sessions:
//!
//! - `strip`: removes EHLO extension lines (e.g. `STARTTLS`, the classic
//!   STARTTLS-stripping downgrade, or `PIPELINING`), fixing the last line's
//!   separator;
//! - `break_tls`: after the client sends STARTTLS, drops the client's next
//!   bytes (its ClientHello) and closes, so the handshake fails.
//!
//! Every chunk the client sent is recorded, to assert what left the client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy tampers with.
#[derive(Debug, Clone, Default)]
pub struct Tamper {
    /// EHLO keywords to remove (upper case).
    pub strip: Vec<String>,
    pub break_tls: bool,
}

impl Tamper {
    pub fn strip(keywords: &[&str]) -> Tamper {
        Tamper {
            strip: keywords.iter().map(|k| k.to_ascii_uppercase()).collect(),
            break_tls: false,
        }
    }
}

/// The running proxy.
pub struct TamperProxy {
    pub addr: SocketAddr,
    chunks: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TamperProxy {
    /// Listens on 127.0.0.1 and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr, tamper: Tamper) -> TamperProxy {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        TamperProxy::start_on(any_port, upstream, tamper).await
    }

    /// Like [`TamperProxy::start`] listening on `listen` (e.g. an MX
    /// address 127.0.0.x on the port every MX shares).
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr, tamper: Tamper) -> TamperProxy {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let record = chunks.clone();
        let tamper = Arc::new(tamper);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (record, tamper) = (record.clone(), tamper.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, record, tamper).await;
                    }
                });
            }
        });
        TamperProxy { addr, chunks, task }
    }

    /// Each read from the client, in order, over all connections.
    pub fn client_chunks(&self) -> Vec<Vec<u8>> {
        self.chunks.lock().expect("lock").clone()
    }

    /// Everything the client sent, as (lossy) text.
    pub fn client_text(&self) -> String {
        String::from_utf8_lossy(&self.client_chunks().concat()).into_owned()
    }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    record: Arc<Mutex<Vec<Vec<u8>>>>,
    tamper: Arc<Tamper>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let starttls_seen = Arc::new(AtomicBool::new(false));
    let seen = starttls_seen.clone();
    let break_tls = tamper.break_tls;
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            record.lock().expect("lock").push(buf[..n].to_vec());
            if break_tls && seen.load(Ordering::SeqCst) {
                return; // drop the ClientHello and hang up on the server
            }
            if buf[..n]
                .windows(8)
                .any(|w| w.eq_ignore_ascii_case(b"STARTTLS"))
            {
                seen.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut reply: Vec<Vec<u8>> = Vec::new();
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let last = line.get(3) != Some(&b'-');
            let keyword = String::from_utf8_lossy(line.get(4..).unwrap_or(&[]))
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if !(line.starts_with(b"250") && tamper.strip.contains(&keyword)) {
                reply.push(line);
            }
            if last {
                let count = reply.len();
                let mut out = Vec::new();
                for (i, mut l) in reply.drain(..).enumerate() {
                    if l.len() > 3 && l.starts_with(b"250") {
                        l[3] = if i + 1 == count { b' ' } else { b'-' };
                    }
                    out.extend_from_slice(&l);
                }
                if client_write.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = client_write.shutdown().await;
    upstream.abort();
}
