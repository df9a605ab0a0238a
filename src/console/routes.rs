//! The console's requests: who is signed in, what they may see, and the
//! changes they make.
//!
//! | request | what |
//! |---|---|
//! | `GET /login`, `POST /login`, `POST /logout` | sign in and out |
//! | `GET /domains` | the managed domains (and, for operators, the defaults for unspecified domains) |
//! | `POST /defaults/{direction}` | operators: the default for unspecified domains |
//! | `POST /domains/{d}/enable`, `/disable` | a domain's status |
//! | `GET /domains/{d}` | the domain's TLS peers |
//! | `POST /domains/{d}/defaults/{direction}`, `.../remove` | the domain's default for unspecified peers; `remove`: the default for unspecified domains applies |
//! | `POST /domains/{d}/peers/{direction}` | add a peer |
//! | `GET /domains/{d}/peers/{direction}/{peer}/edit`, `POST .../{peer}` | edit a peer |
//! | `POST .../{peer}/enable`, `/disable`, `/delete`, `/probe` | the peer's status, removal, a probe |
//! | `GET /activity` | the queue, TLS outcomes per peer, recent changes |
//!
//! A tenant administrator asking for another tenant's domain, peer or
//! anything else gets the same 404 as for one that does not exist. Every
//! `POST` must carry the session's CSRF token (else 403).

use std::net::IpAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::COOKIE;
use hyper::{Method, Request, StatusCode};

use super::forms::{not_found, Form};
use super::pages;
use super::respond::{self, clear_cookie, cookie_token, html, redirect, set_cookie};
use super::session::{same_secret, Session, SignedIn};
use super::{activity, changes, ConsoleState};
use crate::admin::http::{parse_query, percent_decode, read_body, HttpResponse};
use crate::config::{Config, ConsoleRole};
use crate::policy::ManagedDomain;

/// Serves one request from `client`.
pub(crate) async fn handle(
    state: Arc<ConsoleState>,
    client: IpAddr,
    request: Request<Incoming>,
) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::GET, "/static/console.css") => {
            return respond::asset("text/css; charset=utf-8", respond::CSS)
        }
        (&Method::GET, "/static/console.js") => {
            return respond::asset("text/javascript; charset=utf-8", respond::JS)
        }
        _ => {}
    }
    let session = cookie_token(request.headers().get(COOKIE)).and_then(|t| state.sessions.get(&t));
    let form = if method == Method::POST {
        match read_body(request)
            .await
            .map(|b| parse_query(&String::from_utf8_lossy(&b)))
        {
            Ok(Ok(pairs)) => Some(Form(pairs)),
            _ => return html(StatusCode::BAD_REQUEST, pages::not_found(None)),
        }
    } else {
        None
    };
    if let Some(form) = &form {
        // Every form carries the session's CSRF token.
        let valid = session
            .as_ref()
            .is_some_and(|s| same_secret(form.get("csrf"), &s.csrf));
        if !valid {
            return html(StatusCode::FORBIDDEN, pages::sign_in_again());
        }
    }
    let segments: Vec<String> = match path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect::<Result<_, _>>()
    {
        Ok(segments) => segments,
        Err(_) => return html(StatusCode::NOT_FOUND, pages::not_found(None)),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&method, segments.as_slice(), session) {
        (&Method::GET, ["login"], session) => login_page(&state, session),
        (&Method::POST, ["login"], Some(session)) => {
            sign_in(&state, client, session, form.unwrap_or_default()).await
        }
        (_, _, Some(session)) => match session.who.clone() {
            Some(who) => {
                let form = form.unwrap_or_default();
                signed_in(&state, &session, &who, &method, &segments, form).await
            }
            None if method == Method::GET => redirect("/login"),
            None => html(StatusCode::FORBIDDEN, pages::sign_in_again()),
        },
        (&Method::GET, _, None) => redirect("/login"),
        _ => html(StatusCode::FORBIDDEN, pages::sign_in_again()),
    }
}

fn login_page(state: &ConsoleState, session: Option<Session>) -> HttpResponse {
    if session.as_ref().is_some_and(|s| s.who.is_some()) {
        return redirect("/domains");
    }
    let session = match session {
        Some(s) => Some(s),
        None => state.sessions.create(None, None),
    };
    let Some(session) = session else {
        return html(StatusCode::INTERNAL_SERVER_ERROR, pages::not_found(None));
    };
    let mut response = html(StatusCode::OK, pages::sign_in(&session, None));
    set_cookie(&mut response, &session.token);
    response
}

async fn sign_in(
    state: &Arc<ConsoleState>,
    client: IpAddr,
    session: Session,
    form: Form,
) -> HttpResponse {
    let name = form.get("user").trim().to_owned();
    let password = form.get("password").to_owned();
    let refuse = |status, message: &str| {
        let mut response = html(status, pages::sign_in(&session, Some(message)));
        set_cookie(&mut response, &session.token);
        response
    };
    if !state.limits.allowed(&name, client) {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins: wait a few minutes and try again.",
        );
    }
    let config = state.live.current();
    let user = config.console_users.get(&name).cloned();
    // An unknown user costs the same derivation as a known one.
    let iterations = config.console_users.max_iterations();
    let check = user
        .as_ref()
        .map(|u| u.hash.clone())
        .or_else(|| crate::auth::decoy_hash(iterations));
    let verified = tokio::task::spawn_blocking(move || {
        check.is_some_and(|hash| hash.verify(password.as_bytes()))
    })
    .await
    .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        state.limits.failed(&name, client);
        tracing::info!(user = %name, %client, "console: sign-in refused");
        return refuse(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    };
    state.limits.succeeded(&name);
    let who = SignedIn {
        user: user.name.clone(),
        role: user.role.clone(),
    };
    // A new token at sign-in: the one that carried the form is dropped.
    let Some(new) = state.sessions.create(Some(who), Some(&session.token)) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No session could be made.",
        );
    };
    tracing::info!(user = %user.name, %client, "console: signed in");
    let mut response = redirect("/domains");
    set_cookie(&mut response, &new.token);
    response
}

async fn signed_in(
    state: &Arc<ConsoleState>,
    session: &Session,
    who: &SignedIn,
    method: &Method,
    segments: &[&str],
    form: Form,
) -> HttpResponse {
    let config = state.live.current();
    match (method, segments) {
        (&Method::POST, ["logout"]) => {
            state.sessions.end(&session.token);
            let mut response = redirect("/login");
            clear_cookie(&mut response);
            response
        }
        (&Method::GET, []) => redirect("/domains"),
        (&Method::GET, ["domains"]) => changes::domains_page(&config, session, who, None),
        (&Method::POST, ["defaults", direction]) if who.role == ConsoleRole::Operator => {
            changes::global_default(state, session, who, direction, form).await
        }
        (&Method::GET, ["activity"]) => activity::page(state, session, who).await,
        (_, ["domains", domain, rest @ ..]) => {
            let Some(found) = visible(&config, who, domain) else {
                return not_found(session);
            };
            let name = found.name.as_str().to_owned();
            changes::domain_request(state, session, who, method, &name, rest, form).await
        }
        _ => not_found(session),
    }
}

/// The managed domain `name` if `who` may see it; `None` both when it is
/// not configured and when it is another tenant's (the same 404).
pub(crate) fn visible<'a>(
    config: &'a Config,
    who: &SignedIn,
    name: &str,
) -> Option<&'a ManagedDomain> {
    let name = name.parse::<crate::policy::DomainName>().ok()?;
    config
        .policy
        .domain(name.as_str())
        .filter(|d| who.role.may_see(d.tenant.as_str()))
}
