//! A fleet of sealpost nodes sharing limits and state in Redis (or
//! Valkey): connection leases per destination, GCRA message rates per
//! tenant and per tenant and destination, the fleet view, and a shared
//! MTA-STS policy cache. Each node keeps its own durable queue; nothing
//! here holds mail.
//!
//! The interface the delivery engine calls (see `docs/cluster.md`):
//! - [`Cluster::try_acquire_connection`] before opening a connection to a
//!   destination: a [`ConnectionLease`] that renews itself while held and
//!   is released when dropped;
//! - [`Cluster::admit`] before handing a tenant's message to a
//!   connection: [`Admission::Admitted`], or how long to wait;
//! - [`Cluster::set_report_source`] once, for the fleet view.
//!
//! When Redis fails (an error, or no answer within `timeout`), the node
//! falls back to local limits at once: each fleet-wide limit divided by the
//! number of nodes last seen alive ([`local::local_connections`],
//! [`local::local_rate`]). A heartbeat every 250 ms notices both the
//! outage (so within 1 s even while nothing is asked of Redis) and the
//! recovery, which makes limits shared again. Both show in the logs and in
//! `/metrics` (`sealpost_cluster_limits_shared`,
//! `sealpost_cluster_nodes_alive`).
//!
//! On recovery a node first writes the connection leases it holds back to
//! Redis (a restarted Redis has none of them), then beats; until as many
//! nodes as before the outage have beaten again (each having written its
//! leases back first), or `node_ttl` has passed, its new connections stay
//! counted against its local share and are written to Redis as they are
//! taken, so that the fleet never counts fewer connections than are open.

pub mod drain;
pub mod fleet;
mod lease;
pub mod local;
mod mta_sts;
pub mod node;
pub mod scripts;

pub use lease::ConnectionLease;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisResult};
use tokio::task::JoinHandle;

use crate::config::{ClusterConfig, Scope};
use crate::metrics::Metrics;
use fleet::{FleetView, NodeReport, NodeStatus};
use local::{local_connections, local_rate, Gcra, LocalState};
use scripts::Scripts;

/// How often a node tells Redis it is alive (and checks Redis is).
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
/// A node publishes its report every this many heartbeats (1 s).
const REPORT_EVERY: u64 = 4;

/// Why a call to Redis gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error("bad Redis URL: {0}")]
    Url(String),
    #[error("Redis: {0}")]
    Redis(String),
    #[error("cluster.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("limits are local (Redis is out): the shared state cannot be used")]
    Local,
    #[error("Redis key {key}: unreadable value: {reason}")]
    Decode { key: String, reason: String },
}

/// Whether limits are counted in Redis or on this node alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    /// Redis is out: fleet-wide limits divided by the nodes last alive.
    Local,
}

/// Where the limit that made a message wait is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// In Redis, for the whole fleet.
    Fleet,
    /// On this node: a `local:` limit, or a fleet-wide one during an outage.
    Node,
}

/// The answer of [`Cluster::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// A rate is exhausted: try again after `after`.
    Wait {
        after: Duration,
        counted: Counted,
    },
}

/// This node's handle on the fleet; clones share it.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

type ReportSource = Box<dyn Fn() -> NodeReport + Send + Sync>;

struct Inner {
    config: ClusterConfig,
    redis: ConnectionManager,
    scripts: Scripts,
    shared: AtomicBool,
    /// When limits last became shared again after an outage (not at the
    /// start: a node starting holds no lease).
    recovered_at: Mutex<Option<Instant>>,
    /// The fleet leases this node holds: member -> destination (written
    /// back to Redis when it answers again after an outage).
    held: Mutex<HashMap<String, String>>,
    /// Nodes heard of within `node_ttl` at the last heartbeat (at least 1).
    alive: AtomicUsize,
    local: Mutex<LocalState>,
    epoch: Instant,
    next_lease: AtomicU64,
    metrics: Option<Arc<Metrics>>,
    report: Mutex<Option<ReportSource>>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters left by a panic are still counters.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Joins the fleet as `config.node`: one heartbeat is tried before
    /// returning (limits start shared if it succeeds, local otherwise),
    /// then a task keeps beating every [`HEARTBEAT_INTERVAL`]. Fails only
    /// for a URL the client refuses; an unreachable Redis is an outage.
    pub async fn start(
        config: ClusterConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Cluster, ClusterError> {
        let cluster = Cluster::connect(config, metrics)?;
        cluster.inner.beat(0).await;
        let weak = Arc::downgrade(&cluster.inner);
        let task = tokio::spawn(heartbeat(weak));
        *lock(&cluster.inner.heartbeat) = Some(task);
        Ok(cluster)
    }

    /// Reads the fleet's state without joining it (no heartbeat): for
    /// `sealpost fleet`.
    pub async fn observe(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let cluster = Cluster::connect(config, None)?;
        cluster.inner.shared.store(true, Ordering::SeqCst);
        let _: () = cluster
            .run(|mut redis| async move { redis::cmd("PING").query_async(&mut redis).await })
            .await?;
        Ok(cluster)
    }

    fn connect(
        config: ClusterConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Cluster, ClusterError> {
        let client = match &config.ca_file {
            None => redis::Client::open(config.redis.as_str()),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| ClusterError::CaFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(config.redis.as_str(), certificates)
            }
        }
        .map_err(|e| ClusterError::Url(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let redis = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| ClusterError::Redis(e.to_string()))?;
        Ok(Cluster {
            inner: Arc::new(Inner {
                config,
                redis,
                scripts: Scripts::default(),
                shared: AtomicBool::new(false),
                recovered_at: Mutex::new(None),
                held: Mutex::new(HashMap::new()),
                alive: AtomicUsize::new(1),
                local: Mutex::new(LocalState::default()),
                epoch: Instant::now(),
                next_lease: AtomicU64::new(0),
                metrics,
                report: Mutex::new(None),
                heartbeat: Mutex::new(None),
            }),
        })
    }

    /// Leaves the fleet: no more heartbeats or reports (the node shows as
    /// silent after `node_ttl`). Held leases stay until released or expired.
    pub fn stop(&self) {
        if let Some(task) = lock(&self.inner.heartbeat).take() {
            task.abort();
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    pub fn mode(&self) -> Mode {
        if self.is_shared() {
            Mode::Shared
        } else {
            Mode::Local
        }
    }

    fn is_shared(&self) -> bool {
        self.inner.shared.load(Ordering::SeqCst)
    }

    /// Nodes heard of within `node_ttl` at the last heartbeat that reached
    /// Redis, this one included: the divisor of the fallback.
    pub fn nodes_alive(&self) -> usize {
        self.inner.alive.load(Ordering::SeqCst).max(1)
    }

    /// What the fleet view shows of this node, asked for every second.
    pub fn set_report_source(&self, source: impl Fn() -> NodeReport + Send + Sync + 'static) {
        *lock(&self.inner.report) = Some(Box::new(source));
    }

    /// One operation on Redis within `timeout`; a failure makes limits local.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.inner.run(op).await
    }

    /// Asks for one more connection to `destination`: `None` if the
    /// destination's limit is reached (fleet-wide, or this node's share of
    /// it while Redis is out, or its `local:` limit).
    pub async fn try_acquire_connection(&self, destination: &str) -> Option<ConnectionLease> {
        let inner = &self.inner;
        let destination = destination.to_ascii_lowercase();
        let limit = inner.config.connection_limit(&destination);
        let fleet = limit.scope == Scope::Fleet;
        let n = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        let member = format!("{}/{n}", inner.config.node);
        let granted = if fleet && self.is_shared() && inner.settled() {
            let key = scripts::connections_key(&destination);
            let ttl = inner.config.lease_ttl.as_millis() as u64;
            let (script, m) = (&inner.scripts.acquire, member.clone());
            let answer: Result<i64, _> = inner
                .run(|mut redis| async move {
                    script
                        .key(&key)
                        .arg(&m)
                        .arg(limit.max)
                        .arg(ttl)
                        .invoke_async(&mut redis)
                        .await
                })
                .await;
            match answer {
                Ok(held) if held > 0 => {
                    lock(&inner.local).add_connection(&destination);
                    true
                }
                Ok(_) => false,
                // The failure made limits local: count this one locally.
                Err(_) => inner.try_local_connection(&destination, limit.max),
            }
        } else if fleet && self.is_shared() {
            // Settling after an outage: counted against the local share,
            // and written to Redis at once so that the fleet sees it.
            let granted = inner.try_local_connection(&destination, limit.max);
            if granted {
                let _ = inner.write_lease(&destination, &member).await;
            }
            granted
        } else if fleet {
            inner.try_local_connection(&destination, limit.max)
        } else {
            lock(&inner.local).try_connect(&destination, limit.max)
        };
        if !granted {
            tracing::trace!(destination = %destination, limit = %limit, "connection limit reached");
            return None;
        }
        if fleet {
            lock(&inner.held).insert(member.clone(), destination.clone());
        }
        let renewer = fleet.then(|| {
            tokio::spawn(lease::renew(
                Arc::clone(inner),
                destination.clone(),
                member.clone(),
            ))
        });
        Some(ConnectionLease {
            inner: Arc::clone(inner),
            destination,
            member,
            fleet,
            renewer,
            released: false,
        })
    }

    /// Whether `tenant` may send one more message to `destination` now,
    /// under its rates (`[cluster] tenant_messages_per_second`, ...). A
    /// tenant without rates is always admitted.
    pub async fn admit(&self, tenant: &str, destination: &str) -> Admission {
        let inner = &self.inner;
        let rates = inner.config.tenant_rates(tenant);
        let mut fleet: Vec<(String, Gcra, f64)> = Vec::new();
        let mut node: Vec<(String, Gcra)> = Vec::new();
        let keys = [
            (rates.messages, scripts::tenant_rate_key(tenant)),
            (
                rates.per_destination,
                scripts::tenant_destination_rate_key(tenant, destination),
            ),
        ];
        for (limit, key) in keys {
            match limit {
                Some(l) if l.scope == Scope::Fleet => {
                    fleet.push((key, Gcra::per_second(l.per_second), l.per_second))
                }
                Some(l) => node.push((format!("local:{key}"), Gcra::per_second(l.per_second))),
                None => {}
            }
        }
        if fleet.is_empty() && node.is_empty() {
            return Admission::Admitted;
        }
        let now = inner.local_now();
        if !fleet.is_empty() && self.is_shared() {
            if let Err(after) = lock(&inner.local).check(&node, now) {
                return Admission::Wait {
                    after,
                    counted: Counted::Node,
                };
            }
            let script = &inner.scripts.admit;
            let answer: Result<u64, _> = inner
                .run(|mut redis| async move {
                    let mut call = script.prepare_invoke();
                    for (key, gcra, _) in &fleet {
                        call.key(key).arg(gcra.interval).arg(gcra.tolerance);
                    }
                    call.invoke_async(&mut redis).await
                })
                .await;
            match answer {
                Ok(0) => {
                    // Charge the node's own limits only now that all passed.
                    let _ = lock(&inner.local).admit(&node, inner.local_now());
                    return Admission::Admitted;
                }
                Ok(wait) => {
                    return Admission::Wait {
                        after: Duration::from_micros(wait),
                        counted: Counted::Fleet,
                    }
                }
                // Redis failed: limits are now local; decide below.
                Err(_) => {}
            }
            return self.admit_locally(tenant, destination);
        }
        self.admit_locally(tenant, destination)
    }

    /// [`Cluster::admit`] on this node alone: `local:` rates as they are,
    /// fleet-wide ones divided by the nodes last seen alive.
    fn admit_locally(&self, tenant: &str, destination: &str) -> Admission {
        let inner = &self.inner;
        let rates = inner.config.tenant_rates(tenant);
        let alive = self.nodes_alive();
        let keys = [
            (rates.messages, scripts::tenant_rate_key(tenant)),
            (
                rates.per_destination,
                scripts::tenant_destination_rate_key(tenant, destination),
            ),
        ];
        let limits: Vec<(String, Gcra)> = keys
            .into_iter()
            .filter_map(|(limit, key)| {
                let l = limit?;
                Some(match l.scope {
                    Scope::Node => (format!("local:{key}"), Gcra::per_second(l.per_second)),
                    Scope::Fleet => (
                        format!("fallback:{key}"),
                        Gcra::per_second(local_rate(l.per_second, alive)),
                    ),
                })
            })
            .collect();
        match lock(&inner.local).admit(&limits, inner.local_now()) {
            Ok(()) => Admission::Admitted,
            Err(after) => Admission::Wait {
                after,
                counted: Counted::Node,
            },
        }
    }

    /// Every node heard of in the last hour, with its report; those not
    /// heard of within `node_ttl` are silent.
    pub async fn fleet_view(&self) -> Result<FleetView, ClusterError> {
        let inner = &self.inner;
        let now_script = &inner.scripts.now_ms;
        let (now, nodes): (u64, Vec<(String, f64)>) = inner
            .run(|mut redis| async move {
                let now: u64 = now_script.prepare_invoke().invoke_async(&mut redis).await?;
                let nodes: Vec<(String, f64)> =
                    redis.zrange_withscores(scripts::NODES_KEY, 0, -1).await?;
                Ok((now, nodes))
            })
            .await?;
        let keys: Vec<String> = nodes
            .iter()
            .map(|(name, _)| scripts::node_key(name))
            .collect();
        let reports: Vec<Option<String>> = if keys.is_empty() {
            Vec::new()
        } else {
            inner
                .run(|mut redis| async move {
                    redis::cmd("MGET").arg(&keys).query_async(&mut redis).await
                })
                .await?
        };
        let ttl = inner.config.node_ttl.as_millis() as u64;
        let mut view = FleetView::default();
        for ((name, score), json) in nodes.into_iter().zip(reports) {
            let last_seen_ms = score as u64;
            let report = json.and_then(|j| serde_json::from_str::<NodeReport>(&j).ok());
            let silent_for_ms = now.saturating_sub(last_seen_ms);
            view.nodes.push(NodeStatus {
                name,
                last_seen_ms,
                silent_for_ms,
                silent: silent_for_ms > ttl,
                report,
            });
        }
        let destinations: Vec<String> = view.destinations().into_keys().collect();
        if destinations.is_empty() {
            return Ok(view);
        }
        let mut pipe = redis::pipe();
        for destination in &destinations {
            pipe.zcount(scripts::connections_key(destination), now, "+inf");
        }
        let held: Vec<u64> = inner
            .run(|mut redis| async move { pipe.query_async(&mut redis).await })
            .await?;
        view.leases = destinations.into_iter().zip(held).collect();
        Ok(view)
    }
}

impl Inner {
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.config.timeout, op(self.redis.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let error = ClusterError::Redis(e.to_string());
                self.fall_back(&error);
                Err(error)
            }
            Err(_) => {
                let error = ClusterError::Timeout(self.config.timeout);
                self.fall_back(&error);
                Err(error)
            }
        }
    }

    /// Limits become local (logged once per outage).
    fn fall_back(&self, reason: &ClusterError) {
        if self.shared.swap(false, Ordering::SeqCst) {
            let alive = self.alive.load(Ordering::SeqCst).max(1);
            tracing::warn!(
                node = %self.config.node,
                error = %reason,
                nodes_alive = alive,
                "Redis failed: limits are local now, each fleet-wide limit divided by the {alive} node(s) last seen alive"
            );
            self.publish_metrics();
        }
    }

    /// One heartbeat: records this node as alive and learns how many are.
    async fn beat(&self, tick: u64) {
        // Back after an outage: this node's leases go to Redis before it
        // shows as alive there, so that a node counting the alive ones
        // knows their leases are in.
        let recovering = !self.shared.load(Ordering::SeqCst) && tick > 0;
        if recovering && self.write_back_leases().await.is_err() {
            return;
        }
        let script = &self.scripts.heartbeat;
        let node = self.config.node.clone();
        let window = self.config.node_ttl.as_millis() as u64;
        let answer: Result<usize, _> = self
            .run(|mut redis| async move {
                script
                    .key(scripts::NODES_KEY)
                    .arg(&node)
                    .arg(window)
                    .arg(scripts::FORGET_NODE_AFTER_MS)
                    .invoke_async(&mut redis)
                    .await
            })
            .await;
        let Ok(mut alive) = answer else { return };
        if recovering {
            *lock(&self.recovered_at) = Some(Instant::now());
        }
        // Settling: a Redis that restarted empty knows only the nodes that
        // beat since. Until as many as before are back (or `node_ttl`
        // passed: the others are gone), new connections stay counted
        // against the local share, with the divisor of before.
        let previous = self.alive.load(Ordering::SeqCst);
        {
            let mut recovered = lock(&self.recovered_at);
            if let Some(since) = *recovered {
                if alive >= previous || since.elapsed() >= self.config.node_ttl {
                    *recovered = None;
                } else {
                    alive = previous;
                }
            }
        }
        let before = self.alive.swap(alive.max(1), Ordering::SeqCst);
        if !self.shared.swap(true, Ordering::SeqCst) {
            tracing::info!(node = %self.config.node, nodes_alive = alive, "Redis answers: limits are shared by the fleet");
        } else if before != alive.max(1) {
            tracing::info!(node = %self.config.node, nodes_alive = alive, "nodes alive changed");
        }
        self.publish_metrics();
        if tick.is_multiple_of(REPORT_EVERY) {
            let report = lock(&self.report).as_ref().map(|source| source());
            if let Some(mut report) = report {
                report.node = self.config.node.clone();
                report.shared = true;
                report.published_at_ms = unix_ms(SystemTime::now());
                let _ = self.publish_report(&report).await;
            }
        }
    }

    /// Not settling after an outage (see [`Inner::beat`]).
    fn settled(&self) -> bool {
        lock(&self.recovered_at).is_none()
    }

    /// Puts (or renews) one lease of this node in Redis.
    async fn write_lease(&self, destination: &str, member: &str) -> Result<(), ClusterError> {
        let key = scripts::connections_key(destination);
        let ttl = self.config.lease_ttl.as_millis() as u64;
        let script = &self.scripts.renew;
        self.run(|mut redis| async move {
            script
                .key(&key)
                .arg(member)
                .arg(ttl)
                .invoke_async::<i64>(&mut redis)
                .await
        })
        .await
        .map(|_| ())
    }

    /// Writes every fleet lease this node holds to Redis (after an outage,
    /// before limits are shared again).
    async fn write_back_leases(&self) -> Result<(), ClusterError> {
        let held: Vec<(String, String)> = lock(&self.held)
            .iter()
            .map(|(m, d)| (m.clone(), d.clone()))
            .collect();
        for (member, destination) in &held {
            self.write_lease(destination, member).await?;
        }
        if !held.is_empty() {
            tracing::info!(node = %self.config.node, leases = held.len(), "connection leases held during the outage written back to Redis");
        }
        Ok(())
    }

    async fn publish_report(&self, report: &NodeReport) -> Result<(), ClusterError> {
        let key = scripts::node_key(&self.config.node);
        let json = serde_json::to_string(report).map_err(|e| ClusterError::Decode {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        self.run(|mut redis| async move {
            redis
                .pset_ex::<_, _, ()>(&key, &json, scripts::FORGET_NODE_AFTER_MS)
                .await
        })
        .await
    }

    fn publish_metrics(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.set_cluster(
                self.shared.load(Ordering::SeqCst),
                self.alive.load(Ordering::SeqCst).max(1),
            );
        }
    }

    /// A connection counted on this node alone against its share of `max`.
    fn try_local_connection(&self, destination: &str, max: u32) -> bool {
        let share = local_connections(max, self.alive.load(Ordering::SeqCst));
        lock(&self.local).try_connect(destination, share)
    }

    fn local_now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn heartbeat(inner: Weak<Inner>) {
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.beat(tick).await;
        tick += 1;
    }
}
