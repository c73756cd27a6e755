//! What can go wrong in the domain, in terms the HTTP layer turns into status codes.
//!
//! Why: every error a client sees must be JSON with a fix where one exists, and must not leak
//! server paths or internals; the variants carry exactly the client-facing text.

use tinylcm_protocol::api::DriftEventView;

use crate::ports::StoreError;
use crate::secret::RandomError;

/// `". Fix: ..."` when there is a fix (for logs and the command line; HTTP sends it apart).
fn with_fix(fix: &Option<String>) -> String {
    fix.as_deref()
        .map(|f| format!(". Fix: {f}"))
        .unwrap_or_default()
}

/// A refused or failed request.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// No or unknown credentials (401).
    #[error("{error}{}", with_fix(fix))]
    Unauthorized {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// Valid credentials that may not do this (403).
    #[error("{error}{}", with_fix(fix))]
    Forbidden {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// Malformed input (400).
    #[error("{error}{}", with_fix(fix))]
    BadRequest {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// Input over a size limit (413).
    #[error("{error}{}", with_fix(fix))]
    TooLarge {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// No such thing (404).
    #[error("{error}{}", with_fix(fix))]
    NotFound {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// Something with that name exists already (409).
    #[error("{error}{}", with_fix(fix))]
    Exists {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// A drift event was decided already (409, with the event as it stands).
    #[error("{error}{}", with_fix(fix))]
    Conflict {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
        /// The event's current state.
        current: Box<DriftEventView>,
    },
    /// The device's storage quota is used up by data still needed (507; the device keeps
    /// the package and retries).
    #[error("{error}{}", with_fix(fix))]
    InsufficientStorage {
        /// Client-facing message.
        error: String,
        /// What the client should do.
        fix: Option<String>,
    },
    /// A store failed (500; details are logged, not sent).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
    /// The OS random source failed (500).
    #[error(transparent)]
    Random(#[from] RandomError),
}
