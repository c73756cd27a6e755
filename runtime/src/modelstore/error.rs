//! Why the model store refused something: each error names what was refused and what to do,
//! because these reach an operator through `tinylcm model`, logs and the sync status.

use std::path::PathBuf;

use tinylcm_protocol::device_json::refusal::RefusalKind;

use crate::state::StateError;

/// Everything the A/B model store can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    /// No trusted release key is configured, so nothing can be verified.
    #[error(
        "no trusted release keys are configured, so every model install is refused. Fix: put the \
         release.pub of `tinylcm model keygen` (tinylcm-release-public: lines) in a file and set \
         `[models] trusted-keys` to its path"
    )]
    NoTrustedKeys,
    /// The trusted keys file cannot be read or holds a bad line.
    #[error(
        "trusted release keys {path}: {reason}. Fix: one `tinylcm-release-public:` line per key"
    )]
    TrustedKeys {
        /// The keys file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The release was signed by a key the device does not trust.
    #[error(
        "release {what} is signed by key {key_id}, which is not among the trusted release keys; \
         refused. Fix: sign it with a trusted key, or add that key's public line to `[models] trusted-keys`"
    )]
    UntrustedKey {
        /// The release (file name or name/version).
        what: String,
        /// The signing key's id.
        key_id: String,
    },
    /// The release was signed by a key listed in `[models] revoked-keys`.
    #[error(
        "release {what} is signed by key {key_id}, which is revoked (`[models] revoked-keys`); \
         refused. Fix: sign it again with a key that is not revoked"
    )]
    RevokedKey {
        /// The release.
        what: String,
        /// The revoked key's id.
        key_id: String,
    },
    /// The release's security epoch is below the highest this device has committed.
    #[error(
        "release {what} has security epoch {epoch}, below this device's floor {floor} (the \
         highest epoch it has committed); refused: a release below the floor never installs \
         again. Fix: publish a release signed with `--epoch {floor}` or higher"
    )]
    BelowFloor {
        /// The release.
        what: String,
        /// Its epoch.
        epoch: u32,
        /// The device's floor.
        floor: u32,
    },
    /// The release is bound to another product or board than this device (or one side is
    /// bound and the other is not).
    #[error(
        "release {what} is {}, and this device {}; refused (a release installs only where its \
         signed compatible equals `[models] compatible`, or where neither is set). Fix: sign \
         it with `tinylcm model sign --compatible` set to the device's, or correct the device's",
        .release.as_deref().map_or("bound to no compatible".to_string(), |c| format!("for {c:?}")),
        .device.as_deref().map_or("has no `[models] compatible`".to_string(), |c| format!("is {c:?}"))
    )]
    Incompatible {
        /// The release.
        what: String,
        /// The release's compatible.
        release: Option<String>,
        /// The device's.
        device: Option<String>,
    },
    /// The signature does not match the release manifest (altered in transit or forged).
    #[error(
        "release {what}: the signature does not match its manifest (altered or forged); refused"
    )]
    BadSignature {
        /// The release.
        what: String,
    },
    /// The release manifest or the model manifest inside it is invalid.
    #[error("release {what} is invalid: {reason}; refused")]
    BadRelease {
        /// The release.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The model bytes are not the file the release describes (truncated download, wrong file).
    #[error(
        "model for release {what} does not match it: {reason}; refused (a truncated or corrupt \
         download: fetch it again)"
    )]
    ModelMismatch {
        /// The release.
        what: String,
        /// Size or hash difference.
        reason: String,
    },
    /// The model is larger than accepted.
    #[error(
        "model for release {what} is {size} bytes, more than the {limit} accepted (`[models] max-bytes`); refused"
    )]
    TooLarge {
        /// The release.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A golden output differs from what the model computes.
    #[error(
        "release {what}: golden {golden} (seed {seed}) {output}[{index}] expected {expected}, got \
         {got} (tolerance {tolerance}); the model does not compute what its release promises: refused"
    )]
    GoldenMismatch {
        /// The release.
        what: String,
        /// Index of the golden entry.
        golden: usize,
        /// Its seed.
        seed: u64,
        /// `scores` or `embedding`.
        output: &'static str,
        /// Position in that output.
        index: usize,
        /// The manifest's value.
        expected: f32,
        /// The model's value.
        got: f32,
        /// The entry's tolerance.
        tolerance: f32,
    },
    /// The model does not load or run through the engine, or produces non-finite outputs.
    #[error("release {what}: the smoke test failed: {reason}; refused")]
    SmokeTest {
        /// The release.
        what: String,
        /// What failed.
        reason: String,
    },
    /// The operation needs a state the store is not in (e.g. activate with nothing installed).
    #[error("{0}")]
    Refused(String),
    /// A hand-over request in `incoming/` is malformed.
    #[error("hand-over request {path}: {reason}")]
    Request {
        /// The request file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file operation failed.
    #[error("model store: {what} {path}: {source}")]
    Io {
        /// What the store was doing.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModelStoreError {
    /// An I/O error while doing `what` on `path`.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelStoreError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Why a release was refused, in the one word the device reports to sphere-lite beside
    /// the message ([`RefusalKind::Other`] for errors that are not about the release).
    pub fn refusal_kind(&self) -> RefusalKind {
        match self {
            ModelStoreError::NoTrustedKeys | ModelStoreError::TrustedKeys { .. } => {
                RefusalKind::NoTrustedKeys
            }
            ModelStoreError::UntrustedKey { .. } => RefusalKind::UntrustedKey,
            ModelStoreError::RevokedKey { .. } => RefusalKind::RevokedKey,
            ModelStoreError::BelowFloor { .. } => RefusalKind::BelowEpochFloor,
            ModelStoreError::Incompatible { .. } => RefusalKind::Incompatible,
            ModelStoreError::BadSignature { .. } => RefusalKind::BadSignature,
            ModelStoreError::BadRelease { .. } => RefusalKind::InvalidRelease,
            ModelStoreError::ModelMismatch { .. } => RefusalKind::ModelMismatch,
            ModelStoreError::TooLarge { .. } => RefusalKind::TooLarge,
            ModelStoreError::GoldenMismatch { .. } => RefusalKind::GoldenMismatch,
            ModelStoreError::SmokeTest { .. } => RefusalKind::SmokeTest,
            ModelStoreError::Refused(_)
            | ModelStoreError::Request { .. }
            | ModelStoreError::Io { .. }
            | ModelStoreError::State(_) => RefusalKind::Other,
        }
    }

    /// Whether this is a refusal of a release (as opposed to a failure of the device): such
    /// errors are recorded as the store's last refusal.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ModelStoreError::Io { .. } | ModelStoreError::State(_))
    }
}
