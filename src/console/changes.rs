//! The domains and domain pages and the changes made from them. Every
//! change of a tenant's domains and peers goes through
//! [`apply_change`], the admin API's path (validation, atomic write of the
//! tenant file, audit log, live apply); the defaults for unspecified
//! domains go through [`super::defaults`].

use std::collections::HashMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};

use super::forms::{direction_of, form_errors, not_found, Form};
use super::pages::{self, DomainPage, FormErrors};
use super::respond::{html, redirect};
use super::session::{Session, SignedIn};
use super::ConsoleState;
use crate::admin::http::HttpResponse;
use crate::admin::tenant_edits::{
    apply_change, view, ChangeRefused, ChangeRequest, DomainView, FieldError, Who,
};
use crate::config::edit::{Change, RuleText};
use crate::config::{Config, ConsoleRole};
use crate::policy::{Direction, PeerMatcher, PeerQuery, Reason, Resolution};

/// `GET /domains` (and the page again after a refused default change).
pub(crate) fn domains_page(
    config: &Config,
    session: &Session,
    who: &SignedIn,
    errors: Option<&FormErrors>,
) -> HttpResponse {
    let mut list: Vec<DomainView> = config
        .policy
        .domains()
        .iter()
        .filter(|d| who.role.may_see(d.tenant.as_str()))
        .map(|d| view(config, d))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let defaults = config.policy.defaults();
    let global = (who.role == ConsoleRole::Operator).then_some((
        defaults.outbound,
        defaults.inbound,
        errors,
    ));
    let status = if errors.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    html(status, pages::domains(session, &list, global))
}

/// `POST /defaults/{direction}` (operators only).
pub(crate) async fn global_default(
    state: &Arc<ConsoleState>,
    session: &Session,
    who: &SignedIn,
    direction: &str,
    form: Form,
) -> HttpResponse {
    let Some(direction) = direction_of(direction) else {
        return not_found(session);
    };
    let rule = RuleText {
        level: form.get("level").to_owned(),
        min_tls: Some(form.get("min_tls").to_owned()),
    };
    let live = state.live.clone();
    let user = who.user.clone();
    let done = tokio::task::spawn_blocking(move || {
        super::defaults::set_global_default(&live, direction, &rule, &user)
    })
    .await;
    let form_id = format!("global-{}", direction.as_str());
    match done {
        Ok(Ok(())) => redirect("/domains"),
        Ok(Err(message)) => {
            let mut errors = form_errors(&form_id, &form, &["level", "min_tls"]);
            errors.fields.insert("level", message);
            domains_page(&state.live.current(), session, who, Some(&errors))
        }
        Err(_) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::not_found(Some(session)),
        ),
    }
}

/// Requests under `/domains/{domain}` of a domain `who` may see.
pub(crate) async fn domain_request(
    state: &Arc<ConsoleState>,
    session: &Session,
    who: &SignedIn,
    method: &Method,
    domain: &str,
    rest: &[&str],
    form: Form,
) -> HttpResponse {
    let config = state.live.current();
    let Some(found) = config.policy.domain(domain) else {
        return not_found(session);
    };
    let current = view(&config, found);
    let d = domain.to_owned();
    let rule = |form: &Form| RuleText {
        level: form.get("level").to_owned(),
        min_tls: Some(form.get("min_tls").to_owned()).filter(|v| !v.is_empty()),
    };
    let (change, form_id, back) = match (method, rest) {
        (&Method::GET, []) => return domain_page(&config, session, &current, None, None),
        (&Method::POST, [action @ ("enable" | "disable")]) => (
            Change::SetDomainEnabled {
                domain: d,
                enabled: *action == "enable",
            },
            String::new(),
            Back::Referrer,
        ),
        (&Method::POST, ["defaults", dir]) => {
            let Some(direction) = direction_of(dir) else {
                return not_found(session);
            };
            (
                Change::SetDefault {
                    domain: d,
                    direction,
                    rule: Some(rule(&form)),
                },
                format!("default-{dir}"),
                Back::Domain,
            )
        }
        (&Method::POST, ["defaults", dir, "remove"]) => {
            let Some(direction) = direction_of(dir) else {
                return not_found(session);
            };
            (
                Change::SetDefault {
                    domain: d,
                    direction,
                    rule: None,
                },
                String::new(),
                Back::Domain,
            )
        }
        (&Method::POST, ["peers", dir]) => {
            let Some(direction) = direction_of(dir) else {
                return not_found(session);
            };
            (
                Change::AddPeer {
                    domain: d,
                    direction,
                    peer: form.get("peer").trim().to_owned(),
                    rule: rule(&form),
                    enabled: form.get("enabled") == "on",
                },
                format!("add-{dir}"),
                Back::Domain,
            )
        }
        (_, ["peers", dir, peer, tail @ ..]) => {
            let Some(direction) = direction_of(dir) else {
                return not_found(session);
            };
            let list = match direction {
                Direction::Outbound => &current.outbound.peers,
                Direction::Inbound => &current.inbound.peers,
            };
            let wanted = crate::admin::tenant_edits::peer_segment(peer);
            let Some(entry) = list.iter().find(|p| p.peer == wanted) else {
                return not_found(session);
            };
            let peer = entry.peer.clone();
            match (method, tail) {
                (&Method::GET, ["edit"]) => {
                    return html(
                        StatusCode::OK,
                        pages::edit_peer(session, domain, direction, entry, None),
                    )
                }
                (&Method::POST, ["probe"]) if direction == Direction::Outbound => {
                    let result = super::probe::run(&config, domain, &peer).await;
                    return domain_page(&config, session, &current, None, Some((&peer, &result)));
                }
                (&Method::POST, []) => (
                    Change::EditPeer {
                        domain: d,
                        direction,
                        peer,
                        level: Some(form.get("level").to_owned()),
                        min_tls: Some(Some(form.get("min_tls").to_owned())),
                        enabled: Some(form.get("enabled") == "on"),
                    },
                    "edit".to_owned(),
                    Back::Edit(direction, entry.clone()),
                ),
                (&Method::POST, [action @ ("enable" | "disable")]) => (
                    Change::EditPeer {
                        domain: d,
                        direction,
                        peer,
                        level: None,
                        min_tls: None,
                        enabled: Some(*action == "enable"),
                    },
                    String::new(),
                    Back::Domain,
                ),
                (&Method::POST, ["delete"]) => (
                    Change::RemovePeer {
                        domain: d,
                        direction,
                        peer,
                    },
                    String::new(),
                    Back::Domain,
                ),
                _ => return not_found(session),
            }
        }
        _ => return not_found(session),
    };
    let request = ChangeRequest {
        change,
        tenant: None,
        version: None,
    };
    let live = state.live.clone();
    let who_audit = Who {
        uid: None,
        user: Some(who.user.clone()),
    };
    let done =
        tokio::task::spawn_blocking(move || apply_change(&live, request, None, &who_audit)).await;
    let refused = match done {
        Ok(Ok(_)) => {
            return redirect(&match back {
                Back::Referrer if rest.len() == 1 => "/domains".to_owned(),
                _ => format!("/domains/{}", super::html::seg(domain)),
            })
        }
        Ok(Err(refused)) => refused,
        Err(_) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::not_found(Some(session)),
            )
        }
    };
    let mut errors = form_errors(&form_id, &form, &["peer", "level", "min_tls"]);
    let status = match refused {
        ChangeRefused::Invalid(list) => {
            place(&mut errors, &list);
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ChangeRefused::Api(e) => {
            errors.general.push(e.message.clone());
            e.status
        }
    };
    let config = state.live.current();
    let mut response = match back {
        Back::Edit(direction, entry) => html(
            status,
            pages::edit_peer(session, domain, direction, &entry, Some(&errors)),
        ),
        _ => domain_page(&config, session, &current, Some(&errors), None),
    };
    *response.status_mut() = status;
    response
}

/// Where a refused change shows its errors.
enum Back {
    /// The domains list or the domain page (a status change).
    Referrer,
    Domain,
    Edit(Direction, crate::admin::tenant_edits::PeerView),
}

/// Puts each validation error next to its field (`...peers[2].peer`),
/// the others at the top of the form.
fn place(errors: &mut FormErrors, list: &[FieldError]) {
    for e in list {
        let field = e.field.as_deref().unwrap_or("");
        let name = ["peer", "level", "min_tls"].into_iter().find(|f| {
            field.ends_with(&format!(".{f}")) || field.ends_with(&format!("default.{f}"))
        });
        match name {
            Some(name) if !errors.fields.contains_key(name) => {
                errors.fields.insert(name, e.message.clone());
            }
            _ => errors.general.push(e.message.clone()),
        }
    }
}

fn domain_page(
    config: &Config,
    session: &Session,
    domain: &DomainView,
    errors: Option<&FormErrors>,
    probe: Option<(&str, &str)>,
) -> HttpResponse {
    let defaults = config.policy.defaults();
    let effective = effective(config, domain);
    let page = DomainPage {
        domain,
        global: (defaults.outbound, defaults.inbound),
        effective: &effective,
        errors,
        probe,
    };
    html(StatusCode::OK, pages::domain(session, &page))
}

/// What the policy in force gives each listed peer now, in words.
fn effective(config: &Config, domain: &DomainView) -> HashMap<(Direction, String), String> {
    let mut out = HashMap::new();
    for (direction, peers) in [
        (Direction::Outbound, &domain.outbound.peers),
        (Direction::Inbound, &domain.inbound.peers),
    ] {
        for peer in peers {
            let Ok(matcher) = peer.peer.parse::<PeerMatcher>() else {
                continue;
            };
            // A name the entry matches: itself, or one below a wildcard.
            let example = match &matcher {
                PeerMatcher::Domain(d) => d.as_str().to_owned(),
                PeerMatcher::Wildcard(d) => format!("host.{}", d.as_str()),
                _ => String::new(),
            };
            let query = match (&matcher, direction) {
                (PeerMatcher::Ip(ip), _) => PeerQuery::Inbound {
                    ip: Some(*ip),
                    sender_domain: None,
                },
                (PeerMatcher::Cidr(net), _) => PeerQuery::Inbound {
                    ip: Some(net.network()),
                    sender_domain: None,
                },
                (_, Direction::Outbound) => PeerQuery::Outbound {
                    recipient_domain: &example,
                },
                (_, Direction::Inbound) => PeerQuery::Inbound {
                    ip: None,
                    sender_domain: Some(&example),
                },
            };
            let resolution = config.policy.resolve(&domain.name, query);
            out.insert((direction, peer.peer.clone()), in_words(&resolution));
        }
    }
    out
}

/// A resolution as the console says it: the rule, and where it comes from.
pub(crate) fn in_words(r: &Resolution) -> String {
    let source = match &r.reason {
        Reason::PeerDisabled { .. } => {
            "this entry is disabled: the default for unspecified peers applies"
        }
        Reason::DomainDefault { .. } => "the default for unspecified peers",
        Reason::GlobalDefault { .. } => "the default for unspecified domains",
        _ => "this peer's entry",
    };
    format!("{} ({source})", pages::rule_text(r.rule()))
}
