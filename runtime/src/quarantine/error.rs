//! Errors of the quarantine: each says what was wrong and, where it helps, what to do.
//!
//! The variants raised on the per-frame path ([`QuarantineError::NonFinite`],
//! [`QuarantineError::Dimension`], [`QuarantineError::Text`],
//! [`QuarantineError::TooLarge`]) carry only numbers and static strings, so refusing a bad
//! candidate allocates nothing.

use std::path::PathBuf;

use crate::config_error::ConfigError;
use crate::state::StateError;

/// Everything that can go wrong opening the quarantine, admitting a sample or changing an
/// entry.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// An invalid `[quarantine]` setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state store failed (reading entries at open, or encoding an entry into a batch).
    #[error(transparent)]
    State(#[from] StateError),
    /// A value that must be finite is NaN or infinite.
    #[error(
        "quarantine: {what} {index} is not finite (NaN or infinite); the sample was not admitted"
    )]
    NonFinite {
        /// `feature`, `confidence` or `knn distance`.
        what: &'static str,
        /// Index of the first bad value (0 for scalars).
        index: usize,
    },
    /// A feature vector that is empty or longer than any feature transform produces.
    #[error("quarantine: a feature vector of {len} values; 1..={max} are accepted")]
    Dimension {
        /// Its length.
        len: usize,
        /// The longest accepted.
        max: usize,
    },
    /// A label or name that is empty or too long.
    #[error("quarantine: {what} of {len} bytes; 1..={max} bytes are accepted")]
    Text {
        /// What it names.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The longest accepted.
        max: usize,
    },
    /// One sample's features are larger than the whole byte budget.
    #[error(
        "quarantine: a sample of {bytes} feature bytes cannot fit in quarantine.max-bytes = \
         {max}; raise quarantine.max-bytes or reduce the feature dimension"
    )]
    TooLarge {
        /// The sample's feature bytes.
        bytes: u64,
        /// `max-bytes`.
        max: u64,
    },
    /// No entry with this id (never admitted, or evicted, expired or removed since).
    #[error("quarantine: no entry {id} (it may have been evicted or expired)")]
    UnknownEntry {
        /// The id asked for.
        id: u64,
    },
    /// A status change the life cycle does not allow (see `quarantine::status`).
    #[error("quarantine entry {id}: cannot go from {from} to {to}")]
    Transition {
        /// The entry.
        id: u64,
        /// Its status.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
    /// A stored entry that does not decode or fails its checks.
    #[error("quarantine entry {id} is damaged: {reason}")]
    Damaged {
        /// The entry's key.
        id: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation on the thumbnails directory failed.
    #[error("quarantine thumbnails: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
