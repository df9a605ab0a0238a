//! A minimal HTTP/1.1 client for the admin socket (one request per
//! connection), used by the `sealpost queue`, `destinations` and `reload`
//! commands.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("sealpost is not running: nothing answers on the admin socket {} ({source})", .path.display())]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("cannot open the admin socket {}: permission denied (run as the sealpost user or a member of its [admin] group)", .path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to the admin socket {}: {source}", .path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("talking to sealpost on {}: {detail}", .path.display())]
    Http { path: PathBuf, detail: String },
    #[error("sealpost did not answer within {} seconds on {}", .timeout.as_secs(), .path.display())]
    Timeout { path: PathBuf, timeout: Duration },
}

/// An answer: the status code and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error` of a JSON error body (with any `errors` lines), or the
    /// body as text.
    pub fn error_text(&self) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        match parsed
            .as_ref()
            .and_then(|v| Some((v.get("error")?.as_str()?, v.get("errors"))))
        {
            Some((error, details)) => {
                let mut text = error.to_string();
                // Lines, or objects (a refused change's errors: `text`
                // and the `field` it is about).
                for detail in details.and_then(|d| d.as_array()).into_iter().flatten() {
                    let line = match (detail.as_str(), detail.get("text").and_then(|t| t.as_str()))
                    {
                        (Some(line), _) => line.to_string(),
                        (None, Some(line)) => match detail.get("field").and_then(|f| f.as_str()) {
                            Some(field) => format!("{line} (field {field})"),
                            None => line.to_string(),
                        },
                        (None, None) => continue,
                    };
                    text.push_str("\n  ");
                    text.push_str(&line);
                }
                text
            }
            None => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

/// Talks to one admin socket.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AdminClient {
    /// A client for `socket`; each request waits at most `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> AdminClient {
        AdminClient {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request (`path` with its query string); a JSON `body`
    /// goes with a POST.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Timeout {
                path: self.socket.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let socket = || self.socket.clone();
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        ClientError::NotRunning {
                            path: socket(),
                            source,
                        }
                    }
                    io::ErrorKind::PermissionDenied => {
                        ClientError::PermissionDenied { path: socket() }
                    }
                    _ => ClientError::Connect {
                        path: socket(),
                        source,
                    },
                })?;
        let http = |detail: String| ClientError::Http {
            path: socket(),
            detail,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "sealpost");
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Answer { status, body })
    }
}
