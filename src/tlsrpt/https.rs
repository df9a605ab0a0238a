//! HTTPS POST of a gzipped report to an `https://` `rua` (RFC 8460
//! section 5.2): `Content-Type: application/tlsrpt+gzip`, the server's
//! certificate checked against the given roots, the host's address from
//! sealpost's resolver, a 2xx answer meaning delivered. One connection per
//! report, bounded in time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::dns::{Lookup, Resolver};

/// The bound on one POST, connection and handshake included.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Why a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("{0}: not an https URL with a host")]
    BadUrl(String),
    #[error("{host}: no address ({detail})")]
    NoAddress { host: String, detail: String },
    #[error("{0}")]
    Transport(String),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Posts reports over HTTPS.
#[derive(Clone)]
pub struct HttpsPoster {
    tls: tokio_rustls::TlsConnector,
    resolver: Arc<Resolver>,
}

impl HttpsPoster {
    pub fn new(
        roots: rustls::RootCertStore,
        resolver: Arc<Resolver>,
    ) -> Result<HttpsPoster, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsPoster {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            resolver,
        })
    }

    /// POSTs `gzipped` to `url`.
    pub async fn post(&self, url: &str, gzipped: Vec<u8>) -> Result<(), PostError> {
        match tokio::time::timeout(TIMEOUT, self.post_once(url, gzipped)).await {
            Ok(result) => result,
            Err(_) => Err(PostError::Timeout(TIMEOUT)),
        }
    }

    async fn post_once(&self, url: &str, gzipped: Vec<u8>) -> Result<(), PostError> {
        let uri: hyper::Uri = url.parse().map_err(|_| PostError::BadUrl(url.into()))?;
        let (Some("https"), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(PostError::BadUrl(url.into()));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let ip = match host.parse() {
            Ok(ip) => ip,
            Err(_) => match self.resolver.addresses(&host).await.resolved {
                Lookup::Records { records, .. } => records[0],
                Lookup::NoData { .. } | Lookup::NxDomain { .. } => {
                    return Err(PostError::NoAddress {
                        host,
                        detail: "no A or AAAA record".into(),
                    })
                }
                Lookup::Failed(e) => {
                    return Err(PostError::NoAddress {
                        host,
                        detail: e.to_string(),
                    })
                }
            },
        };
        let transport = |e: &dyn std::fmt::Display| PostError::Transport(e.to_string());
        let name = ServerName::try_from(host.clone()).map_err(|e| transport(&e))?;
        let tcp = tokio::net::TcpStream::connect(SocketAddr::new(ip, port))
            .await
            .map_err(|e| transport(&e))?;
        let stream = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| transport(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let request = Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/tlsrpt+gzip")
            .body(Full::new(Bytes::from(gzipped)))
            .map_err(|e| transport(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(&e))?;
        let status = response.status();
        // Read (and drop) a bounded answer so the connection ends cleanly.
        let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status(status.as_u16()))
        }
    }
}
