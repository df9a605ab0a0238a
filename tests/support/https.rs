//! A small HTTPS server on 127.0.0.1 for tests (hyper 1 + tokio-rustls):
//! the test supplies a handler from (host, path) to a [`Reply`]; the server
//! counts requests. Used for MTA-STS policy hosts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::TokioIo;

/// What the server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, headers and a body.
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// 200 text/plain with a body that never ends.
    Endless,
    /// Wait this long, then answer.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// 200 with `Content-Type: text/plain`.
    pub fn text(body: &str) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("content-type", "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type", "text/plain".into())],
            body: b"nothing here\n".to_vec(),
        }
    }
}

pub type Handler = Arc<dyn Fn(&str, &str) -> Reply + Send + Sync>;

/// A running server; it stops when dropped.
pub struct HttpsServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsServer {
    /// Starts on 127.0.0.1 with an OS-chosen port.
    pub async fn start(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
    ) -> HttpsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task_hits = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let hits = task_hits.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        let hits = hits.clone();
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            let host = req
                                .headers()
                                .get(hyper::header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let reply = handler(&host, req.uri().path());
                            Ok::<_, Infallible>(respond(reply).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsServer { addr, hits, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(mut reply: Reply) -> hyper::Response<BoxBody<Bytes, Infallible>> {
    while let Reply::Delayed(wait, inner) = reply {
        tokio::time::sleep(wait).await;
        reply = *inner;
    }
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut builder = hyper::Response::builder().status(status);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder
                .body(Full::new(Bytes::from(body)).boxed())
                .expect("response")
        }
        Reply::Endless => {
            let chunks = futures_util::stream::iter(std::iter::repeat_with(|| {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'#'; 8192])))
            }));
            hyper::Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(BodyExt::boxed(StreamBody::new(chunks)))
                .expect("response")
        }
        Reply::Delayed(..) => unreachable!("unwrapped above"),
    }
}
