//! The pages: sign-in, domains, domain (the TLS peers of one domain), the
//! peer edit form, activity. Each takes what it shows as values and
//! returns HTML; nothing here reads the configuration or the queue.

use std::collections::HashMap;
use std::fmt::Write;

use super::html::{button_form, csrf_field, esc, field_error, page, seg, select};
use super::session::Session;
use super::words;
use crate::admin::audit::AuditRecord;
use crate::admin::tenant_edits::DomainView;
use crate::policy::{Direction, MinTlsVersion, PolicyRule, SecurityLevel};

/// The sign-in page.
pub fn sign_in(session: &Session, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, esc(e))
    });
    let body = format!(
        r#"{error}<form method="post" action="/login" id="sign-in">{csrf}
<div class="field"><label for="user">User name</label><input id="user" name="user" autocomplete="username" required></div>
<div class="field"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required></div>
<button type="submit" id="sign-in-button">Sign in</button></form>"#,
        csrf = csrf_field(session)
    );
    page("Sign in", None, &body)
}

/// The answer to a form without a valid session or CSRF token.
pub(crate) fn sign_in_again() -> String {
    page(
        "Sign in again",
        None,
        r#"<p>This form has expired or did not come from this console. <a href="/login">Sign in</a> again.</p>"#,
    )
}

/// A page saying there is nothing here (also for other tenants' data).
pub(crate) fn not_found(session: Option<&Session>) -> String {
    page("Not found", session, "<p>There is no such page.</p>")
}

/// A rule in the product's words.
pub(crate) fn rule_text(rule: PolicyRule) -> String {
    format!(
        "{}, {}",
        words::level(rule.level),
        words::min_tls(rule.min_tls)
    )
}

fn rule_of(view: Option<&crate::admin::tenant_edits::RuleView>) -> Option<PolicyRule> {
    let view = view?;
    Some(PolicyRule::new(
        view.level.parse().ok()?,
        view.min_tls.parse().ok()?,
    ))
}

/// The domains page: the managed domains with their status and defaults;
/// for operators also the global defaults for unspecified domains.
pub fn domains(
    session: &Session,
    list: &[DomainView],
    global: Option<(PolicyRule, PolicyRule, Option<&FormErrors>)>,
) -> String {
    let mut body = String::new();
    if let Some((outbound, inbound, errors)) = global {
        body.push_str(&global_defaults(session, outbound, inbound, errors));
    }
    body.push_str(
        r#"<h3>Managed domains</h3><table id="domains"><thead><tr><th>Domain</th><th>Tenant</th><th>Status</th>
<th>Outbound default for unspecified peers</th><th>Inbound default for unspecified peers</th><th></th></tr></thead><tbody>"#,
    );
    for d in list {
        let default = |v: Option<&crate::admin::tenant_edits::RuleView>| {
            rule_of(v).map_or("Default for unspecified domains".to_owned(), rule_text)
        };
        let toggle = if d.enabled { "disable" } else { "enable" };
        let _ = write!(
            body,
            r#"<tr data-domain="{name}"><td><a href="/domains/{path}">{name}</a></td><td>{tenant}</td><td class="status">{status}</td><td>{out}</td><td>{inb}</td><td>{button}</td></tr>"#,
            name = esc(&d.name),
            path = seg(&d.name),
            tenant = esc(&d.tenant),
            status = words::status(d.enabled),
            out = esc(&default(d.outbound.default.as_ref())),
            inb = esc(&default(d.inbound.default.as_ref())),
            button = button_form(
                session,
                &format!("/domains/{}/{toggle}", seg(&d.name)),
                if d.enabled { "Disable" } else { "Enable" },
                "toggle",
            ),
        );
    }
    if list.is_empty() {
        body.push_str(r#"<tr><td colspan="6">No managed domains.</td></tr>"#);
    }
    body.push_str("</tbody></table>");
    page("Domains", Some(session), &body)
}

fn global_defaults(
    session: &Session,
    outbound: PolicyRule,
    inbound: PolicyRule,
    errors: Option<&FormErrors>,
) -> String {
    let mut out = String::from(
        r#"<h3>Default for unspecified domains</h3><p class="muted">Applies to mail of domains that are not managed here or are disabled.</p>"#,
    );
    for (direction, rule) in [
        (Direction::Outbound, outbound),
        (Direction::Inbound, inbound),
    ] {
        let id = format!("global-{}", direction.as_str());
        let _ = write!(
            out,
            r#"<form method="post" action="/defaults/{dir}" id="{id}"><fieldset><legend>{label}</legend>{csrf}
<span class="current" id="{id}-current">{current}</span>
{fields}<button type="submit">Save</button></fieldset></form>"#,
            dir = direction.as_str(),
            label = words::direction(direction),
            csrf = csrf_field(session),
            current = esc(&rule_text(rule)),
            fields = rule_fields(&id, direction, Some(rule), errors),
        );
    }
    out
}

/// Errors of a refused form: by field (`peer`, `level`, `min_tls`) and
/// for the whole form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormErrors {
    /// Which form they belong to (its id).
    pub form: String,
    pub fields: HashMap<&'static str, String>,
    pub general: Vec<String>,
    /// What was typed, shown again.
    pub values: HashMap<&'static str, String>,
}

impl FormErrors {
    fn field(&self, form: &str, name: &str) -> Option<&str> {
        (self.form == form)
            .then(|| self.fields.get(name).map(String::as_str))
            .flatten()
    }
    fn value(&self, form: &str, name: &str) -> Option<&str> {
        (self.form == form)
            .then(|| self.values.get(name).map(String::as_str))
            .flatten()
    }
}

/// The level and minimum-version fields of a form `id`.
fn rule_fields(
    id: &str,
    direction: Direction,
    rule: Option<PolicyRule>,
    errors: Option<&FormErrors>,
) -> String {
    let level_choices: Vec<(&str, &str)> = words::levels_for(direction)
        .into_iter()
        .map(|l| (l.as_str(), words::level(l)))
        .collect();
    let min_choices: Vec<(&str, &str)> = words::MIN_TLS_CHOICES
        .iter()
        .map(|v| (v.as_str(), words::min_tls(*v)))
        .collect();
    let given = |name| errors.and_then(|e| e.value(id, name));
    let level = given("level").unwrap_or(
        rule.map_or(SecurityLevel::Opportunistic, |r| r.level)
            .as_str(),
    );
    let min = given("min_tls").unwrap_or(rule.map_or(MinTlsVersion::Any, |r| r.min_tls).as_str());
    format!(
        r#"<div class="field"><label for="{id}-level">Security level</label>{}{}</div>
<div class="field"><label for="{id}-min_tls">Minimum TLS version</label>{}{}</div>"#,
        select("level", &format!("{id}-level"), &level_choices, level),
        field_error(
            &format!("{id}-level"),
            errors.and_then(|e| e.field(id, "level"))
        ),
        select("min_tls", &format!("{id}-min_tls"), &min_choices, min),
        field_error(
            &format!("{id}-min_tls"),
            errors.and_then(|e| e.field(id, "min_tls"))
        ),
    )
}

/// What the domain page shows besides the domain itself.
pub struct DomainPage<'a> {
    pub domain: &'a DomainView,
    /// The global defaults (for a domain without its own).
    pub global: (PolicyRule, PolicyRule),
    /// Per direction and peer: the policy in force for that peer now.
    pub effective: &'a HashMap<(Direction, String), String>,
    pub errors: Option<&'a FormErrors>,
    /// A probe's result to show, for one outbound peer.
    pub probe: Option<(&'a str, &'a str)>,
}

/// The domain page: its TLS peers, inbound and outbound.
pub fn domain(session: &Session, p: &DomainPage<'_>) -> String {
    let d = p.domain;
    let mut body = format!(
        r#"<p>Tenant <strong>{}</strong>, status <strong id="domain-status">{}</strong> {}</p>"#,
        esc(&d.tenant),
        words::status(d.enabled),
        button_form(
            session,
            &format!(
                "/domains/{}/{}",
                seg(&d.name),
                if d.enabled { "disable" } else { "enable" }
            ),
            if d.enabled {
                "Disable domain"
            } else {
                "Enable domain"
            },
            "toggle",
        )
    );
    if let Some(errors) = p.errors.filter(|e| e.form.is_empty()) {
        for e in &errors.general {
            let _ = write!(body, r#"<p class="error" role="alert">{}</p>"#, esc(e));
        }
    }
    for direction in [Direction::Outbound, Direction::Inbound] {
        body.push_str(&direction_section(session, p, direction));
    }
    page(&d.name, Some(session), &body)
}

fn direction_section(session: &Session, p: &DomainPage<'_>, direction: Direction) -> String {
    let d = p.domain;
    let view = match direction {
        Direction::Outbound => &d.outbound,
        Direction::Inbound => &d.inbound,
    };
    let dir = direction.as_str();
    let global = match direction {
        Direction::Outbound => p.global.0,
        Direction::Inbound => p.global.1,
    };
    let own = rule_of(view.default.as_ref());
    let mut out = format!(
        r#"<section id="{dir}"><h3>{} TLS peers</h3>
<table id="{dir}-peers"><thead><tr><th>Peer</th><th>Status</th><th>Security level</th><th>Minimum TLS version</th><th>In force for this peer now</th><th></th></tr></thead><tbody>"#,
        words::direction(direction)
    );
    for peer in &view.peers {
        let rule = PolicyRule::new(
            peer.level.parse().unwrap_or(SecurityLevel::Opportunistic),
            peer.min_tls.parse().unwrap_or(MinTlsVersion::Any),
        );
        let base = format!("/domains/{}/peers/{dir}/{}", seg(&d.name), seg(&peer.peer));
        let toggle = if peer.enabled { "disable" } else { "enable" };
        let mut actions = format!(
            r#"<a href="{base}/edit">Edit</a> {} "#,
            button_form(
                session,
                &format!("{base}/{toggle}"),
                if peer.enabled { "Disable" } else { "Enable" },
                "toggle"
            )
        );
        actions.push_str(&format!(
            r#"<form method="post" action="{}/delete" class="inline" data-confirm="Delete this peer?">{}<button type="submit">Delete</button></form>"#,
            esc(&base),
            csrf_field(session)
        ));
        if direction == Direction::Outbound {
            actions.push_str(&button_form(
                session,
                &format!("{base}/probe"),
                "Probe",
                "probe",
            ));
        }
        let effective = p
            .effective
            .get(&(direction, peer.peer.clone()))
            .map_or(String::new(), |e| esc(e));
        let _ = write!(
            out,
            r#"<tr data-peer="{name}" class="{class}"><td>{name}</td><td class="status">{status}</td><td class="level">{level}</td><td class="min-tls">{min}</td><td class="effective">{effective}</td><td>{actions}</td></tr>"#,
            name = esc(&peer.peer),
            class = if peer.enabled { "" } else { "disabled" },
            status = words::status(peer.enabled),
            level = words::level(rule.level),
            min = words::min_tls(rule.min_tls),
        );
        if let Some((probed, result)) = p.probe.filter(|(n, _)| *n == peer.peer) {
            let _ = write!(
                out,
                r#"<tr class="probe-result"><td colspan="6"><strong>Probe of {}</strong><pre>{}</pre></td></tr>"#,
                esc(probed),
                esc(result)
            );
        }
    }
    if view.peers.is_empty() {
        out.push_str(r#"<tr><td colspan="6">No peers.</td></tr>"#);
    }
    out.push_str("</tbody></table>");
    let id = format!("default-{dir}");
    let _ = write!(
        out,
        r#"<form method="post" action="/domains/{name}/defaults/{dir}" id="{id}"><fieldset><legend>Default for unspecified peers</legend>{csrf}
<p>In force: <span id="{id}-current">{current}</span></p>{fields}<button type="submit">Save default</button></fieldset></form>{remove}"#,
        name = seg(&d.name),
        csrf = csrf_field(session),
        current = esc(&match own {
            Some(rule) => rule_text(rule),
            None => format!(
                "{} (the default for unspecified domains)",
                rule_text(global)
            ),
        }),
        fields = rule_fields(&id, direction, own.or(Some(global)), p.errors),
        remove = match own {
            Some(_) => button_form(
                session,
                &format!("/domains/{}/defaults/{dir}/remove", seg(&d.name)),
                "Use the default for unspecified domains",
                "remove-default",
            ),
            None => String::new(),
        },
    );
    let id = format!("add-{dir}");
    let errors = p.errors;
    let _ = write!(
        out,
        r#"<form method="post" action="/domains/{name}/peers/{dir}" id="{id}"><fieldset><legend>Add an {lower} TLS peer</legend>{csrf}
<div class="field"><label for="{id}-peer">Peer</label><input id="{id}-peer" name="peer" value="{peer}" placeholder="{hint}">{peer_error}</div>
{fields}<div class="field"><label for="{id}-enabled">Enabled</label><input type="checkbox" id="{id}-enabled" name="enabled" value="on" checked></div>
<button type="submit">Add peer</button>{general}</fieldset></form></section>"#,
        name = seg(&d.name),
        lower = dir,
        csrf = csrf_field(session),
        peer = esc(errors.and_then(|e| e.value(&id, "peer")).unwrap_or("")),
        hint = if direction == Direction::Outbound {
            "bank.example or *.bank.example"
        } else {
            "192.0.2.0/24, 192.0.2.7 or partner.example"
        },
        peer_error = field_error(
            &format!("{id}-peer"),
            errors.and_then(|e| e.field(&id, "peer"))
        ),
        fields = rule_fields(&id, direction, None, errors),
        general = errors.filter(|e| e.form == id).map_or(String::new(), |e| {
            e.general
                .iter()
                .map(|g| format!(r#"<p class="error" role="alert">{}</p>"#, esc(g)))
                .collect()
        }),
    );
    out
}

/// The edit form of one peer.
pub(crate) fn edit_peer(
    session: &Session,
    domain: &str,
    direction: Direction,
    peer: &crate::admin::tenant_edits::PeerView,
    errors: Option<&FormErrors>,
) -> String {
    let rule = PolicyRule::new(
        peer.level.parse().unwrap_or(SecurityLevel::Opportunistic),
        peer.min_tls.parse().unwrap_or(MinTlsVersion::Any),
    );
    let id = "edit";
    let body = format!(
        r#"<p><a href="/domains/{path}">Back to {domain}</a></p>
<form method="post" action="/domains/{path}/peers/{dir}/{peer_path}" id="{id}"><fieldset><legend>{label} TLS peer {peer}</legend>{csrf}
{fields}<div class="field"><label for="{id}-enabled">Enabled</label><input type="checkbox" id="{id}-enabled" name="enabled" value="on"{checked}></div>
<button type="submit">Save</button>{general}</fieldset></form>"#,
        path = seg(domain),
        domain = esc(domain),
        dir = direction.as_str(),
        peer_path = seg(&peer.peer),
        label = words::direction(direction),
        peer = esc(&peer.peer),
        csrf = csrf_field(session),
        fields = rule_fields(id, direction, Some(rule), errors),
        checked = if peer.enabled { " checked" } else { "" },
        general = errors.map_or(String::new(), |e| {
            e.general
                .iter()
                .map(|g| format!(r#"<p class="error" role="alert">{}</p>"#, esc(g)))
                .collect()
        }),
    );
    page(&format!("Edit peer {}", peer.peer), Some(session), &body)
}

/// One queued message as the activity page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedLine {
    pub id: String,
    pub tenant: String,
    pub sender: String,
    pub recipient: String,
    pub state: String,
    pub reason: String,
}

/// TLS outcomes towards one peer (recipient domain) since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerOutcomes {
    pub peer: String,
    /// Attempts delivered with DANE, MTA-STS (WebPKI), TLS, cleartext.
    pub dane: u64,
    pub mta_sts: u64,
    pub tls: u64,
    pub cleartext: u64,
    /// Attempts refused by the TLS policy, and the last such reason in
    /// the queue's records.
    pub refused: u64,
    pub last_refusal: Option<String>,
}

/// The activity page: the queue, TLS outcomes per peer, recent changes.
pub fn activity(
    session: &Session,
    queued: &[QueuedLine],
    outcomes: &[PeerOutcomes],
    audit: &[AuditRecord],
) -> String {
    let mut body = String::from(
        r#"<h3>Messages waiting</h3><table id="queue"><thead><tr><th>Message</th><th>Tenant</th><th>Sender</th><th>Recipient</th><th>State</th><th>Reason</th></tr></thead><tbody>"#,
    );
    for q in queued {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.id),
            esc(&q.tenant),
            esc(&q.sender),
            esc(&q.recipient),
            esc(&q.state),
            esc(&q.reason)
        );
    }
    if queued.is_empty() {
        body.push_str(r#"<tr><td colspan="6">Nothing is waiting.</td></tr>"#);
    }
    body.push_str(
        r#"</tbody></table><h3>TLS outcomes per peer since start</h3><table id="outcomes"><thead><tr><th>Peer</th><th>Delivered with DANE</th><th>with MTA-STS</th><th>with TLS</th><th>in cleartext</th><th>Refused by policy</th><th>Last refusal</th></tr></thead><tbody>"#,
    );
    for o in outcomes {
        let _ = write!(
            body,
            r#"<tr data-peer="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&o.peer),
            esc(&o.peer),
            o.dane,
            o.mta_sts,
            o.tls,
            o.cleartext,
            o.refused,
            esc(o.last_refusal.as_deref().unwrap_or(""))
        );
    }
    if outcomes.is_empty() {
        body.push_str(r#"<tr><td colspan="7">No deliveries yet.</td></tr>"#);
    }
    body.push_str(
        r#"</tbody></table><h3>Recent changes</h3><table id="audit"><thead><tr><th>Time</th><th>Tenant</th><th>Who</th><th>Change</th><th>Domain</th></tr></thead><tbody>"#,
    );
    for r in audit.iter().rev() {
        let who = r
            .user
            .clone()
            .or_else(|| r.uid.map(|u| format!("uid {u}")))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.time),
            esc(&r.tenant),
            esc(&who),
            esc(&r.change),
            esc(&r.domain)
        );
    }
    if audit.is_empty() {
        body.push_str(r#"<tr><td colspan="5">No changes recorded.</td></tr>"#);
    }
    body.push_str("</tbody></table>");
    page("Activity", Some(session), &body)
}
