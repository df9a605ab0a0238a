//! TLS peers on loopback for the DANE tests: a rustls server presenting a
//! chosen chain (or a chain with somebody else's key), a client handshake
//! with any verifier, and a client that encrypts without authenticating
//! (sealpost's own `tls::Unauthenticated` verifier).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::pki::{provider, Leaf};

/// A TLS server on 127.0.0.1 that completes handshakes and answers "ok".
pub struct TlsPeer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsPeer {
    pub async fn start(config: Arc<rustls::ServerConfig>) -> TlsPeer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS peer");
        let addr = listener.local_addr().expect("peer address");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        TlsPeer { addr, task }
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Presents `chain` but signs with `key`: a server that stole a
/// certificate without its private key.
#[derive(Debug)]
struct StolenCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for StolenCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A server config presenting `victim`'s chain with `thief`'s key.
pub fn stolen_certificate_config(
    victim: &Leaf,
    thief: &Leaf,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let key = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        thief.key.clone_key(),
    ))
    .expect("thief key");
    let certified = CertifiedKey::new(victim.chain.clone(), key);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StolenCertificate(Arc::new(certified))));
    Arc::new(config)
}

/// A server config presenting exactly `chain` (e.g. without the CA).
pub fn chain_config(chain: Vec<CertificateDer<'static>>, leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(super::pki::ALL_VERSIONS)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(leaf.key.clone_key()))
        .expect("server cert");
    Arc::new(config)
}

/// Connect to `addr`, handshake as `sni`, read the greeting. The error is
/// the rustls error when the handshake failed in rustls.
pub async fn handshake(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    sni: &str,
) -> Result<rustls::ProtocolVersion, HandshakeError> {
    let stream = TcpStream::connect(addr).await.map_err(HandshakeError::Io)?;
    let name = ServerName::try_from(sni.to_string()).expect("SNI name");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(name, stream).await.map_err(|err| {
        match err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls_error) => HandshakeError::Tls(tls_error.clone()),
            None => HandshakeError::Io(err),
        }
    })?;
    let mut greeting = Vec::new();
    tls.read_to_end(&mut greeting)
        .await
        .map_err(HandshakeError::Io)?;
    assert_eq!(greeting, b"ok");
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .expect("negotiated version");
    Ok(version)
}

#[derive(Debug)]
pub enum HandshakeError {
    Tls(rustls::Error),
    Io(std::io::Error),
}

impl HandshakeError {
    pub fn tls(&self) -> Option<&rustls::Error> {
        match self {
            HandshakeError::Tls(err) => Some(err),
            HandshakeError::Io(_) => None,
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Tls(err) => write!(f, "{err}"),
            HandshakeError::Io(err) => write!(f, "{err}"),
        }
    }
}

/// A client config that encrypts without authenticating the server.
pub fn encrypt_only_client() -> rustls::ClientConfig {
    sealpost::tls::unauthenticated_client_config(sealpost::policy::MinTlsVersion::Any)
        .as_ref()
        .clone()
}
