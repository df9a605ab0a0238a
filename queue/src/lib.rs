//! `sealpost-queue`: the durable message store of sealpost.
//!
//! No networking and no policy live here: messages, per-recipient states,
//! delivery attempts, the due-time index, group commit and crash recovery.
//! The crate is usable and testable on its own.
#![forbid(unsafe_code)]

mod backoff;
mod commit;
mod error;
mod faults;
mod frame;
mod index;
mod queue;
mod reason;
mod record;
mod segment;
mod sled_open;
mod spool;
mod types;

pub use backoff::{base_interval, next_retry, Retry, RetryPolicy};
pub use commit::{Durable, DurableTransaction};
pub use error::QueueError;
pub use faults::StorageFaults;
pub use index::Counts;
pub use queue::{Queue, QueueOptions};
pub use reason::{LocalCause, Place, Reason, ReasonGroup, Status, TlsFailure};
pub use sled_open::open_sled;
pub use spool::{Body, Spool};
pub use types::{
    AcceptedPolicy, Attempt, AttemptRecord, Authentication, MessageId, MessageInfo, NewCopy,
    NewMessage, NewRecipient, NewTransaction, Outcome, RecipientInfo, RecipientState, StateKind,
    TlsRequest,
};
mod lease;
mod ops;
pub use lease::{BounceDue, BouncedRecipient, Lease, LeaseKey, LeasedRecipient, PendingBatch};
pub use ops::{ListFilter, Page};
