//! Fetching the policy file over HTTPS (RFC 8461 section 3.3).
//!
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, with the certificate
//! valid for `mta-sts.<domain>` under WebPKI; only HTTP 200 is a policy,
//! redirects are never followed, HTTP caching is not used, the media type
//! must be `text/plain` (section 3.2: senders SHOULD validate it, to guard
//! against hosts where users may publish other content at a path), the body
//! is read up to 64 KiB and the whole fetch is bounded by a timeout (a
//! minute by default).
//!
//! The fetch sits behind [`PolicyFetcher`] so the cache and its tests do not
//! need a network; [`HttpsPolicyFetcher`] is the real client (hyper 1 over
//! tokio-rustls). Name resolution of the policy host is injected too
//! ([`HostResolver`]) and the port is configurable, so tests can serve a
//! policy from 127.0.0.1.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

/// Path of the policy file on the policy host (RFC 8461 section 3.3).
pub(crate) const WELL_KNOWN_PATH: &str = "/.well-known/mta-sts.txt";
/// Largest accepted policy body.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Default bound on a whole fetch.
pub(crate) const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The policy host name for a policy domain.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

/// Fetches the body of a domain's policy file. The cache calls this; tests
/// substitute a double that counts calls.
pub trait PolicyFetcher: Send + Sync {
    /// `domain` is the policy domain (lower case, no trailing dot); the
    /// returned text is the body as served, not yet parsed.
    fn fetch<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<String, FetchError>>;
}

/// Why no policy body was obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("{host}: not a valid host name")]
    InvalidHost { host: String },
    #[error("{host}: cannot resolve: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{host} port {port}: cannot connect: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("{host}: certificate not valid under WebPKI: {reason}")]
    Certificate { host: String, reason: String },
    #[error("{host}: TLS handshake failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: HTTP error: {reason}")]
    Http { host: String, reason: String },
    #[error("{host}: redirect ({status}) to {location:?} not followed")]
    Redirect {
        host: String,
        status: u16,
        location: Option<String>,
    },
    #[error("{host}: HTTP status {status} (only 200 is a policy)")]
    Status { host: String, status: u16 },
    #[error("{host}: media type {found:?} is not text/plain")]
    ContentType { host: String, found: Option<String> },
    #[error("{host}: policy body larger than {limit} bytes")]
    TooLarge { host: String, limit: usize },
    #[error("{host}: policy body is not UTF-8")]
    NotUtf8 { host: String },
    #[error("{host}: no complete answer within {after:?}")]
    Timeout { host: String, after: Duration },
}

impl FetchError {
    /// The RFC 8460 `result-type` a TLS report records for this failure.
    pub fn tlsrpt_result_type(&self) -> &'static str {
        match self {
            FetchError::Certificate { .. } => "sts-webpki-invalid",
            _ => "sts-policy-fetch-error",
        }
    }
}

/// Trust anchors for WebPKI validation (policy hosts and, under a policy,
/// MX hosts).
#[derive(Debug, Clone)]
pub struct TrustRoots {
    /// Include the Mozilla roots from `webpki-roots`.
    pub webpki_roots: bool,
    /// Further trusted CA certificates (private PKI, tests).
    pub extra: Vec<CertificateDer<'static>>,
}

impl Default for TrustRoots {
    fn default() -> Self {
        TrustRoots {
            webpki_roots: true,
            extra: Vec::new(),
        }
    }
}

impl TrustRoots {
    /// Only the given CAs (no public roots).
    pub fn only(extra: Vec<CertificateDer<'static>>) -> TrustRoots {
        TrustRoots {
            webpki_roots: false,
            extra,
        }
    }

    /// The rustls root store; an extra certificate that is not a usable
    /// trust anchor is reported.
    pub(crate) fn root_store(&self) -> Result<rustls::RootCertStore, rustls::Error> {
        let mut store = rustls::RootCertStore::empty();
        if self.webpki_roots {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &self.extra {
            store.add(cert.clone())?;
        }
        Ok(store)
    }
}

/// Resolves the policy host to socket addresses.
pub trait HostResolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// A fixed table of host names to addresses (tests, overrides).
#[derive(Debug, Default, Clone)]
pub struct StaticHosts(pub HashMap<String, Vec<IpAddr>>);

impl HostResolver for StaticHosts {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let found = self.0.get(&host.to_ascii_lowercase()).cloned();
        Box::pin(async move {
            match found {
                Some(ips) => Ok(ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "host not in table")),
            }
        })
    }
}

/// Settings of the HTTPS fetcher.
#[derive(Debug, Clone)]
pub struct HttpsFetcherConfig {
    pub roots: TrustRoots,
    /// 443 except in tests.
    pub port: u16,
    /// Bound on resolution, connection, handshake, request and body.
    pub timeout: Duration,
}

impl Default for HttpsFetcherConfig {
    fn default() -> Self {
        HttpsFetcherConfig {
            roots: TrustRoots::default(),
            port: 443,
            timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }
}

/// The real fetcher: hyper 1 HTTP/1.1 over tokio-rustls with WebPKI.
pub struct HttpsPolicyFetcher {
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<dyn HostResolver>,
    port: u16,
    timeout: Duration,
}

impl HttpsPolicyFetcher {
    pub fn new(
        config: &HttpsFetcherConfig,
        resolver: Arc<dyn HostResolver>,
    ) -> Result<HttpsPolicyFetcher, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(config.roots.root_store()?)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsPolicyFetcher {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            resolver,
            port: config.port,
            timeout: config.timeout,
        })
    }

    async fn fetch_inner(&self, host: &str) -> Result<String, FetchError> {
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|_| FetchError::InvalidHost {
                host: host.to_string(),
            })?;
        let addrs =
            self.resolver
                .resolve(host, self.port)
                .await
                .map_err(|e| FetchError::Resolve {
                    host: host.to_string(),
                    reason: e.to_string(),
                })?;
        let tcp = connect_any(host, self.port, &addrs).await?;
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_error(host, e))?;

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| http_error(host, e))?;
        let request = hyper::Request::get(WELL_KNOWN_PATH)
            .header(HOST, host)
            .header(USER_AGENT, concat!("sealpost/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http {
                host: host.to_string(),
                reason: e.to_string(),
            })?;

        let work = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| http_error(host, e))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(FetchError::Redirect {
                    host: host.to_string(),
                    status: status.as_u16(),
                    location: header_text(response.headers().get(LOCATION)),
                });
            }
            if status != hyper::StatusCode::OK {
                return Err(FetchError::Status {
                    host: host.to_string(),
                    status: status.as_u16(),
                });
            }
            let content_type = header_text(response.headers().get(CONTENT_TYPE));
            if !content_type.as_deref().is_some_and(is_text_plain) {
                return Err(FetchError::ContentType {
                    host: host.to_string(),
                    found: content_type,
                });
            }
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| http_error(host, e))?;
                if let Some(data) = frame.data_ref() {
                    if bytes.len() + data.len() > MAX_POLICY_BYTES {
                        return Err(FetchError::TooLarge {
                            host: host.to_string(),
                            limit: MAX_POLICY_BYTES,
                        });
                    }
                    bytes.extend_from_slice(data);
                }
            }
            String::from_utf8(bytes).map_err(|_| FetchError::NotUtf8 {
                host: host.to_string(),
            })
        };
        // The connection must be driven while the request runs; if it ends
        // first (cleanly), the response may still be buffered, so finish it.
        let mut work = std::pin::pin!(work);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            biased;
            result = &mut work => result,
            ended = &mut conn => match ended {
                Ok(()) => work.await,
                Err(e) => Err(http_error(host, e)),
            },
        }
    }
}

impl PolicyFetcher for HttpsPolicyFetcher {
    fn fetch<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<String, FetchError>> {
        Box::pin(async move {
            let host = policy_host(domain);
            match tokio::time::timeout(self.timeout, self.fetch_inner(&host)).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::Timeout {
                    host,
                    after: self.timeout,
                }),
            }
        })
    }
}

/// `text/plain`, any case, with or without parameters such as `charset`.
fn is_text_plain(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("text/plain")
}

fn header_text(value: Option<&hyper::header::HeaderValue>) -> Option<String> {
    value.map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(200)
            .collect()
    })
}

async fn connect_any(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
) -> Result<tokio::net::TcpStream, FetchError> {
    let mut last = String::from("no address");
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(FetchError::Connect {
        host: host.to_string(),
        port,
        reason: last,
    })
}

fn tls_error(host: &str, e: io::Error) -> FetchError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => FetchError::Certificate {
            host: host.to_string(),
            reason: format!("{cert:?}"),
        },
        _ => FetchError::Tls {
            host: host.to_string(),
            reason: e.to_string(),
        },
    }
}

fn http_error(host: &str, e: hyper::Error) -> FetchError {
    FetchError::Http {
        host: host.to_string(),
        reason: e.to_string(),
    }
}

/// Policy hosts resolved by sealpost's own resolver (what `serve` uses, so
/// `[dns]` applies to MTA-STS too).
impl HostResolver for crate::dns::Resolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            match self.addresses(host).await.lookup {
                crate::dns::Lookup::Records { records, .. } => Ok(records
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect()),
                crate::dns::Lookup::Failed(failure) => Err(io::Error::other(format!(
                    "{host}: address lookup failed: {failure}"
                ))),
                _ => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host}: no address records"),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for (value, ok) in [
            ("text/plain", true),
            ("TEXT/Plain; charset=utf-8", true),
            (" text/plain ;charset=us-ascii", true),
            ("text/html", false),
            ("text/plainx", false),
            ("application/octet-stream", false),
            ("", false),
        ] {
            assert_eq!(is_text_plain(value), ok, "{value:?}");
        }
    }
}
