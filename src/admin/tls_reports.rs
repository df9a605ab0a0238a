//! The admin API of the TLS reports sealpost sends (RFC 8460, see
//! `crate::tlsrpt::send`): `GET /tls-reports/sent` (sent and pending),
//! `GET /tls-reports/sent/<day>/<tenant>/<domain>` (one report's JSON, as
//! sent or as it would be sent now), `POST /tls-reports/send-now` (send
//! every finished day's reports now; `?include-today=true` also today's,
//! which is then final).

use hyper::{Method, StatusCode};

use super::http::{self, parse_query, ApiError, HttpResponse};
use super::AdminState;
use crate::tlsrpt::{ReportKey, Reporter};

/// Answers a request under `/tls-reports/sent` or `/tls-reports/send-now`.
pub(crate) async fn handle(
    state: &AdminState,
    method: &Method,
    segments: &[&str],
    query: &str,
) -> Result<HttpResponse, ApiError> {
    let reporter = state.tls_reports.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TLS reports are not sent by this server",
        )
    })?;
    let now = crate::date::unix_seconds(std::time::SystemTime::now());
    match (method, segments) {
        (&Method::GET, ["tls-reports", "sent"]) => {
            let listing = blocking(reporter, move |r| r.listing(now)).await?;
            Ok(http::json(StatusCode::OK, &listing))
        }
        (&Method::GET, ["tls-reports", "sent", day, tenant, domain]) => {
            let key = ReportKey {
                day: day.to_string(),
                tenant: tenant.to_string(),
                domain: domain.to_ascii_lowercase(),
            };
            let shown = blocking(reporter, move |r| r.show(&key)).await?;
            match shown.and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok()) {
                Some(report) => Ok(http::json(StatusCode::OK, &report)),
                None => Err(ApiError::not_found(format!(
                    "no TLS report for {domain} of tenant {tenant} on {day}"
                ))),
            }
        }
        (&Method::POST, ["tls-reports", "send-now"]) => {
            let mut include_today = false;
            for (name, value) in parse_query(query)? {
                match (name.as_str(), value.as_str()) {
                    ("include-today", "true") => include_today = true,
                    ("include-today", "false") => include_today = false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "unknown parameter `{name}={value}`: include-today=true|false"
                        )))
                    }
                }
            }
            let sent = reporter
                .send_due(now, include_today)
                .await
                .map_err(|e| internal(&e))?;
            Ok(http::json(
                StatusCode::OK,
                &serde_json::json!({ "sent": sent }),
            ))
        }
        (_, ["tls-reports", "sent", ..]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET on /tls-reports/sent",
        )),
        (_, ["tls-reports", "send-now"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST on /tls-reports/send-now",
        )),
        _ => Err(ApiError::not_found("no such TLS reports endpoint")),
    }
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("TLS reports: {e}"),
    )
}

async fn blocking<T: Send + 'static>(
    reporter: std::sync::Arc<Reporter>,
    work: impl FnOnce(&Reporter) -> Result<T, crate::tlsrpt::daily::DailyError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(move || work(&reporter)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(internal(&e)),
        Err(e) => Err(internal(&e)),
    }
}
