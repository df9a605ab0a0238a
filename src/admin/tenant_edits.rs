//! Live changes to tenants' domains and peers through the admin API
//! (`docs/admin-api.md`, "Tenants, domains and peers"), and the audit log.
//!
//! Every change follows one path: under the edit lock
//! ([`crate::config::edit::lock`]), the tenant's file as in force is
//! checked against the caller's version (`If-Match` or `version`; stale:
//! 409) and against the disk (changed since the last reload: 409), edited
//! with `toml_edit`, validated with every other file exactly as a reload
//! would (errors: 422 with file, line and field path), written atomically,
//! recorded in the audit log, and put in force.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ETAG, IF_MATCH};
use hyper::{Method, Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditRecord};
use super::http::{self, parse_query, read_body, ApiError, HttpResponse};
use super::AdminState;
use crate::config::edit::{self, Change, EditError, RuleText};
use crate::config::split::file_name_of;
use crate::config::{version_of, write_atomically, Config, LoadError};
use crate::live::LiveConfig;
use crate::policy::{Direction, ManagedDomain, PeerMatcher, PolicyRule};

/// The caller's Unix user id, put in each request by the socket listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerUid(pub Option<u32>);

/// Most audit records `GET /audit` returns.
const MAX_AUDIT: usize = 10_000;

/// Handles `GET /tenants/{t}`, `/domains...` and `GET /audit`; `None`
/// for any other path.
pub(crate) async fn handle(
    state: &Arc<AdminState>,
    method: &Method,
    segments: &[&str],
    query: &str,
    request: Request<Incoming>,
) -> Option<Result<HttpResponse, ApiError>> {
    let uid = request.extensions().get::<PeerUid>().and_then(|p| p.0);
    let if_match = request
        .headers()
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_owned());
    let read = |state: &AdminState| state.live.current();
    let answer = match (method, segments) {
        (&Method::GET, ["tenants", tenant]) => Ok(tenant_view(&read(state), tenant)),
        (&Method::GET, ["domains"]) => domains(&read(state), query),
        (&Method::GET, ["domains", domain]) => domain_view(&read(state), domain),
        (&Method::GET, ["domains", domain, "peers", direction]) => {
            peers(&read(state), domain, direction)
        }
        (&Method::GET, ["audit"]) => audit_log(state, query),
        (&Method::POST, ["domains"])
        | (&Method::POST, ["domains", _, "enable" | "disable"])
        | (&Method::DELETE, ["domains", _])
        | (&Method::PUT | &Method::DELETE, ["domains", _, "defaults", _])
        | (&Method::POST, ["domains", _, "peers", _])
        | (&Method::PATCH | &Method::DELETE, ["domains", _, "peers", _, _])
        | (&Method::POST, ["domains", _, "peers", _, _, "enable" | "disable"]) => {
            let segments: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
            let method = method.clone();
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(e) => return Some(Err(e)),
            };
            let state = state.clone();
            let work = move || {
                let request = parse_change(&method, &segments, &body)?;
                let who = Who { uid, user: None };
                match apply_change(&state.live, request, if_match, &who) {
                    Ok(answer) => Ok(with_etag(
                        http::json(StatusCode::OK, &answer),
                        Some(&answer.version),
                    )),
                    Err(ChangeRefused::Api(e)) => Err(e),
                    Err(ChangeRefused::Invalid(errors)) => Ok(invalid(&errors)),
                }
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(answer) => answer,
                Err(e) => Err(ApiError::internal(format!("the change task failed: {e}"))),
            }
        }
        (_, ["tenants", _] | ["audit"] | ["domains"] | ["domains", _]) => Err(not_allowed(
            "GET /tenants/{t}, GET /audit; GET or POST /domains; GET or DELETE /domains/{d}",
        )),
        (_, ["domains", ..]) => Err(not_allowed(
            "see docs/admin-api.md, \"Tenants, domains and peers\"",
        )),
        _ => return None,
    };
    Some(answer)
}

fn not_allowed(allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this method is not allowed here: {allowed}"),
    )
}

/// A managed domain as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub name: String,
    pub tenant: String,
    pub enabled: bool,
    /// The tenant file it is in (`None`: the main file).
    pub file: Option<String>,
    pub outbound: DirectionView,
    pub inbound: DirectionView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionView {
    /// The domain's own default (`None`: `[defaults]` applies).
    pub default: Option<RuleView>,
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub level: String,
    pub min_tls: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub peer: String,
    pub level: String,
    pub min_tls: String,
    pub enabled: bool,
}

/// `GET /tenants/{t}`: the tenant's file, version and domains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantDetail {
    pub tenant: String,
    pub file: Option<String>,
    /// The `ETag` of the tenant's file (`None`: no tenant file).
    pub version: Option<String>,
    pub domains: Vec<DomainView>,
}

fn rule_view(rule: &PolicyRule) -> RuleView {
    RuleView {
        level: rule.level.to_string(),
        min_tls: rule.min_tls.to_string(),
    }
}

pub(crate) fn view(config: &Config, domain: &ManagedDomain) -> DomainView {
    let direction = |d: &crate::policy::DirectionPolicy| DirectionView {
        default: d.default.as_ref().map(rule_view),
        peers: d
            .peers
            .iter()
            .map(|p| PeerView {
                peer: p.matcher.to_string(),
                level: p.rule.level.to_string(),
                min_tls: p.rule.min_tls.to_string(),
                enabled: p.enabled,
            })
            .collect(),
    };
    DomainView {
        name: domain.name.as_str().to_owned(),
        tenant: domain.tenant.as_str().to_owned(),
        enabled: domain.enabled,
        file: config
            .tenant_files
            .of_tenant(domain.tenant.as_str())
            .map(|f| f.name()),
        outbound: direction(&domain.outbound),
        inbound: direction(&domain.inbound),
    }
}

fn with_etag(mut response: HttpResponse, version: Option<&str>) -> HttpResponse {
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        response.headers_mut().insert(ETAG, v);
    }
    response
}

fn tenant_view(config: &Config, tenant: &str) -> HttpResponse {
    let file = config.tenant_files.of_tenant(tenant);
    let mut domains: Vec<DomainView> = config
        .policy
        .domains()
        .iter()
        .filter(|d| d.tenant.as_str() == tenant)
        .map(|d| view(config, d))
        .collect();
    domains.sort_by(|a, b| a.name.cmp(&b.name));
    if file.is_none() && domains.is_empty() {
        return http::error(&ApiError::not_found(format!(
            "no tenant `{tenant}` has a file or a managed domain"
        )));
    }
    let detail = TenantDetail {
        tenant: tenant.to_owned(),
        file: file.map(|f| f.name()),
        version: file.map(|f| f.version()),
        domains,
    };
    with_etag(
        http::json(StatusCode::OK, &detail),
        detail.version.as_deref(),
    )
}

fn domains(config: &Config, query: &str) -> Result<HttpResponse, ApiError> {
    let mut tenant = None;
    for (name, value) in parse_query(query)? {
        match name.as_str() {
            "tenant" => tenant = Some(value),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: use tenant"
                )))
            }
        }
    }
    let mut list: Vec<DomainView> = config
        .policy
        .domains()
        .iter()
        .filter(|d| tenant.as_deref().is_none_or(|t| d.tenant.as_str() == t))
        .map(|d| view(config, d))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({ "domains": list }),
    ))
}

pub(crate) fn find<'a>(config: &'a Config, domain: &str) -> Result<&'a ManagedDomain, ApiError> {
    let name = domain
        .parse::<crate::policy::DomainName>()
        .map_err(|e| ApiError::bad_request(format!("bad domain name `{domain}`: {e}")))?;
    config
        .policy
        .domain(name.as_str())
        .ok_or_else(|| ApiError::not_found(format!("managed domain `{domain}` is not configured")))
}

fn domain_view(config: &Config, domain: &str) -> Result<HttpResponse, ApiError> {
    let found = find(config, domain)?;
    let version = config
        .tenant_files
        .of_tenant(found.tenant.as_str())
        .map(|f| f.version());
    Ok(with_etag(
        http::json(StatusCode::OK, &view(config, found)),
        version.as_deref(),
    ))
}

fn direction_of(given: &str) -> Result<Direction, ApiError> {
    given
        .parse()
        .map_err(|_| ApiError::bad_request(format!("bad direction `{given}`: inbound or outbound")))
}

fn peers(config: &Config, domain: &str, direction: &str) -> Result<HttpResponse, ApiError> {
    let direction = direction_of(direction)?;
    let found = view(config, find(config, domain)?);
    let list = match direction {
        Direction::Outbound => found.outbound,
        Direction::Inbound => found.inbound,
    };
    Ok(http::json(StatusCode::OK, &list))
}

fn audit_log(state: &AdminState, query: &str) -> Result<HttpResponse, ApiError> {
    let mut tenant = None;
    let mut limit = 100;
    for (name, value) in parse_query(query)? {
        match name.as_str() {
            "tenant" => tenant = Some(value),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_AUDIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("bad limit `{value}`: 1 to {MAX_AUDIT}"))
                    })?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`: use tenant or limit"
                )))
            }
        }
    }
    let path = audit::path_in(&state.live.current().server.data_dir);
    let records = audit::read(&path, tenant.as_deref(), limit)
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", path.display())))?;
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({ "records": records }),
    ))
}

/// A change request: the change, the tenant for a new domain, and the
/// version the caller based it on.
#[derive(Debug, Clone)]
pub(crate) struct ChangeRequest {
    pub change: Change,
    pub tenant: Option<String>,
    pub version: Option<String>,
}

/// Who asks for a change, for the audit log: the admin socket's caller
/// (Unix uid) or a signed-in console user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Who {
    pub uid: Option<u32>,
    pub user: Option<String>,
}

/// Why a change was not made (nothing was written).
#[derive(Debug)]
pub(crate) enum ChangeRefused {
    /// Not found, conflict, bad request, storage failure.
    Api(ApiError),
    /// The tenant file would not be valid: every error, with its field.
    Invalid(Vec<FieldError>),
}

impl From<ApiError> for ChangeRefused {
    fn from(e: ApiError) -> Self {
        ChangeRefused::Api(e)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    version: Option<String>,
    tenant: Option<String>,
    name: Option<String>,
    enabled: Option<bool>,
    peer: Option<String>,
    level: Option<String>,
    /// `null` removes an entry's own minimum version (`PATCH`).
    #[serde(default, deserialize_with = "present")]
    min_tls: Option<Option<String>>,
}

/// Tells a `null` apart from a missing key.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn required(value: Option<String>, key: &str) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("`{key}` is required")))
}

fn parse_change(
    method: &Method,
    segments: &[String],
    body: &[u8],
) -> Result<ChangeRequest, ApiError> {
    let body: Body = if body.iter().all(u8::is_ascii_whitespace) {
        Body::default()
    } else {
        http::parse_json(body)?
    };
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let rule =
        |level: Option<String>, min_tls: Option<Option<String>>| -> Result<RuleText, ApiError> {
            Ok(RuleText {
                level: required(level, "level")?,
                min_tls: min_tls.flatten(),
            })
        };
    let change = match (method, s.as_slice()) {
        (&Method::POST, ["domains"]) => Change::AddDomain {
            domain: required(body.name, "name")?,
            enabled: body.enabled.unwrap_or(true),
        },
        (&Method::POST, ["domains", d, action]) => Change::SetDomainEnabled {
            domain: d.to_string(),
            enabled: *action == "enable",
        },
        (&Method::DELETE, ["domains", d]) => Change::RemoveDomain {
            domain: d.to_string(),
        },
        (&Method::PUT, ["domains", d, "defaults", dir]) => Change::SetDefault {
            domain: d.to_string(),
            direction: direction_of(dir)?,
            rule: Some(rule(body.level, body.min_tls)?),
        },
        (&Method::DELETE, ["domains", d, "defaults", dir]) => Change::SetDefault {
            domain: d.to_string(),
            direction: direction_of(dir)?,
            rule: None,
        },
        (&Method::POST, ["domains", d, "peers", dir]) => Change::AddPeer {
            domain: d.to_string(),
            direction: direction_of(dir)?,
            peer: required(body.peer, "peer")?,
            rule: rule(body.level, body.min_tls)?,
            enabled: body.enabled.unwrap_or(true),
        },
        (&Method::PATCH, ["domains", d, "peers", dir, peer]) => Change::EditPeer {
            domain: d.to_string(),
            direction: direction_of(dir)?,
            peer: peer.to_string(),
            level: body.level,
            min_tls: body.min_tls,
            enabled: body.enabled,
        },
        (&Method::POST, ["domains", d, "peers", dir, peer, action]) => Change::EditPeer {
            domain: d.to_string(),
            direction: direction_of(dir)?,
            peer: peer.to_string(),
            level: None,
            min_tls: None,
            enabled: Some(*action == "enable"),
        },
        (&Method::DELETE, ["domains", d, "peers", dir, peer]) => Change::RemovePeer {
            domain: d.to_string(),
            direction: direction_of(dir)?,
            peer: peer.to_string(),
        },
        _ => return Err(ApiError::not_found("no such change")),
    };
    Ok(ChangeRequest {
        change,
        tenant: body.tenant,
        version: body.version,
    })
}

/// The answer to a change that was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeAnswer {
    pub tenant: String,
    pub change: String,
    pub file: String,
    /// The tenant's new version (`ETag`).
    pub version: String,
    /// The configuration generation now in force.
    pub generation: u64,
    /// The domain after the change (`None`: removed).
    pub domain: Option<DomainView>,
}

fn conflict(message: String, version: Option<&str>) -> ApiError {
    let mut e = ApiError::new(StatusCode::CONFLICT, message);
    if let Some(v) = version {
        e.details.push(format!("current version: {v}"));
    }
    e
}

/// Runs one change end to end (see the module documentation): the admin
/// API and the web console (`crate::console`) both come here. Blocks (file
/// writes, fsync): call it off the async executor.
pub(crate) fn apply_change(
    live: &LiveConfig,
    request: ChangeRequest,
    if_match: Option<String>,
    who: &Who,
) -> Result<ChangeAnswer, ChangeRefused> {
    let _edits = edit::lock();
    let running = live.current();
    let files = &running.tenant_files;
    let Some(dir) = &files.dir else {
        return Err(ChangeRefused::Api(conflict(
            "changes through the admin API need `[server] tenants_dir` (see `sealpost config split`)".into(),
            None,
        )));
    };
    let change = request.change;
    let tenant = match &change {
        Change::AddDomain { .. } => {
            let tenant = required(request.tenant, "tenant")?.trim().to_owned();
            if tenant.is_empty() {
                return Err(ChangeRefused::Api(ApiError::bad_request(
                    "`tenant` may not be empty",
                )));
            }
            tenant
        }
        other => find(&running, other.domain())?.tenant.as_str().to_owned(),
    };
    let file = files.of_tenant(&tenant);
    if file.is_none() && !matches!(change, Change::AddDomain { .. }) {
        return Err(ChangeRefused::Api(conflict(
            format!("tenant `{tenant}` is configured in the main file, which the admin API does not edit; move it to a tenant file (`sealpost config split`)"),
            None,
        )));
    }
    let path = file.map_or_else(|| dir.join(file_name_of(&tenant)), |f| f.path.clone());
    let text: &str = file.map_or("", |f| &f.text);
    let version = file.map(|f| f.version());
    // `If-Match: *` asks for no version check (RFC 9110 section 13.1.1).
    let wanted = if_match.filter(|v| v != "*").or(request.version);
    if let Some(wanted) = &wanted {
        if Some(wanted) != version.as_ref() {
            return Err(ChangeRefused::Api(conflict(
                format!(
                    "tenant `{tenant}` changed: the change is based on version {wanted}; read it again and retry"
                ),
                version.as_deref(),
            )));
        }
    }
    let on_disk = match std::fs::read_to_string(&path) {
        Ok(disk) => Some(disk),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ChangeRefused::Api(ApiError::internal(format!(
                "reading {}: {e}",
                path.display()
            ))))
        }
    };
    if on_disk.as_deref().unwrap_or("") != text {
        return Err(ChangeRefused::Api(conflict(
            format!(
                "{} changed on disk since the last reload; reload (or undo the edit) first",
                path.display()
            ),
            version.as_deref(),
        )));
    }
    let applied = edit::apply(text, &tenant, &change).map_err(edit_error)?;
    let config = match Config::with_tenant_file(&running, &path, &applied.text) {
        Ok(config) => config,
        Err(LoadError::Invalid(errors)) => {
            return Err(ChangeRefused::Invalid(field_errors(
                &errors,
                &path,
                &applied.text,
            )))
        }
        Err(e) => return Err(ChangeRefused::Api(ApiError::internal(e.to_string()))),
    };
    write_atomically(&path, &applied.text)
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
    let new_version = version_of(&applied.text);
    let now = SystemTime::now();
    let record = AuditRecord {
        time: audit::rfc3339(now),
        unix_ms: crate::date::unix_ms(now),
        uid: who.uid,
        user: who.user.clone(),
        tenant: tenant.clone(),
        change: change.name().to_owned(),
        domain: change.domain().to_owned(),
        file: path.display().to_string(),
        version_before: version,
        version_after: new_version.clone(),
        before: applied.before,
        after: applied.after,
    };
    let audit_path = audit::path_in(&running.server.data_dir);
    if let Err(e) = audit::append(&audit_path, &record) {
        // The file is written: put it in force (as a reload would), but say so.
        tracing::error!(error = %e, path = %audit_path.display(), "cannot write the audit log");
    }
    let report = live.replace(config);
    tracing::info!(
        tenant = %tenant,
        change = change.name(),
        domain = change.domain(),
        uid = ?who.uid,
        user = ?who.user,
        version = %new_version,
        generation = report.generation,
        "tenant changed through the admin API"
    );
    let current = live.current();
    let domain = find(&current, change.domain())
        .ok()
        .map(|d| view(&current, d));
    let answer = ChangeAnswer {
        tenant,
        change: change.name().to_owned(),
        file: path.display().to_string(),
        version: new_version,
        generation: report.generation,
        domain,
    };
    // The configuration replaced is freed with the last of these (unless
    // a session still holds it); give its memory back (`crate::memory`).
    drop((current, running));
    crate::memory::release_free_memory_soon();
    Ok(answer)
}

fn edit_error(e: EditError) -> ApiError {
    let status = match &e {
        EditError::NoDomain { .. } | EditError::NoPeer { .. } => StatusCode::NOT_FOUND,
        EditError::DomainExists { .. } | EditError::PeerExists { .. } => StatusCode::CONFLICT,
        EditError::Toml(_) | EditError::Shape { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// One validation error as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FieldError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The TOML key it is about, e.g. `domains[0].outbound.peers[2].level`
    /// (in the changed file only).
    pub field: Option<String>,
    pub message: String,
    /// The error as `sealpost config check` prints it.
    pub text: String,
}

/// Every error of the configuration a change would make, with the field
/// of the changed file each is about.
fn field_errors(
    errors: &crate::config::ConfigErrors,
    path: &std::path::Path,
    text: &str,
) -> Vec<FieldError> {
    let name = path.display().to_string();
    errors
        .0
        .iter()
        .map(|e| {
            let field = match (e.file == name, e.location) {
                (true, Some(l)) => edit::field_path(text, l.line, l.column),
                _ => None,
            };
            FieldError {
                file: e.file.clone(),
                line: e.location.map(|l| l.line),
                column: e.location.map(|l| l.column),
                field,
                message: e.kind.to_string(),
                text: e.to_string(),
            }
        })
        .collect()
}

/// 422 with every error of the configuration the change would make.
fn invalid(list: &[FieldError]) -> HttpResponse {
    http::json(
        StatusCode::UNPROCESSABLE_ENTITY,
        &serde_json::json!({
            "error": "the change was refused: the tenant file would not be valid; nothing was written",
            "errors": list,
        }),
    )
}

/// For the CLI: a peer as the API names it in a path.
pub(crate) fn peer_segment(peer: &str) -> String {
    peer.parse::<PeerMatcher>()
        .map(|p| p.to_string())
        .unwrap_or_else(|_| peer.to_owned())
}
