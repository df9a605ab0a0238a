//! `sealpost serve`: opens the queue, makes or loads the STARTTLS
//! certificate, and runs the SMTP listeners with the inbound reception
//! until SIGINT or SIGTERM.

use std::sync::Arc;

use sealpost_queue::{Queue, QueueError, QueueOptions};
use tracing::info;

use crate::config::Config;
use crate::inbound::reception::Reception;
use crate::inbound::{ConnectionLimits, Listener, ListenerError, Timeouts};
use crate::smtp::SessionConfig;
use crate::tls::{self, CertError, SniCertResolver};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the queue: {0}")]
    Queue(#[from] QueueError),
    #[error("the STARTTLS certificate: {0}")]
    Certificate(#[from] CertError),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Listen(#[from] ListenerError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the server until a shutdown signal.
pub fn run(config: Config) -> Result<(), ServeError> {
    let data_dir = &config.server.data_dir;
    let hostname = config.server.hostname.as_str().to_string();
    let queue = Arc::new(Queue::open(
        data_dir.join("queue"),
        QueueOptions::default(),
    )?);

    let certificates = Arc::new(SniCertResolver::default());
    certificates.set_default(Some(tls::self_signed_in(&data_dir.join("tls"), &hostname)?));
    let tls_config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates);

    let session = Arc::new(SessionConfig {
        hostname: hostname.clone(),
        tls_available: true,
        ..SessionConfig::default()
    });
    let reception = Arc::new(Reception::new(
        hostname,
        config.policy.clone(),
        config.relay.clone(),
        queue.clone(),
    ));
    let addrs: Vec<_> = config.listeners.iter().map(|l| l.address).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let listener = Listener::bind(&addrs).await?;
        info!(
            listeners = ?listener.local_addrs(),
            managed_domains = config.policy.domains().len(),
            queue = %data_dir.join("queue").display(),
            "sealpost is accepting mail"
        );
        listener
            .serve(
                reception,
                session,
                Some(Arc::new(tls_config)),
                ConnectionLimits::default(),
                Timeouts::default(),
                shutdown_signal(),
            )
            .await;
        info!("shutting down");
        Ok::<(), ServeError>(())
    })?;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
