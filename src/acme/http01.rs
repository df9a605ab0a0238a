//! HTTP-01 validation (RFC 8555 section 8.3), the alternative to
//! TLS-ALPN-01: a plain HTTP listener (`[acme] http_listen`, port 80 in
//! production) answering `GET /.well-known/acme-challenge/<token>` with the
//! key authorization of a pending challenge, 404 for everything else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// The path prefix of HTTP-01 answers.
pub(crate) const PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending HTTP-01 answers, by token.
#[derive(Debug, Default)]
pub struct Http01Tokens {
    answers: RwLock<HashMap<String, String>>,
}

impl Http01Tokens {
    pub fn set(&self, token: &str, key_authorization: Option<String>) {
        let mut answers = self.answers.write().unwrap_or_else(|e| e.into_inner());
        match key_authorization {
            Some(answer) => answers.insert(token.to_owned(), answer),
            None => answers.remove(token),
        };
    }

    /// The answer to `GET path`, if one is pending.
    pub fn answer(&self, method: &Method, path: &str) -> Option<String> {
        if *method != Method::GET {
            return None;
        }
        let token = path.strip_prefix(PREFIX)?;
        self.answers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Serves plain HTTP on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "ACME HTTP-01 listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let tokens = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = tokens.answer(request.method(), request.uri().path());
                    async move {
                        let mut response = match answer {
                            Some(body) => {
                                tracing::info!(%peer, "ACME HTTP-01 validation served");
                                Response::new(Full::new(Bytes::from(body)))
                            }
                            None => {
                                let mut r =
                                    Response::new(Full::new(Bytes::from_static(b"not found\n")));
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = tokio::time::timeout(Duration::from_secs(30), served).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_tokens_are_answered() {
        let tokens = Http01Tokens::default();
        tokens.set("abc", Some("abc.thumb".into()));
        let path = format!("{PREFIX}abc");
        assert_eq!(tokens.answer(&Method::GET, &path), Some("abc.thumb".into()));
        assert_eq!(tokens.answer(&Method::POST, &path), None);
        assert_eq!(tokens.answer(&Method::GET, "/abc"), None);
        assert_eq!(tokens.answer(&Method::GET, &format!("{PREFIX}other")), None);
        tokens.set("abc", None);
        assert_eq!(tokens.answer(&Method::GET, &path), None);
    }
}
