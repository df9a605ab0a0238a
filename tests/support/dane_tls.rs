//! TLS peers on loopback for the DANE tests: a rustls server presenting a
//! chosen chain (or a chain with somebody else's key), a client handshake
//! with any verifier, and an "encrypt without authentication" verifier
//! that still checks handshake signatures (what the SMTP client uses for
//! opportunistic and unauthenticated TLS).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
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

/// Accepts any certificate, checks handshake signatures: TLS that
/// encrypts but does not authenticate.
#[derive(Debug)]
pub struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A client config that encrypts without authenticating the server.
pub fn encrypt_only_client() -> rustls::ClientConfig {
    let provider = provider();
    let verifier = Arc::new(EncryptOnly(provider.signature_verification_algorithms));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(super::pki::ALL_VERSIONS)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}
