//! `sealpost serve`: opens the queue, makes or loads the STARTTLS
//! certificate, starts the admin API (`crate::admin`), runs the SMTP
//! listeners with the inbound reception and, when `[mta_sts_host]` lists
//! addresses, the HTTPS server of the hosted MTA-STS policies (RFC 8461
//! section 3.3), until SIGINT or SIGTERM; the admin socket file is
//! removed at shutdown.
//!
//! The stop is graceful (`docs/service.md`): the listeners close, SMTP
//! transactions in progress get [`SMTP_DRAIN`] to finish, the delivery
//! engine takes no new work and gives its waiting leases back to the
//! queue, and attempts under way get [`DELIVERY_GRACE`]. systemd hears of
//! each step (`crate::service::notify`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealpost_queue::{Queue, QueueError, QueueOptions};
use tracing::info;

use crate::actors::Engine;
use crate::admin::{AdminError, AdminServer, AdminState, ReloadFn};
use crate::config::{Config, LoadError};
use crate::console::ConsoleServer;
use crate::delivery::DeliveryContext;
use crate::dns::Resolver;
use crate::inbound::reception::Reception;
use crate::inbound::storage::Storage;
use crate::inbound::{
    ConnectionLimits, ConnectionSettings, Listener, ListenerError, SettingsSource, Timeouts,
};
pub use crate::live::ReloadError;
use crate::live::{LiveConfig, ReloadReport};
use crate::metrics::Metrics;
use crate::mta_sts::{self, host::ServeLimits, PolicyHost};
use crate::service::{notify, Health, Heartbeat};
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
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the MTA-STS policy host cannot listen on {address}: {source}")]
    PolicyHostListen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the DNS resolver: {0}")]
    Resolver(#[from] crate::dns::ResolverError),
    #[error("the TLS report counts: {0}")]
    TlsReports(#[from] crate::tlsrpt::daily::DailyError),
    #[error("the MTA-STS policy cache: {0}")]
    PolicyStore(#[from] crate::mta_sts::StoreError),
    #[error("`[mta_sts] ca_file` {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error(transparent)]
    Engine(#[from] crate::actors::EngineError),
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    #[error("[cluster]: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("ACME HTTP-01 listener: {0}")]
    AcmeListen(std::io::Error),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

/// Runs the server until a shutdown signal.
pub fn run(config: Config) -> Result<(), ServeError> {
    log_warnings(&config);
    let data_dir = config.server.data_dir.clone();
    let queue = Arc::new(Queue::open(
        data_dir.join("queue"),
        QueueOptions {
            // `[limits] max_message_size` (live, at most this) decides; the
            // queue only needs room for it and the Received header.
            max_body_bytes: queue_body_limit(),
            ..QueueOptions::default()
        },
    )?);

    let certificates = Arc::new(SniCertResolver::default());
    load_certificates(&config, &certificates)?;
    let tls_config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates.clone());
    let certificates_for_reload = certificates.clone();

    let live = Arc::new(LiveConfig::new(config.clone()));
    let metrics = Arc::new(Metrics::new());
    admit_busiest_tenants(&metrics, &queue);
    let shared = Arc::new(delivery_shared(
        &config,
        live.clone(),
        queue.clone(),
        metrics.clone(),
    )?);
    let acme = crate::acme::AcmeManager::load(
        live.clone(),
        &data_dir,
        shared.resolver.clone(),
        certificates.clone(),
        metrics.clone(),
    )?;
    let heartbeat = Arc::new(Heartbeat::from_environment());
    let engine = Engine::start_with(shared.clone(), worker_arbiters(), heartbeat.clone())?;
    // One reading of the disk reserve for the SMTP side and readiness.
    let storage = Arc::new(Storage::new(&queue));
    let health = Arc::new(Health::new(
        storage.clone(),
        heartbeat,
        disk_reserve(live.clone()),
    ));
    let reception = Arc::new(
        Reception::new(live.clone(), queue.clone())
            .with_storage(storage)
            .with_metrics(metrics.clone())
            .with_waker(engine.waker()),
    );
    let reload_fn: ReloadFn = {
        let live = live.clone();
        let certificates = certificates_for_reload.clone();
        Arc::new(move || reload(&live, &certificates))
    };
    let cluster_parts = (metrics.clone(), queue.clone(), engine.view());
    let engine_shared = shared.clone();
    let admin_state = Arc::new(AdminState {
        queue: queue.clone(),
        live: live.clone(),
        metrics,
        delivery: engine.view(),
        reload: reload_fn,
        health: health.clone(),
        certificates: certificates.clone(),
        drain: Arc::new(crate::cluster::drain::Drainer::new(
            queue.clone(),
            live.clone(),
        )),
        tls_reports: shared.tls_reports.clone(),
    });
    let tls_reports = shared.tls_reports.clone();
    let daily_reports = shared.tls_reports.clone();
    let addrs: Vec<_> = config.listeners.iter().map(|l| l.address).collect();
    // The start-bound settings; the configuration itself lives on in
    // `live` only (kept here, it would stay in memory beside every
    // configuration a reload or a change puts in force).
    let (admin_config, cluster_config, console_config) = (
        config.admin.clone(),
        config.cluster.clone(),
        config.console.clone(),
    );
    let managed_domains = config.policy.domains().len();
    drop(config);
    let (console_queue, console_metrics) = (queue.clone(), admin_state.metrics.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let mta_sts = shared.mta_sts.clone();
    let stop_began: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let (engine_ref, stop_began_ref) = (&engine, &stop_began);
    let served = runtime.block_on(async move {
        // Before anything listens: a SIGTERM while the listeners open is
        // kept for the graceful stop instead of ending the process.
        let signals = ShutdownSignals::listen();
        // Dropped at the end of this block: stops the API, removes the socket.
        let admin = AdminServer::start(&admin_config, admin_state).await?;
        let (metrics, queue, view) = cluster_parts;
        if let Some(c) = cluster_config {
            let cluster = crate::cluster::node::join(c, metrics, queue, view).await?;
            // From now on the engine asks the fleet for connections and
            // admissions, and the MTA-STS cache shares its policies.
            engine_shared.mta_sts.share_with(Arc::new(cluster.clone()));
            let _ = engine_shared.cluster.set(cluster);
        }
        // Dropped at the end of this block: stops the console.
        let _console = match &console_config {
            Some(c) => Some(ConsoleServer::start(c, live.clone(), console_queue, console_metrics, certificates.clone()).await?),
            None => None,
        };
        let listener = Listener::bind(&addrs).await?;
        start_policy_host(&live, certificates).await?;
        acme.listen_http01().await.map_err(ServeError::AcmeListen)?;
        tokio::spawn(acme.run());
        crate::mta_sts::spawn_refresher(mta_sts, std::time::Duration::from_secs(300));
        if let Some(reporter) = daily_reports {
            tokio::spawn(crate::tlsrpt::send::run_daily(
                reporter,
                Arc::new(crate::tlsrpt::SystemClock),
                std::time::Duration::from_secs(60),
            ));
        }
        let settings = connection_settings(live.clone());
        tokio::spawn(reload_on_sighup(live, certificates_for_reload));
        let listening = listener.local_addrs();
        health.set_listeners_open(true);
        info!(
            listeners = ?listening,
            managed_domains,
            queue = %data_dir.join("queue").display(),
            admin_socket = %admin.socket_path().display(),
            "sealpost is accepting mail"
        );
        notify::ready(&ready_status(&listening));
        // What the load freed (most of what it allocated) goes back to the
        // system, after the listeners are open (`crate::memory`).
        crate::memory::release_free_memory_soon();
        let stop = async {
            signals.recv().await;
            let _ = stop_began_ref.set(Instant::now());
            info!(
                smtp_drain = ?SMTP_DRAIN,
                delivery_grace = ?DELIVERY_GRACE,
                "stopping: no new connections or deliveries; sessions and deliveries under way may finish"
            );
            notify::stopping("stopping: finishing SMTP sessions and deliveries under way");
            health.set_listeners_open(false);
            engine_ref.pause();
        };
        listener
            .serve_with(
                reception,
                settings,
                Some(Arc::new(tls_config)),
                stop,
                SMTP_DRAIN,
            )
            .await;
        drop(admin);
        Ok::<(), ServeError>(())
    });
    let grace = match stop_began.get() {
        Some(began) => DELIVERY_GRACE.saturating_sub(began.elapsed()),
        None => Duration::ZERO,
    };
    notify::status("stopping: waiting for deliveries under way");
    engine.stop(grace);
    if let Some(reporter) = &tls_reports {
        reporter.flush();
    }
    info!("sealpost stopped");
    served
}

/// After SIGTERM: how long an SMTP transaction in progress may take to
/// finish (`Listener::serve_with`).
pub const SMTP_DRAIN: Duration = Duration::from_secs(10);

/// After SIGTERM: how long delivery attempts under way may take to finish
/// (counted from the signal, so it runs alongside [`SMTP_DRAIN`]).
/// Waiting leases go back to the queue at once. Short on purpose: an
/// attempt still resolving or connecting has nothing at stake, and one
/// cut in a transaction is only repeated at the next start.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(8);

/// Gives the tenants with the most queued messages their own metric
/// series first (`crate::metrics`, the per-tenant cap).
fn admit_busiest_tenants(metrics: &Metrics, queue: &Queue) {
    let mut tenants: Vec<(String, u64)> = queue.counts().by_tenant.into_iter().collect();
    tenants.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    metrics.admit(tenants.iter().map(|(name, _)| name.as_str()));
}

/// The systemd status line once ready.
fn ready_status(listening: &[std::net::SocketAddr]) -> String {
    let addresses: Vec<String> = listening.iter().map(|a| a.to_string()).collect();
    format!("accepting mail on {}", addresses.join(", "))
}

/// `[limits] min_free_disk` of the configuration in force (the readiness
/// check's reserve; 0 is none). The one place readiness reads the setting.
fn disk_reserve(live: Arc<LiveConfig>) -> crate::service::health::ReserveSource {
    Arc::new(move || Some(live.current().limits.min_free_disk).filter(|&r| r > 0))
}

/// The queue's own size limit: the largest `[limits] max_message_size`
/// plus room for the Received header, so the live setting is what decides.
fn queue_body_limit() -> usize {
    usize::try_from(crate::config::MAX_MESSAGE_SIZE_LIMIT + 64 * 1024).unwrap_or(usize::MAX)
}

/// What the SMTP listener's connections are served under (`[server]
/// hostname`, `[limits]`), from the configuration in force when each is
/// accepted; rebuilt once per reload.
fn connection_settings(live: Arc<LiveConfig>) -> SettingsSource {
    let cache: std::sync::Mutex<Option<(u64, Arc<ConnectionSettings>)>> = Default::default();
    Arc::new(move || {
        let generation = live.generation();
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((built, settings)) = cache.as_ref() {
            if *built == generation {
                return settings.clone();
            }
        }
        let settings = Arc::new(settings_of(&live.current()));
        *cache = Some((generation, settings.clone()));
        settings
    })
}

/// The connection settings of one configuration.
pub fn settings_of(config: &Config) -> ConnectionSettings {
    let limits = &config.limits;
    let session = SessionConfig {
        hostname: config.server.hostname.as_str().to_string(),
        max_message_size: limits.max_message_size,
        max_recipients: limits.max_recipients,
        tls_available: true,
        // Offered under TLS only; with no `[[tenants]] users` every
        // attempt is refused. Always on so a reload can add the first user.
        auth_available: true,
        ..SessionConfig::default()
    };
    ConnectionSettings {
        peers: crate::inbound::transfer::PeerSessions::new(&config.peers, &session).map(Arc::new),
        session: Arc::new(session),
        limits: ConnectionLimits {
            max_connections: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            ipv6_prefix: limits.ipv6_prefix,
        },
        timeouts: Timeouts {
            write: limits.write_timeout,
            session: limits.session_deadline,
            ..Timeouts::default()
        },
    }
}

/// One delivery arbiter per core.
fn worker_arbiters() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The delivery engine alone on `queue` under `config`, with no listeners,
/// on `arbiters` worker arbiters: for tests and benches that drive the
/// engine in process.
pub fn start_engine(
    config: &Config,
    queue: Arc<Queue>,
    arbiters: usize,
) -> Result<Engine, ServeError> {
    let live = Arc::new(LiveConfig::new(config.clone()));
    let shared = delivery_shared(config, live, queue, Arc::new(Metrics::new()))?;
    Ok(Engine::start(Arc::new(shared), arbiters)?)
}

/// What the delivery engine shares: the resolver of `[dns]`, the MTA-STS
/// policy cache (persisted in the data directory) and its WebPKI roots.
pub fn delivery_shared(
    config: &Config,
    live: Arc<LiveConfig>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
) -> Result<DeliveryContext, ServeError> {
    use crate::mta_sts::{
        HttpsFetcherConfig, HttpsPolicyFetcher, PolicyCache, PolicyStore, SystemClock, TrustRoots,
    };
    let resolver = Arc::new(Resolver::new(&config.dns.resolver_settings())?);
    let mut roots = TrustRoots::default();
    if let Some(path) = &config.mta_sts.ca_file {
        roots.extra = read_pem_certificates(path).map_err(|reason| ServeError::CaFile {
            path: path.display().to_string(),
            reason,
        })?;
    }
    let fetcher = HttpsPolicyFetcher::new(
        &HttpsFetcherConfig {
            roots: roots.clone(),
            port: config.mta_sts.https_port,
            ..HttpsFetcherConfig::default()
        },
        resolver.clone(),
    )?;
    let store = PolicyStore::open(&config.server.data_dir.join("mta-sts"))?;
    let cache = PolicyCache::new(
        resolver.clone(),
        Arc::new(fetcher),
        store,
        Arc::new(SystemClock),
    );
    let webpki = match crate::mta_sts::webpki_verifier(&roots) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "no WebPKI verifier: mail under MTA-STS enforce waits");
            None
        }
    };
    let tls_reports = tls_reporter(config, &live, &queue, &resolver, &roots)?;
    Ok(DeliveryContext {
        queue,
        live,
        resolver,
        mta_sts: Arc::new(cache),
        webpki,
        metrics,
        body_memory: crate::delivery::BodyMemory::default(),
        cluster: std::sync::OnceLock::new(),
        tls_reports: Some(tls_reports),
    })
}

/// The TLS report sender (RFC 8460): the daily aggregate under the data
/// directory, HTTPS POSTs trusting the MTA-STS roots (`[mta_sts] ca_file`
/// or WebPKI).
fn tls_reporter(
    config: &Config,
    live: &Arc<LiveConfig>,
    queue: &Arc<Queue>,
    resolver: &Arc<Resolver>,
    roots: &crate::mta_sts::TrustRoots,
) -> Result<Arc<crate::tlsrpt::Reporter>, ServeError> {
    let daily = crate::tlsrpt::Daily::open(&config.server.data_dir)?;
    let poster = match roots.root_store() {
        Ok(store) => crate::tlsrpt::https::HttpsPoster::new(store, resolver.clone()).ok(),
        Err(e) => {
            tracing::warn!(error = %e, "no roots for TLS report HTTPS POSTs");
            None
        }
    };
    Ok(Arc::new(crate::tlsrpt::Reporter::new(
        daily,
        live.clone(),
        queue.clone(),
        resolver.clone(),
        poster,
    )))
}

fn read_pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect();
    let certs = certs.map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// Serves the hosted MTA-STS policies on every `[mta_sts_host] listen`
/// address, with the STARTTLS certificates (chosen by SNI), and keeps the
/// served set in step with the configuration in force.
async fn start_policy_host(
    live: &Arc<LiveConfig>,
    certificates: Arc<SniCertResolver>,
) -> Result<(), ServeError> {
    let config = live.current();
    if config.mta_sts_host.listen.is_empty() {
        return Ok(());
    }
    let mut listeners = Vec::with_capacity(config.mta_sts_host.listen.len());
    for &address in &config.mta_sts_host.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| ServeError::PolicyHostListen { address, source })?;
        listeners.push(listener);
    }
    let host = Arc::new(PolicyHost::new(&config.hosted_policies()));
    host.set_report_receiver(Arc::new(crate::tlsrpt::Receiver::new(live.clone())));
    let tls = mta_sts::host::server_config(certificates)?;
    for listener in listeners {
        tokio::spawn(
            host.clone()
                .serve(listener, tls.clone(), ServeLimits::default()),
        );
    }
    let mut changes = live.subscribe();
    let live = live.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            host.replace(&live.current().hosted_policies());
        }
    });
    info!(
        addresses = ?config.mta_sts_host.listen,
        domains = config.hosted_policies().len(),
        "serving hosted MTA-STS policies"
    );
    Ok(())
}

/// Loads every configured certificate (or makes the self-signed default)
/// and installs them together; on any error nothing is replaced.
pub fn load_certificates(config: &Config, into: &SniCertResolver) -> Result<(), CertError> {
    let default = match &config.tls.default {
        Some(paths) => tls::load_pem(&paths.certificate, &paths.key)?,
        None => tls::self_signed_in(
            &config.server.data_dir.join("tls"),
            config.server.hostname.as_str(),
        )?,
    };
    let mut named = Vec::with_capacity(config.tls.sni.len());
    for (name, paths) in &config.tls.sni {
        named.push((
            name.as_str().to_string(),
            tls::load_pem(&paths.certificate, &paths.key)?,
        ));
    }
    into.replace(named, Some(default));
    Ok(())
}

/// Re-reads the configuration and the certificates it names and puts them
/// in force together; on any error the running ones stay. SIGHUP and the
/// admin socket's reload both come here.
pub fn reload(
    live: &LiveConfig,
    certificates: &SniCertResolver,
) -> Result<ReloadReport, ReloadError> {
    notify::reloading();
    let outcome = reload_config(live, certificates);
    // A reload, applied or refused, freed what it parsed (`crate::memory`).
    crate::memory::release_free_memory_soon();
    notify::ready(match &outcome {
        Ok(_) => "configuration reloaded; accepting mail",
        Err(_) => "reload refused (the configuration in force stays); accepting mail",
    });
    outcome
}

fn reload_config(
    live: &LiveConfig,
    certificates: &SniCertResolver,
) -> Result<ReloadReport, ReloadError> {
    // No change through the admin API runs meanwhile (one would be lost).
    let _edits = crate::config::edit::lock();
    let source = live.current().source.clone();
    let config = if source == crate::config::EMBEDDED_DEFAULT_NAME {
        Config::embedded_default().map_err(LoadError::Invalid)?
    } else {
        Config::reload(std::path::Path::new(&source), &live.current())?
    };
    load_certificates(&config, certificates)?;
    log_warnings(&config);
    for error in &config.tenant_files.kept_previous {
        tracing::error!(error = %error, "tenant file refused; its previous version stays in force");
    }
    let report = live.replace(config);
    info!(
        generation = report.generation,
        managed_domains = report.managed_domains,
        needs_restart = ?report.needs_restart,
        "configuration reloaded"
    );
    Ok(report)
}

/// The configuration's valid but risky settings (`sealpost config check`
/// prints the same), logged when it is put in force.
fn log_warnings(config: &Config) {
    for warning in &config.warnings {
        tracing::warn!(warning = %warning, "configuration warning");
    }
}

/// SIGHUP reloads the configuration and the certificate files: renewed
/// certificates take effect for new handshakes, policy changes for new
/// transactions and the next delivery attempt of queued mail.
async fn reload_on_sighup(live: Arc<LiveConfig>, certificates: Arc<SniCertResolver>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the configuration reloads only on restart");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Err(e) = reload(&live, &certificates) {
            tracing::error!(error = %e, "reload failed; the configuration and certificates in force stay");
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, taken over from the default action (end
/// the process at once) when [`ShutdownSignals::listen`] is called: one
/// that comes before [`ShutdownSignals::recv`] is polled is kept.
struct ShutdownSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn listen() -> ShutdownSignals {
        use tokio::signal::unix::{signal, SignalKind};
        let take = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}: it ends sealpost without a graceful stop");
                None
            }
        };
        ShutdownSignals {
            interrupt: take(SignalKind::interrupt(), "SIGINT"),
            terminate: take(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// Waits for the first of the two.
    async fn recv(mut self) {
        async fn one(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.interrupt) => {}
            _ = one(&mut self.terminate) => {}
        }
    }
}
