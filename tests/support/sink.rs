//! A counting SMTP sink on 127.0.0.1 for the fleet tests: it accepts every
//! message (plain SMTP, no STARTTLS offered), and counts the connections
//! open at once (the most ever seen too) and each message's arrival time
//! and `Subject`. A connection stops counting when QUIT is read (before
//! `221` is written), or when the client goes away.
//!
//! Deliberately raw (a line reader, not sealpost's server): what is
//! measured here is sealpost's client side, with nothing of sealpost in
//! the measuring instrument.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message received.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    /// The `Subject:` header's value.
    pub subject: String,
    /// `MAIL FROM:<>` (a bounce).
    pub null_sender: bool,
}

#[derive(Default)]
struct State {
    open: AtomicUsize,
    most: AtomicUsize,
    connections: AtomicUsize,
    arrivals: Mutex<Vec<Arrival>>,
    /// When a connection made the count exceed `watch_above`, and the count.
    peaks: Mutex<Vec<(Instant, usize)>>,
}

/// Connections above this many at once are noted with their time.
const WATCH_ABOVE: usize = 4;

/// The sink; it stops when dropped.
pub struct CountingSink {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingSink {
    /// Starts one that waits `delay` before answering each message's data
    /// (so that a sender needs several connections to keep up).
    pub async fn start(delay: Duration) -> CountingSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let state = Arc::new(State::default());
        let accepting = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accepting);
                let now = state.open.fetch_add(1, Ordering::SeqCst) + 1;
                state.most.fetch_max(now, Ordering::SeqCst);
                if now > WATCH_ABOVE {
                    state
                        .peaks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((Instant::now(), now));
                }
                state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut counted = true;
                    let _ = session(stream, &state, delay, &mut counted).await;
                    if counted {
                        state.open.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        CountingSink { addr, state, task }
    }

    /// The most connections ever open at once.
    pub fn most_at_once(&self) -> usize {
        self.state.most.load(Ordering::SeqCst)
    }

    /// When the connections open at once exceeded 4, and how many.
    pub fn peaks(&self) -> Vec<(Instant, usize)> {
        self.state
            .peaks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections accepted in all.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every message received so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn received(&self) -> usize {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(
    stream: TcpStream,
    state: &State,
    delay: Duration,
    counted: &mut bool,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = String::new();
    let mut null_sender = false;
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" => {
                null_sender = line.to_ascii_uppercase().contains("FROM:<>");
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" => b"250 2.1.5 Ok\r\n",
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let subject = read_data(&mut lines).await?;
                tokio::time::sleep(delay).await;
                state
                    .arrivals
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Arrival {
                        at: Instant::now(),
                        subject,
                        null_sender,
                    });
                b"250 2.0.0 Ok: queued\r\n"
            }
            "QUIT" => {
                *counted = false;
                state.open.fetch_sub(1, Ordering::SeqCst);
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 2.0.0 Ok\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Reads a message's data up to the lone dot; its `Subject`.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut R) -> std::io::Result<String> {
    let mut subject = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Ok(subject);
        }
        if subject.is_empty() {
            if let Some(value) = text.strip_prefix("Subject: ") {
                subject = value.to_owned();
            }
        }
    }
}
