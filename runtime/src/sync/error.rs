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

/// Why a sync round stopped before its end. The round is retried with backoff; the message
/// is what the log and `status.json`'s `last_error` show, so it names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The stored credentials do not work, or enrolling failed.
    #[error(transparent)]
    Credentials(SyncError),
    /// The enrollment key file could not be read.
    #[error("enrollment key: {0}")]
    EnrollmentKey(#[source] SyncError),
    /// A package could not be built into the outbox.
    #[error("packaging: {0}")]
    Packaging(#[source] SyncError),
    /// The outbox could not be read or updated.
    #[error(transparent)]
    Outbox(SyncError),
    /// The server refuses the device's token: uploads wait for a new enrollment.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// An upload failed (network, server) and is tried again.
    #[error("upload of {package}: {reason}")]
    Upload {
        /// The package id.
        package: String,
        /// What went wrong.
        reason: String,
    },
    /// Something that is not sphere-lite answered an upload with an error: the package is
    /// kept for the next round.
    #[error("upload of {package} ({bytes} bytes) kept: {answer}")]
    Kept {
        /// The package id.
        package: String,
        /// Its size.
        bytes: usize,
        /// What was answered.
        answer: String,
    },
    /// Pulling feedback or the model assignment failed.
    #[error(transparent)]
    Pull(#[from] PullError),
}

/// Why pulling feedback or the model assignment stopped this round (it is retried with
/// backoff; a model the device refuses is not an error but a [`super::pull::ModelOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// A request did not get an answer (network, an answer over its bound).
    #[error("{what}: {source}")]
    Transport {
        /// The request (`feedback`, `feedback ack`, `model assignment`).
        what: &'static str,
        /// Why.
        source: super::http::Transport,
    },
    /// The server answered with an error.
    #[error("{what}: {answer}")]
    Answer {
        /// The request.
        what: &'static str,
        /// The answer's status and text.
        answer: String,
    },
    /// The answer does not decode.
    #[error("{what}: {reason}")]
    Decode {
        /// The request.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The feedback could not be written to the inbox.
    #[error("writing feedback: {0}")]
    Inbox(#[source] crate::autonomy::feedback::FeedbackError),
    /// The model assignment's SHA-256 or size cannot be right.
    #[error("model assignment {label}: bad SHA-256 or size {size}")]
    BadAssignment {
        /// `name/version`.
        label: String,
        /// The size it gives.
        size: u64,
    },
    /// The model assignment contradicts its own signed release: not downloaded.
    #[error(
        "model assignment {label}: the server says {size} bytes, SHA-256 {sha256}, its signed \
         release {release_size} bytes, {release_sha256}; not downloaded"
    )]
    Contradicted {
        /// `name/version`.
        label: String,
        /// The assignment's size.
        size: u64,
        /// The assignment's SHA-256.
        sha256: String,
        /// The signed release's size.
        release_size: u64,
        /// The signed release's SHA-256.
        release_sha256: String,
    },
    /// The model file could not be downloaded.
    #[error(transparent)]
    Download(super::download::FetchError),
    /// Remembering a refusal or a back-off in the state database failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
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
