//! Console responses: HTML, redirects, static assets, all with the
//! security headers (CSP without inline script, no framing, HSTS, no
//! caching of pages, no referrer).

use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, LOCATION, SET_COOKIE};
use hyper::StatusCode;

use super::session::COOKIE;
use crate::admin::http::{respond, HttpResponse};

/// The Content-Security-Policy: scripts and styles from the console only,
/// no inline script, no framing, forms post to the console only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One year, the usual HSTS lifetime.
pub(crate) const HSTS: &str = "max-age=31536000";

/// The stylesheet and the script, embedded in the binary.
pub(crate) const CSS: &str = include_str!("assets/console.css");
pub(crate) const JS: &str = include_str!("assets/console.js");

fn secure(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("strict-transport-security", HSTS),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// An HTML page, never cached.
pub fn html(status: StatusCode, body: String) -> HttpResponse {
    let mut response = respond(status, "text/html; charset=utf-8", body.into_bytes());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(response)
}

/// A static asset (cacheable for an hour).
pub fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut response = respond(StatusCode::OK, content_type, body.as_bytes().to_vec());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    secure(response)
}

/// `303 See Other` to `location` (after a form post, or to sign in).
pub fn redirect(location: &str) -> HttpResponse {
    let mut response = html(StatusCode::SEE_OTHER, String::new());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The session cookie for `token`: Secure, HttpOnly, SameSite=Strict.
pub(crate) fn set_cookie(response: &mut HttpResponse, token: &str) {
    let cookie = format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// Removes the session cookie.
pub(crate) fn clear_cookie(response: &mut HttpResponse) {
    let cookie = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// The session token of a `Cookie` header.
pub(crate) fn cookie_token(header: Option<&HeaderValue>) -> Option<String> {
    let text = header?.to_str().ok()?;
    text.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_the_security_headers() {
        let page = html(StatusCode::OK, "<p>x</p>".into());
        let h = page.headers();
        assert_eq!(h["content-security-policy"], CSP);
        assert!(CSP.contains("frame-ancestors 'none'") && !CSP.contains("unsafe-inline"));
        assert_eq!(h["strict-transport-security"], HSTS);
        assert_eq!(h["cache-control"], "no-store");
        let mut r = redirect("/domains");
        set_cookie(&mut r, "abc");
        let cookie = r.headers()["set-cookie"].to_str().expect("ascii");
        for part in ["Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(cookie.contains(part), "{cookie}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let v = HeaderValue::from_static("a=1; sealpost_console=tok; b=2");
        assert_eq!(cookie_token(Some(&v)).as_deref(), Some("tok"));
        assert_eq!(cookie_token(Some(&HeaderValue::from_static("a=1"))), None);
    }
}
