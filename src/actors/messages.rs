//! The messages between the scheduler and the destination actors, each
//! with its reply type. They live apart from both actors so that each
//! depends on the messages, not on the other: a destination actor answers
//! through the [`SchedulerInbox`] it was given ([`Recipient`]s), never
//! through the scheduler's type.

use actix::{Message, Recipient};
use sealpost_queue::Lease;

/// Deliver this lease (scheduler -> destination).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Lease);

/// Forget the backoff and close the idle connections (admin "flush";
/// scheduler -> destination).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// The scheduler forgot this actor (it sends new leases to a new one):
/// finish what is here, then stop (scheduler -> destination).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

/// The engine is stopping: give waiting leases back to the queue
/// (scheduler -> destination).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct GiveBack;

/// A lease of this tenant at this destination is finished (recorded in
/// the queue, or given back); destination -> scheduler.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Done {
    pub tenant: String,
    pub destination: String,
}

/// The destination actor `serial` for `name` has been idle long enough to
/// retire (destination -> scheduler). Only the actor the scheduler still
/// holds for that name retires: a newer one (another serial) stays.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Idle {
    pub name: String,
    pub serial: u64,
}

/// Where a destination actor reports to.
#[derive(Clone)]
pub struct SchedulerInbox {
    pub done: Recipient<Done>,
    pub idle: Recipient<Idle>,
}
