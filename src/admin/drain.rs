//! `POST /queue/drain` starts handing this node's queue to another node
//! over SMTP (`docs/cluster.md`, "Draining a node"); `GET /queue/drain`
//! shows its progress. The drain runs in the daemon, so it goes on when
//! the CLI that started it is interrupted; one drain at a time. The work
//! itself is done by a [`DrainControl`] the server gives the admin API
//! (`crate::cluster::drain`), so this layer does not depend on it.

use std::sync::Arc;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::http::{self, ApiError, HttpResponse};
use super::AdminState;

/// What `POST /queue/drain` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// The receiving node's SMTP listener, `HOST:PORT`.
    pub to: String,
    /// Only this tenant's messages; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Where a drain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainState {
    Running,
    /// Nothing waiting is left (held messages stay: they are counted).
    Done,
    /// Stopped on an error (`last_error`); what was not handed over stays.
    Failed,
}

/// A drain's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub state: DrainState,
    /// Messages the other node accepted (`250`) and this node removed.
    pub handed_over: u64,
    /// Messages the other node refused; they stay in this queue.
    pub refused: u64,
    /// Messages (of the tenant, if one was given) still stored here.
    pub remaining: u64,
    /// Held messages, which a drain leaves in place.
    pub held: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Runs drains for the admin API.
pub trait DrainControl: Send + Sync {
    /// Starts a drain, or says why not (one is running, a bad address).
    fn start(&self, request: DrainRequest) -> Result<DrainStatus, DrainRefusal>;
    /// The running or last drain's progress.
    fn status(&self) -> Option<DrainStatus>;
}

/// Why a drain did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainRefusal {
    #[error("a drain to {to} is already running")]
    Running { to: String },
    #[error("bad `to` address `{given}`: write HOST:PORT")]
    BadAddress { given: String },
    #[error("draining is not available in this process")]
    Unavailable,
}

/// The control of a process without a queue to drain (tests).
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoDrain;

#[cfg(test)]
impl DrainControl for NoDrain {
    fn start(&self, _: DrainRequest) -> Result<DrainStatus, DrainRefusal> {
        Err(DrainRefusal::Unavailable)
    }
    fn status(&self) -> Option<DrainStatus> {
        None
    }
}

/// `POST /queue/drain`: `202` with the status when started, `409` when
/// one runs already.
pub fn post(state: &Arc<AdminState>, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: DrainRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("bad drain request: {e}")))?;
    match state.drain.start(request) {
        Ok(status) => Ok(http::json(StatusCode::ACCEPTED, &status)),
        Err(e @ DrainRefusal::Running { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e @ DrainRefusal::BadAddress { .. }) => Err(ApiError::bad_request(e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// `GET /queue/drain`: the running or last drain, `404` when none ran.
pub fn get(state: &Arc<AdminState>) -> Result<HttpResponse, ApiError> {
    match state.drain.status() {
        Some(status) => Ok(http::json(StatusCode::OK, &status)),
        None => Err(ApiError::not_found(
            "no drain has run since sealpost started",
        )),
    }
}
