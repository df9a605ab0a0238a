//! The admin API's endpoints (listed in `docs/admin-api.md`): routing by
//! method and path, and one handler per endpoint. Queue work runs on the
//! blocking pool (the queue's calls wait for disk flushes).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::http::{self, parse_query, read_body, ApiError, HttpResponse};
use super::views::{Destinations, TenantDomain, TenantView};
use super::{AdminState, DeliveryView};
use crate::metrics::Gauges;
use crate::policy::Direction;
use crate::policy::{explain, ExplainRequest};

mod queue;

use queue::{blocking, filter_action, list, message_action, show, summary};

/// The answer to one request on the admin socket.
pub async fn admin(state: Arc<AdminState>, request: Request<Incoming>) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let segments: Vec<String> = match path
        .trim_matches('/')
        .split('/')
        .map(|s| http::percent_decode(s, false))
        .collect()
    {
        Ok(segments) => segments,
        Err(e) => return http::error(&e),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["queue", "summary"]) => match no_query(&query) {
            Ok(()) => blocking(&state, summary)
                .await
                .map(|s| http::json(StatusCode::OK, &s)),
            Err(e) => Err(e),
        },
        (&Method::GET, ["queue", "messages"]) => list(&state, &query).await,
        (&Method::GET, ["queue", "messages", id]) => match no_query(&query) {
            Ok(()) => show(&state, id).await,
            Err(e) => Err(e),
        },
        (&Method::POST, ["queue", "messages", id, action]) => {
            let id = id.to_string();
            let action = action.to_string();
            match read_body(request).await {
                Ok(body) => message_action(&state, &id, &action, &body).await,
                Err(e) => Err(e),
            }
        }
        (&Method::POST, ["queue", "actions", action]) => {
            let action = action.to_string();
            match read_body(request).await {
                Ok(body) => filter_action(&state, &action, &body).await,
                Err(e) => Err(e),
            }
        }
        (&Method::POST, ["queue", "drain"]) => match read_body(request).await {
            Ok(body) => super::drain::post(&state, &body),
            Err(e) => Err(e),
        },
        (&Method::GET, ["queue", "drain"]) => super::drain::get(&state),
        (&Method::GET, ["destinations"]) => match no_query(&query) {
            Ok(()) => destinations(&state).await,
            Err(e) => Err(e),
        },
        (&Method::POST, ["destinations", name, "flush"]) => flush(&state, name).await,
        (&Method::GET, ["tenants"]) => no_query(&query).map(|()| tenants(&state)),
        (&Method::GET, ["tls-reports", "received"]) => {
            no_query(&query).and_then(|()| tls_reports_received(&state))
        }
        (_, ["tls-reports", "sent" | "send-now", ..]) => {
            super::tls_reports::handle(&state, &method, &segments, &query).await
        }
        (&Method::GET, ["top"]) => top(&state, query).await,
        (&Method::GET, ["policy", "explain"]) => policy_explain(&state, &query),
        (&Method::POST, ["reload"]) => reload(&state).await,
        (&Method::GET, ["metrics"]) => Ok(metrics(&state)),
        (&Method::GET, ["healthz", "live"]) => Ok(live()),
        (&Method::GET, ["healthz", "ready"]) => Ok(ready(&state).await),
        (_, ["tenants", _, ..] | ["domains", ..] | ["audit", ..]) => {
            let segments: Vec<&str> = segments.clone();
            match super::tenant_edits::handle(&state, &method, &segments, &query, request).await {
                Some(answer) => answer,
                None => Err(ApiError::not_found(format!("no endpoint {path}"))),
            }
        }
        (_, known) => Err(match allowed_method(known) {
            Some(allowed) => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}: use {allowed}"),
            ),
            None => ApiError::not_found(format!("no endpoint {path}")),
        }),
    };
    let response = result.unwrap_or_else(|e| http::error(&e));
    tracing::debug!(%method, %path, status = response.status().as_u16(), "admin request");
    response
}

/// The answer to one request on the metrics listener: `GET /metrics`,
/// `GET /healthz/live` and `GET /healthz/ready` only.
pub(crate) async fn metrics_only(
    state: Arc<AdminState>,
    request: Request<Incoming>,
) -> HttpResponse {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => metrics(&state),
        (&Method::GET, "/healthz/live") => live(),
        (&Method::GET, "/healthz/ready") => ready(&state).await,
        (_, "/metrics" | "/healthz/live" | "/healthz/ready") => http::error(&ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "the metrics listener is read-only: GET /metrics, /healthz/live, /healthz/ready",
        )),
        (_, path) => http::error(&ApiError::not_found(format!(
            "no endpoint {path}: the metrics listener serves only GET /metrics, /healthz/live and /healthz/ready"
        ))),
    }
}

/// `GET /healthz/live`: the process answers.
fn live() -> HttpResponse {
    http::json(StatusCode::OK, &serde_json::json!({"live": true}))
}

/// `GET /healthz/ready`: `200` when every check passes, else `503`; the
/// body lists each check (`crate::service::health`).
async fn ready(state: &AdminState) -> HttpResponse {
    let health = state.health.clone();
    match tokio::task::spawn_blocking(move || health.readiness()).await {
        Ok(answer) => {
            let status = if answer.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            http::json(status, &answer)
        }
        Err(e) => http::error(&ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the readiness check failed: {e}"),
        )),
    }
}

fn allowed_method(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["queue", "drain"] => Some("GET, POST"),
        ["queue", "summary"]
        | ["queue", "messages"]
        | ["queue", "messages", _]
        | ["destinations"]
        | ["tenants"]
        | ["tls-reports", "received"]
        | ["top"]
        | ["policy", "explain"]
        | ["metrics"]
        | ["healthz", "live" | "ready"] => Some("GET"),
        ["queue", "messages", _, _]
        | ["queue", "actions", _]
        | ["destinations", _, "flush"]
        | ["reload"] => Some("POST"),
        _ => None,
    }
}

fn no_query(query: &str) -> Result<(), ApiError> {
    if query.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "this endpoint takes no query parameters",
        ))
    }
}

/// Runs a call into the delivery engine on the blocking pool: the
/// engine's implementation may take locks.
async fn engine<T: Send + 'static>(
    state: &AdminState,
    work: impl FnOnce(&dyn DeliveryView) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let delivery = state.delivery.clone();
    tokio::task::spawn_blocking(move || work(delivery.as_ref()))
        .await
        .map_err(|e| ApiError::internal(format!("the delivery engine's answer failed: {e}")))
}

async fn destinations(state: &AdminState) -> Result<HttpResponse, ApiError> {
    let destinations = engine(state, |delivery| delivery.destinations()).await?;
    let answer = Destinations {
        destinations,
        queued_recipients: state.queue.counts().by_destination,
    };
    Ok(http::json(StatusCode::OK, &answer))
}

/// `GET /top` (`super::top`).
async fn top(state: &Arc<AdminState>, query: String) -> Result<HttpResponse, ApiError> {
    let engine = engine(state, |delivery| delivery.destinations()).await?;
    let state = state.clone();
    let snapshot =
        tokio::task::spawn_blocking(move || super::top::snapshot(&state, engine, &query))
            .await
            .map_err(|e| ApiError::internal(format!("the snapshot task failed: {e}")))??;
    Ok(http::json(StatusCode::OK, &snapshot))
}

async fn flush(state: &AdminState, name: &str) -> Result<HttpResponse, ApiError> {
    let destination = name.to_string();
    if engine(state, move |delivery| delivery.flush(&destination)).await? {
        tracing::info!(destination = name, "destination cache flushed");
        Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "flushed": name }),
        ))
    } else {
        Err(ApiError::not_found(format!(
            "the delivery engine has no state for destination `{name}`"
        )))
    }
}

fn tenants(state: &AdminState) -> HttpResponse {
    let config = state.live.current();
    let counters = state.metrics.tenants();
    let queued = state.queue.counts().by_tenant;
    let mut rows: BTreeMap<String, TenantView> = BTreeMap::new();
    let row = |rows: &mut BTreeMap<String, TenantView>, name: &str| {
        if !rows.contains_key(name) {
            let c = counters.get(name).copied().unwrap_or_default();
            rows.insert(
                name.to_string(),
                TenantView {
                    name: name.to_string(),
                    domains: Vec::new(),
                    queued_messages: queued.get(name).copied().unwrap_or(0),
                    received: c.received,
                    delivered: c.delivered,
                    deferred: c.deferred,
                    bounced: c.bounced,
                    max_in_flight: state.delivery.tenant_limit(name),
                },
            );
        }
    };
    for domain in config.policy.domains() {
        row(&mut rows, domain.tenant.as_str());
        if let Some(r) = rows.get_mut(domain.tenant.as_str()) {
            r.domains.push(TenantDomain {
                name: domain.name.as_str().to_string(),
                enabled: domain.enabled,
            });
        }
    }
    for name in counters.keys().chain(queued.keys()) {
        row(&mut rows, name);
    }
    let tenants: Vec<TenantView> = rows.into_values().collect();
    http::json(StatusCode::OK, &serde_json::json!({ "tenants": tenants }))
}

/// `GET /tls-reports/received`: received TLS reports per tenant and
/// sending organization (`crate::tlsrpt`).
fn tls_reports_received(state: &AdminState) -> Result<HttpResponse, ApiError> {
    let store = crate::tlsrpt::ReportStore::new(&state.live.current().server.data_dir);
    let rows = store.summary().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("TLS reports: {e}"),
        )
    })?;
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({ "received": rows }),
    ))
}

fn policy_explain(state: &AdminState, query: &str) -> Result<HttpResponse, ApiError> {
    let mut from = None;
    let mut to = None;
    let mut ip = None;
    let mut direction = None;
    for (name, value) in parse_query(query)? {
        match name.as_str() {
            "from" => from = Some(value),
            "to" => to = Some(value),
            "ip" => {
                ip = Some(value.parse::<IpAddr>().map_err(|_| {
                    ApiError::bad_request(format!("bad ip `{value}`: an IPv4 or IPv6 address"))
                })?)
            }
            "direction" => {
                direction = Some(
                    Direction::from_str(&value)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: use from, to, ip or direction"
                )))
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::bad_request(
            "`from` and `to` are required (`from=<>` for the null sender)",
        ));
    };
    let request = ExplainRequest {
        from,
        to,
        ip,
        direction,
    };
    let explanation = explain(&state.live.current().policy, &request)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(http::json(StatusCode::OK, &explanation))
}

async fn reload(state: &AdminState) -> Result<HttpResponse, ApiError> {
    let reload = state.reload.clone();
    let outcome = tokio::task::spawn_blocking(move || reload())
        .await
        .map_err(|e| ApiError::internal(format!("the reload task failed: {e}")))?;
    match outcome {
        Ok(report) => Ok(http::json(StatusCode::OK, &report)),
        Err(errors) => {
            tracing::error!(error = %errors, "reload through the admin socket refused; the configuration in force stays");
            Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "the new configuration was refused; the one in force stays".to_string(),
                // One line per validation error, as `config check` prints them.
                details: match &errors {
                    crate::live::ReloadError::Config(crate::config::LoadError::Invalid(all)) => {
                        all.0.iter().map(ToString::to_string).collect()
                    }
                    other => vec![other.to_string()],
                },
            })
        }
    }
}

fn metrics(state: &AdminState) -> HttpResponse {
    let (disk_free_bytes, disk_reserve_bytes) = state.health.disk();
    let gauges = Gauges {
        config_generation: state.live.generation(),
        disk_free_bytes,
        disk_reserve_bytes,
        certificates: state.certificates.expiries(),
    };
    let text = state.metrics.render_with(&state.queue.counts(), &gauges);
    http::respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text.into_bytes(),
    )
}

#[cfg(test)]
mod reason_tests {
    use std::time::{Duration, SystemTime};

    use sealpost_queue::{
        Attempt, Authentication, LocalCause, NewMessage, Outcome, Place, QueueOptions, Reason,
        RetryPolicy, Status,
    };

    use super::summary;

    /// Many deferrals held back by one destination's pause, each with its
    /// own pause time and host, are one cause: one line of the summary.
    #[test]
    fn pause_deferrals_with_different_times_are_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = sealpost_queue::Queue::open(dir.path(), QueueOptions::default())
            .expect("open the queue");
        let now = SystemTime::now();
        for n in 0..12u64 {
            queue
                .enqueue(NewMessage::to_one(
                    "acme",
                    "a@acme.example",
                    "b@down.example",
                    "down.example",
                    b"Subject: x\r\n\r\nx\r\n".to_vec(),
                ))
                .expect("enqueue")
                .wait()
                .expect("durable");
            let lease = queue
                .take_due_any(now + Duration::from_secs(1), 1)
                .expect("lease")
                .pop()
                .expect("due");
            let reason = Reason::Paused {
                until: now + Duration::from_secs(60 + n * 7),
                cause: Box::new(Reason::Local {
                    cause: LocalCause::ConnectionFailed,
                    status: Status(4, 4, 1),
                    place: Place::at(&format!("mx{n}.down.example"), [192, 0, 2, n as u8].into()),
                    detail: format!("connect failed: connection refused (try {n})"),
                }),
            };
            let attempt = Attempt {
                at: now,
                mx_host: None,
                ip: None,
                tls_version: None,
                cipher: None,
                authentication: Authentication::None,
                reply_or_reason: reason.clone(),
            };
            queue
                .record_attempt(
                    lease,
                    &[(0, Outcome::Deferred { reason })],
                    attempt,
                    &RetryPolicy::default(),
                )
                .expect("record");
        }
        let summary = summary(&queue).expect("summary");
        assert_eq!(summary.top_defer_reasons.len(), 1, "{summary:?}");
        let line = &summary.top_defer_reasons[0];
        assert_eq!(line.recipients, 12);
        assert_eq!(line.kind, "paused/local");
        assert_eq!(line.cause, "connection-failed");
        assert!(
            line.reason.starts_with("destination paused until"),
            "{line:?}"
        );
    }
}
