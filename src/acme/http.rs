//! The HTTPS client the ACME crate talks through: one connection per
//! request (an issuance makes a dozen requests a few times a day), hyper's
//! HTTP/1.1 over tokio-rustls with the ring provider and the roots of
//! `[acme] ca_file` (or the WebPKI roots), each request bounded in time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::ServerName;

/// The bound on one request, connection and handshake included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response accepted (a certificate chain is a few KiB).
const MAX_RESPONSE: usize = 1024 * 1024;

/// HTTPS to the ACME server.
pub(crate) struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
}

impl AcmeHttp {
    pub fn new(roots: rustls::RootCertStore) -> Result<AcmeHttp, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AcmeHttp {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn send(
    tls: tokio_rustls::TlsConnector,
    request: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri}: ACME is spoken over https only").into());
    }
    let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.clone())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let stream = tls.connect(name, tcp).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "ACME HTTPS connection ended with an error");
        }
    });
    // Origin form on the request line, the authority in Host.
    let (mut parts, body) = request.into_parts();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    parts.uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()?;
    parts
        .headers
        .insert(hyper::header::HOST, authority.parse()?);
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, MAX_RESPONSE)
        .collect()
        .await?
        .to_bytes();
    Ok(BytesResponse::from(hyper::Response::from_parts(
        parts,
        http_body_util::Full::new(body),
    )))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(instant_acme::Error::Other(e)),
                Err(_) => Err(instant_acme::Error::Str("ACME request timed out")),
            }
        })
    }
}
