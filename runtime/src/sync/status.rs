//! The sync client's counters, shared with the service so that `status.json` and the metrics
//! show what sync does: queued, uploaded, duplicates, dropped, failures, the last error and the
//! last success. In memory and per process; the durable totals are the store's `sync.*`
//! counters.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusView {
    /// Whether the device has credentials.
    pub enrolled: bool,
    /// Packages waiting in the outbox.
    pub outbox_packages: u64,
    /// Their bytes.
    pub outbox_bytes: u64,
    /// Packages queued since start.
    pub queued: u64,
    /// Packages the server accepted since start.
    pub uploaded: u64,
    /// Packages the server already had (a retry after a lost answer) since start.
    pub duplicates: u64,
    /// Packages dropped by the disk policy (or a 413) since start.
    pub dropped: u64,
    /// Packages the server refused as invalid (moved aside) since start.
    pub rejected: u64,
    /// Failed requests (network, 5xx, garbage) since start.
    pub failures: u64,
    /// Feedback items applied and acknowledged since start.
    pub feedback_items: u64,
    /// Remote configurations applied since start.
    pub configs_applied: u64,
    /// Model releases handed to the model store since start.
    pub models_installed: u64,
    /// The last failure, if the last round had one.
    pub last_error: Option<String>,
    /// When a round last completed without failure (Unix ms).
    pub last_success_unix_ms: Option<u64>,
    /// Uploads are stopped because the server refused the token.
    pub needs_enrollment: bool,
}

/// The live counters (cheap to read from any thread).
#[derive(Debug, Default)]
pub struct SyncStatus {
    inner: Mutex<SyncStatusView>,
}

impl SyncStatus {
    /// A copy of the counters.
    pub fn view(&self) -> SyncStatusView {
        self.lock().clone()
    }

    /// Changes the counters under the lock.
    pub fn update(&self, f: impl FnOnce(&mut SyncStatusView)) {
        f(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncStatusView> {
        // Counters only: a panic half-way cannot break an invariant worth refusing over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
