//! What the sync client needs from the running service, as a small trait: the service loop
//! implements it (and tests implement it in-process), so the client never reaches into the
//! pipeline, the model store or the configuration itself.

use std::path::{Path, PathBuf};

use tinylcm_protocol::device_json::refusal::RefusalKind;
use tinylcm_protocol::release::SignedRelease;

/// The model a device runs, as the server names releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// Release name (or the model file's name when it did not come from a release).
    pub name: String,
    /// Release version.
    pub version: String,
    /// The model file's SHA-256 (hex): what decides whether an assignment is new.
    pub sha256: String,
}

/// Why a release was not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// The release itself is refused (signature, size, SHA-256, golden outputs): never again.
    /// The kind is what the device reports to sphere-lite beside the message.
    Refused(RefusalKind, String),
    /// Not now (a model on trial, a full disk, a failing database): try at a later round.
    Later(String),
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::Refused(_, why) => write!(f, "refused: {why}"),
            InstallError::Later(why) => write!(f, "not now: {why}"),
        }
    }
}

/// The running service, as the sync client sees it. Called from the sync thread; every method
/// may block for as long as it needs (it never holds up inference).
pub trait SyncHost: Send + Sync {
    /// The model running now, if any.
    fn active_model(&self) -> Option<ModelIdentity>;

    /// Applies remote configuration `toml` (keys of
    /// [`tinylcm_protocol::remote_config::REMOTE_KEYS`] only; empty = back to the local
    /// file) at `revision`. Must be durable before it returns `Ok`; the item is then
    /// acknowledged. `Err` names why it was refused (and the host then has a
    /// [`SyncHost::config_refusal`] to report).
    fn apply_config(&self, revision: &str, toml: &str) -> Result<(), String>;

    /// Hands a downloaded model `file` (SHA-256 and size already checked against the
    /// assignment) to the A/B model store, which verifies `release` and installs it. The client
    /// removes `file` afterwards: copy or move it. [`InstallError::Refused`] refuses this
    /// release for good (it is not downloaded again); [`InstallError::Later`] tries again at a
    /// later round.
    fn install_release(&self, file: &Path, release: &SignedRelease) -> Result<(), InstallError>;

    /// Checks `release` as far as it can be without its model file (signature, revoked key,
    /// the device's size limit, its epoch floor and compatible, a release rolled back here
    /// before), so that one this device would refuse is never downloaded.
    /// [`InstallError::Refused`] refuses it for good, as from [`SyncHost::install_release`].
    fn check_release(&self, _release: &SignedRelease) -> Result<(), InstallError> {
        Ok(())
    }

    /// Records that release `label` (`name/version` as assigned) was refused before its
    /// download for `reason`, where the device keeps its install history (called once per
    /// release and reason).
    fn release_refused(&self, _label: &str, _reason: &str) {}

    /// Whether an install could be taken now (e.g. `false` while a model is on trial: the
    /// store has two slots). When `false`, an assignment is not even downloaded this round.
    fn accepts_installs(&self) -> bool {
        true
    }

    /// The feedback inbox folder ([`crate::autonomy::feedback::inbox_dir`]).
    fn feedback_inbox(&self) -> PathBuf;

    /// A remote configuration the device refused (on receipt, or when a generation failed
    /// with it) that sphere-lite has not recorded yet: `(revision, reason)`.
    fn config_refusal(&self) -> Option<(String, String)> {
        None
    }

    /// sphere-lite recorded the refusal of `revision` (or is too old to take refusals): it
    /// is not reported again.
    fn config_refusal_reported(&self, _revision: &str) {}
}
