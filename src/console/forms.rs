//! What the console's request handlers share: a posted form, its errors
//! for the page that shows them next to their fields, and the one answer
//! for what does not exist or is not the user's to see.

use hyper::StatusCode;

use super::pages::{self, FormErrors};
use super::respond::html;
use super::session::Session;
use crate::admin::http::HttpResponse;
use crate::policy::Direction;

/// A posted form's fields.
#[derive(Debug, Default)]
pub(crate) struct Form(pub(super) Vec<(String, String)>);

impl Form {
    /// The field's value (empty when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// The same 404 for what does not exist and for what is another
/// tenant's (no guessing by status).
pub(crate) fn not_found(session: &Session) -> HttpResponse {
    html(StatusCode::NOT_FOUND, pages::not_found(Some(session)))
}

/// `inbound` or `outbound`.
pub(crate) fn direction_of(given: &str) -> Option<Direction> {
    given.parse().ok()
}

/// Errors of a form, from a refused change.
pub(crate) fn form_errors(form_id: &str, form: &Form, fields: &[&'static str]) -> FormErrors {
    FormErrors {
        form: form_id.to_owned(),
        values: fields
            .iter()
            .filter(|f| form.has(f))
            .map(|f| (*f, form.get(f).to_owned()))
            .collect(),
        ..FormErrors::default()
    }
}
