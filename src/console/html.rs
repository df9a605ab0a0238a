//! HTML building: escaping and the page frame every page shares. Pages
//! are server-rendered strings; the only script is `/static/console.js`
//! (the CSP forbids inline script).

use std::fmt::Write;

use super::session::Session;
use crate::config::ConsoleRole;

/// `text` escaped for HTML text and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment percent-encoded (peers such as `192.0.2.0/24`).
pub(crate) fn seg(text: &str) -> String {
    crate::admin::http::percent_encode(text)
}

/// The hidden CSRF field of every form.
pub(crate) fn csrf_field(session: &Session) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(&session.csrf)
    )
}

/// A form with one button posting to `action` (enable, disable, delete).
pub(crate) fn button_form(session: &Session, action: &str, label: &str, class: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="inline">{}<button type="submit" class="{class}">{}</button></form>"#,
        esc(action),
        csrf_field(session),
        esc(label)
    )
}

/// The whole page: header with navigation (when signed in), `body`.
pub fn page(title: &str, session: Option<&Session>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(who) = session.and_then(|s| s.who.as_ref().map(|w| (s, w))) {
        let (session, who) = who;
        let role = match &who.role {
            ConsoleRole::Operator => "operator".to_owned(),
            ConsoleRole::TenantAdmin(t) => format!("administrator of {}", t.as_str()),
        };
        let _ = write!(
            nav,
            r#"<nav><a href="/domains">Domains</a> <a href="/activity">Activity</a>
<span class="who">{} ({})</span> {}</nav>"#,
            esc(&who.user),
            esc(&role),
            button_form(session, "/logout", "Sign out", "link")
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Transport Layer Security (TLS) Peers</title>
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script>
</head><body>
<header><h1>Transport Layer Security (TLS) Peers</h1>{nav}</header>
<main><h2>{title}</h2>
{body}
</main></body></html>
"#,
        title = esc(title),
    )
}

/// A `<select>` of `choices` (value, label) with `selected` chosen.
pub fn select(name: &str, id: &str, choices: &[(&str, &str)], selected: &str) -> String {
    let mut out = format!(r#"<select name="{}" id="{}">"#, esc(name), esc(id));
    for (value, label) in choices {
        let chosen = if *value == selected { " selected" } else { "" };
        let _ = write!(
            out,
            r#"<option value="{}"{chosen}>{}</option>"#,
            esc(value),
            esc(label)
        );
    }
    out.push_str("</select>");
    out
}

/// An error message next to a field (empty when none).
pub(crate) fn field_error(id: &str, error: Option<&str>) -> String {
    match error {
        Some(e) => format!(
            r#"<span class="field-error" id="{}-error" role="alert">{}</span>"#,
            esc(id),
            esc(e)
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(seg("192.0.2.0/24"), "192.0.2.0%2F24");
    }
}
