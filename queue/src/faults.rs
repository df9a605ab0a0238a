//! The storage seam for fault injection in tests.

use std::sync::atomic::{AtomicBool, AtomicUsize};

/// The storage seam for fault injection in tests: set `disk_full` and the
/// next body writes fail as if the disk were full; set `fail_records` and
/// attempt records fail as if the metadata could not be written
/// (`records_failed` counts them).
#[derive(Debug, Default)]
pub struct StorageFaults {
    pub disk_full: AtomicBool,
    pub fail_records: AtomicBool,
    pub records_failed: AtomicUsize,
}
