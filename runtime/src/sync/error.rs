//! What can go wrong in the sync client, as one error type the service can log and show.

use std::path::PathBuf;

/// Sync failures. Network and server trouble is not an error of the client (it retries);
/// these are what a caller must act on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration cannot work.
    #[error("sync configuration: {0}")]
    Config(String),
    /// Enrollment was refused or could not be done.
    #[error("enrollment with {server} failed: {reason}")]
    Enroll {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// A package could not be built.
    #[error("building a sync package: {0}")]
    Package(#[from] tinylcm_protocol::package::PackageError),
    /// The HTTP client could not be built (e.g. a bad CA file).
    #[error("HTTP client: {0}")]
    Http(String),
    /// A stored record does not decode.
    #[error("outbox record {id}: {reason}")]
    Record {
        /// The record.
        id: u64,
        /// What is wrong.
        reason: String,
    },
}

impl SyncError {
    /// An I/O error on `path` while doing `what`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SyncError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
