//! The queue's endpoints: `GET /queue/summary`, `GET /queue/messages`
//! (a page, or one message) and the operator actions on one message or
//! on a filter (`POST /queue/messages/{id}/{action}`,
//! `POST /queue/actions/{action}`).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::SystemTime;

use hyper::StatusCode;
use sealpost_queue::{
    ListFilter, MessageId, MessageInfo, Queue, QueueError, RecipientState, StateKind,
};

use super::engine;
use crate::admin::http::{self, parse_json, parse_query, ApiError, HttpResponse};
use crate::admin::views::{
    unix_ms, ActionRequest, FilterSpec, HeldBack, MessageActionRequest, MessageDetail, MessagePage,
    MessageSummary, Oldest, ReasonTally, Summary, Touched,
};
use crate::admin::AdminState;
use crate::metrics::{state_name, STATES};
use crate::policy::Direction;
use crate::policy::{explain, ExplainRequest};

/// Default and largest page of `GET /queue/messages`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Messages with deferred recipients read for the summary's defer reasons.
const SUMMARY_SCAN: usize = 10_000;
/// Messages read per step of a filter action.
const ACTION_STEP: usize = 500;

fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::NotFound { .. } => ApiError::not_found(e.to_string()),
        QueueError::BadMessageId { .. } => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

/// Runs queue work on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    state: &AdminState,
    work: impl FnOnce(&Queue) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let queue = state.queue.clone();
    tokio::task::spawn_blocking(move || work(&queue))
        .await
        .map_err(|e| ApiError::internal(format!("the queue task failed: {e}")))?
}

fn parse_id(id: &str) -> Result<MessageId, ApiError> {
    MessageId::from_str(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Counts from the queue's counters; the defer reasons from a walk over
/// messages with deferred recipients, bounded by [`SUMMARY_SCAN`].
pub(super) fn summary(queue: &Queue) -> Result<Summary, ApiError> {
    let now = SystemTime::now();
    let counts = queue.counts();
    let oldest = queue
        .list(&ListFilter::default(), None, 1)
        .map_err(queue_error)?
        .items
        .into_iter()
        .next()
        .map(|m| Oldest::of(m.id, m.arrived_at, now));
    // By kind and cause: one line per cause, whatever the times and texts.
    let mut reasons = ReasonTally::default();
    let deferred = ListFilter {
        state: Some(StateKind::Deferred),
        ..ListFilter::default()
    };
    let mut scanned = 0u64;
    let mut cursor = None;
    let mut complete = true;
    loop {
        let room = SUMMARY_SCAN.saturating_sub(scanned as usize);
        if room == 0 {
            complete = false;
            break;
        }
        let page = queue
            .list(&deferred, cursor, room.min(ACTION_STEP))
            .map_err(queue_error)?;
        for message in &page.items {
            scanned += 1;
            for r in &message.recipients {
                if r.state.kind() != StateKind::Deferred {
                    continue;
                }
                if let Some(last) = r.attempts.last() {
                    reasons.add(last.outcome.reason());
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let top = reasons.top(10);
    Ok(Summary {
        messages: counts.by_tenant.values().sum(),
        recipients_by_state: STATES
            .iter()
            .map(|s| {
                (
                    state_name(*s).to_string(),
                    counts.by_state.get(s).copied().unwrap_or(0),
                )
            })
            .collect(),
        messages_by_tenant: counts.by_tenant.clone(),
        recipients_by_destination: counts.by_destination.clone(),
        oldest,
        top_defer_reasons: top,
        defer_scan_messages: scanned,
        defer_scan_complete: complete,
    })
}

pub(super) async fn list(state: &AdminState, query: &str) -> Result<HttpResponse, ApiError> {
    let mut spec = FilterSpec::default();
    let mut cursor = None;
    let mut limit = DEFAULT_PAGE;
    for (name, value) in parse_query(query)? {
        match name.as_str() {
            "cursor" => cursor = Some(parse_id(&value)?),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "bad limit `{value}`: a number from 1 to {MAX_PAGE}"
                        ))
                    })?
            }
            _ => {
                if !spec.set(&name, value) {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{name}`: use tenant, sender, recipient, domain, \
                         state, min_age, reason, cursor or limit"
                    )));
                }
            }
        }
    }
    let now = SystemTime::now();
    let filter = spec.to_list_filter(now).map_err(ApiError::bad_request)?;
    let page = blocking(state, move |queue| {
        queue.list(&filter, cursor, limit).map_err(queue_error)
    })
    .await?;
    let page = MessagePage {
        messages: page
            .items
            .iter()
            .map(|m| MessageSummary::of(m, now))
            .collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    };
    Ok(http::json(StatusCode::OK, &page))
}

pub(super) async fn show(state: &AdminState, id: &str) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let info = blocking(state, move |queue| queue.show(id).map_err(queue_error)).await?;
    // Outbound mail (its destination is the recipient domain): the policy
    // the configuration in force gives this sender and destination now.
    let effective = info
        .recipients
        .first()
        .filter(|r| !crate::delivery::Destination::of(&r.destination).is_inbound())
        .and_then(|r| {
            let request = ExplainRequest {
                from: info.mail_from.clone(),
                to: r.destination.clone(),
                ip: None,
                direction: Some(Direction::Outbound),
            };
            explain(&state.live.current().policy, &request).ok()
        })
        .and_then(|e| serde_json::to_value(e).ok());
    let detail = MessageDetail::of(&info, effective, SystemTime::now());
    Ok(http::json(StatusCode::OK, &detail))
}

/// An operator action on queued messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Hold,
    Release,
    Delete,
    Bounce,
}

impl Action {
    fn parse(name: &str) -> Result<Action, ApiError> {
        Ok(match name {
            "retry" => Action::Retry,
            "hold" => Action::Hold,
            "release" => Action::Release,
            "delete" => Action::Delete,
            "bounce" => Action::Bounce,
            other => {
                return Err(ApiError::not_found(format!(
                    "unknown action `{other}`: retry, hold, release, delete or bounce"
                )))
            }
        })
    }

    /// Whether the action makes recipients due now; then the destinations
    /// of the recipients it changes are checked against the engine's pauses.
    fn makes_due(self) -> bool {
        matches!(self, Action::Retry | Action::Release)
    }

    /// The destinations of `message`'s recipients this action makes due.
    fn due_destinations(self, message: &MessageInfo, now: SystemTime) -> BTreeSet<String> {
        message
            .recipients
            .iter()
            .filter(|r| match (self, &r.state) {
                (Action::Retry, RecipientState::Deferred { next_attempt }) => *next_attempt > now,
                (Action::Release, RecipientState::Held) => true,
                _ => false,
            })
            .map(|r| r.destination.clone())
            .collect()
    }

    /// Applies the action to one message: whether it changed anything.
    fn apply(self, queue: &Queue, id: MessageId, bounce_reason: &str) -> Result<bool, QueueError> {
        let now = SystemTime::now();
        let changed = match self {
            Action::Retry => queue.retry_now(id, now)?,
            Action::Hold => queue.hold(id)?,
            Action::Release => queue.release(id, now)?,
            Action::Bounce => queue.bounce_now(id, bounce_reason)?,
            Action::Delete => {
                queue.delete(id)?;
                1
            }
        };
        Ok(changed > 0)
    }
}

const DEFAULT_BOUNCE_REASON: &str = "bounced by the postmaster";

pub(super) async fn message_action(
    state: &AdminState,
    id: &str,
    action: &str,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let action = Action::parse(action)?;
    let id = parse_id(id)?;
    let request: MessageActionRequest = parse_json(body)?;
    if request.bounce_reason.is_some() && action != Action::Bounce {
        return Err(ApiError::bad_request(
            "`bounce_reason` belongs to the bounce action only",
        ));
    }
    let reason = request
        .bounce_reason
        .unwrap_or_else(|| DEFAULT_BOUNCE_REASON.to_string());
    let (changed, due) = blocking(state, move |queue| {
        let mut due = BTreeMap::new();
        if action.makes_due() {
            let message = queue.show(id).map_err(queue_error)?;
            for destination in action.due_destinations(&message, SystemTime::now()) {
                due.insert(destination, 1);
            }
        }
        let changed = action.apply(queue, id, &reason).map_err(queue_error)?;
        Ok((changed, due))
    })
    .await?;
    tracing::info!(id = %id, ?action, changed, "admin action on one message");
    let held_back = if changed {
        held_back(state, due).await?
    } else {
        Vec::new()
    };
    Ok(http::json(
        StatusCode::OK,
        &Touched {
            touched: u64::from(changed),
            held_back,
        },
    ))
}

/// Which of the destinations (with how many of the changed messages each)
/// a pause of the delivery engine holds back now.
async fn held_back(
    state: &AdminState,
    due: BTreeMap<String, u64>,
) -> Result<Vec<HeldBack>, ApiError> {
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let destinations = engine(state, |delivery| delivery.destinations()).await?;
    let now = unix_ms(SystemTime::now());
    Ok(destinations
        .into_iter()
        .filter_map(|d| {
            let until = d.backoff_until.filter(|until| *until > now)?;
            let messages = *due.get(&d.name)?;
            Some(HeldBack {
                destination: d.name,
                messages,
                paused_until: until,
                reason: d.last_error,
            })
        })
        .collect())
}

pub(super) async fn filter_action(
    state: &AdminState,
    action: &str,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let action = Action::parse(action)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "a JSON filter body is required, e.g. {\"tenant\": \"acme\"} or {\"confirm_all\": true}",
        ));
    }
    let request: ActionRequest = parse_json(body)?;
    let spec = request.filter();
    if spec.is_empty() && !request.confirm_all {
        return Err(ApiError::bad_request(format!(
            "this filter matches every message: add \"confirm_all\": true to {action:?} them all"
        )));
    }
    if request.bounce_reason.is_some() && action != Action::Bounce {
        return Err(ApiError::bad_request(
            "`bounce_reason` belongs to the bounce action only",
        ));
    }
    let filter = spec
        .to_list_filter(SystemTime::now())
        .map_err(ApiError::bad_request)?;
    let reason = request
        .bounce_reason
        .unwrap_or_else(|| DEFAULT_BOUNCE_REASON.to_string());
    let (touched, due) = blocking(state, move |queue| {
        let mut touched = 0u64;
        let mut due: BTreeMap<String, u64> = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = queue
                .list(&filter, cursor, ACTION_STEP)
                .map_err(queue_error)?;
            for message in &page.items {
                let destinations = if action.makes_due() {
                    action.due_destinations(message, SystemTime::now())
                } else {
                    BTreeSet::new()
                };
                match action.apply(queue, message.id, &reason) {
                    Ok(true) => {
                        touched += 1;
                        for destination in destinations {
                            *due.entry(destination).or_default() += 1;
                        }
                    }
                    Ok(false) => {}
                    // Gone since it was listed (delivered or deleted).
                    Err(QueueError::NotFound { .. }) => {}
                    Err(e) => return Err(queue_error(e)),
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok((touched, due)),
            }
        }
    })
    .await?;
    tracing::info!(?action, ?spec, touched, "admin action on a filter");
    let held_back = held_back(state, due).await?;
    Ok(http::json(StatusCode::OK, &Touched { touched, held_back }))
}
