//! The web console (`docs/console.md`): the "Transport Layer Security (TLS)
//! Peers" screen over HTTPS, for operators and tenants' administrators.
//!
//! - [`session`]: sessions (cookies, CSRF tokens, idle timeout) and the
//!   sign-in limits;
//! - [`routes`]: the requests, who may make them, and the changes;
//! - [`pages`]: the server-rendered pages; [`html`]: escaping and the
//!   frame; [`words`]: the product's wording;
//! - [`respond`]: responses with the security headers.
//!
//! Every change goes through [`crate::admin::tenant_edits::apply_change`],
//! the admin API's path: the same validation, atomic tenant-file write,
//! live apply and audit log. Nothing of the admin Unix socket is reachable
//! from here. The listener is off unless `[console] listen` is set; its
//! certificates are the SMTP listener's (`[tls]`, chosen by SNI).

mod activity;
mod changes;
pub mod defaults;
mod forms;
pub mod html;
pub mod pages;
mod probe;
pub mod respond;
pub mod routes;
pub mod session;
pub(crate) mod words;

use std::net::SocketAddr;
use std::sync::Arc;

use sealpost_queue::Queue;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ConsoleConfig;
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::tls::certs::SniCertResolver;

/// What the console's requests read and act on.
pub(crate) struct ConsoleState {
    pub live: Arc<LiveConfig>,
    pub queue: Arc<Queue>,
    /// TLS outcomes per tenant and peer (the activity page).
    pub metrics: Arc<Metrics>,
    pub sessions: session::Sessions,
    pub limits: session::SignInLimits,
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("the console's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The running console listeners; dropping it stops them.
#[derive(Debug)]
pub(crate) struct ConsoleServer {
    tasks: Vec<JoinHandle<()>>,
}

impl ConsoleServer {
    /// Binds every `[console] listen` address and serves HTTPS with the
    /// certificates of `certificates`. Must run inside the tokio runtime.
    pub async fn start(
        config: &ConsoleConfig,
        live: Arc<LiveConfig>,
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        certificates: Arc<SniCertResolver>,
    ) -> Result<ConsoleServer, ConsoleError> {
        let mut listeners = Vec::with_capacity(config.listen.len());
        for &address in &config.listen {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| ConsoleError::Listen { address, source })?;
            listeners.push(listener);
        }
        let tls = tls_config(certificates)?;
        let state = Arc::new(ConsoleState {
            live,
            queue,
            metrics,
            sessions: session::Sessions::new(config.idle_timeout),
            limits: session::SignInLimits::default(),
        });
        let addresses: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let tasks = listeners
            .into_iter()
            .map(|l| tokio::spawn(accept(l, tls.clone(), state.clone())))
            .collect();
        tracing::info!(addresses = ?addresses, "web console listening");
        Ok(ConsoleServer { tasks })
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// TLS 1.2 and 1.3 (ring), ALPN `http/1.1`, certificates by SNI.
fn tls_config(
    certificates: Arc<SniCertResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept(listener: TcpListener, tls: Arc<rustls::ServerConfig>, state: Arc<ConsoleState>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = crate::admin::http::connection_slots();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "console: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "console: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            crate::admin::http::serve_connection(stream, move |request| {
                routes::handle(state.clone(), peer.ip(), request)
            })
            .await;
        });
    }
}
