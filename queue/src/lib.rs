//! `sealpost-queue`: the durable message store of sealpost.
//!
//! No networking and no policy live here: messages, per-recipient states,
//! delivery attempts, the due-time index, group commit and crash recovery.
//! The crate is usable and testable on its own.
#![forbid(unsafe_code)]
