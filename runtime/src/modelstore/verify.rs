//! Is this release trustworthy and is this the file it describes? Signature first (nothing
//! unsigned is interpreted; a revoked key's signature counts as none), then what the device's
//! policy says of the signed manifest (its size limit, its epoch floor, its compatible), then
//! size and SHA-256 of the bytes, then the model manifest the release carries. Pure checks on
//! bytes in memory: no file is written before they pass.
//!
//! The checks that need no model bytes ([`verify_release`]) also run before a download, so a
//! release the device would refuse is never fetched.
//!
//! The checks are the protocol crate's ([`release_policy`]: they read what the server sends,
//! and are fuzzed there); this module gives them the store's errors and the trusted keys file.

use std::path::Path;

use tinylcm_protocol::release::{PublicKey, ReleaseManifest, SignedRelease};
use tinylcm_protocol::release_policy::{self, Refusal};

use super::error::ModelStoreError;
use crate::model::ModelManifest;

/// What this device accepts besides a good signature: its `[models]` settings and its floor.
/// The checks themselves are the protocol crate's ([`release_policy`]), where they are fuzzed.
pub use tinylcm_protocol::release_policy::Policy;

/// Largest trusted-keys file read.
const MAX_KEYS_FILE: u64 = 64 * 1024;

/// A release that passed every check before the smoke test.
#[derive(Debug, Clone)]
pub struct VerifiedRelease {
    /// The signed release as received (kept in the slot).
    pub signed: SignedRelease,
    /// Its verified manifest.
    pub release: ReleaseManifest,
    /// The runtime's model manifest from the release, parsed and checked.
    pub manifest: ModelManifest,
}

impl VerifiedRelease {
    /// `name version`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.release.name, self.release.version)
    }
}

/// The trusted release keys from `path`; `None` (not configured) gives an empty list.
pub fn load_trusted_keys(path: Option<&Path>) -> Result<Vec<PublicKey>, ModelStoreError> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let bad = |reason: String| ModelStoreError::TrustedKeys {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = crate::model::read_bounded(path, MAX_KEYS_FILE).map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let keys = PublicKey::all_from_text(&text).map_err(|e| bad(e.to_string()))?;
    if keys.is_empty() {
        return Err(bad("the file holds no key".into()));
    }
    Ok(keys)
}

/// Verifies `signed` under `policy` without the model file: signature by a trusted key that
/// is not revoked, then size limit, epoch floor and compatible of the signed manifest.
/// `what` names the release in errors until its manifest is known.
pub fn verify_release(
    signed: &SignedRelease,
    policy: &Policy<'_>,
    what: &str,
) -> Result<ReleaseManifest, ModelStoreError> {
    Ok(release_policy::verify_release(signed, policy, what)?)
}

/// Verifies `signed` under `policy` ([`verify_release`]), `model` against it and the model
/// manifest it carries.
pub fn verify(
    signed: &SignedRelease,
    model: &[u8],
    policy: &Policy<'_>,
    what: &str,
) -> Result<VerifiedRelease, ModelStoreError> {
    let release = verify_release(signed, policy, what)?;
    let manifest = release_policy::verify_model(&release, model)?;
    Ok(VerifiedRelease {
        signed: signed.clone(),
        release,
        manifest,
    })
}

/// Parses a signed release JSON of at most
/// [`MAX_SIGNED_BYTES`](release_policy::MAX_SIGNED_BYTES).
pub fn parse_signed(bytes: &[u8], what: &str) -> Result<SignedRelease, ModelStoreError> {
    Ok(release_policy::parse_signed(bytes, what)?)
}

impl From<Refusal> for ModelStoreError {
    /// The protocol's refusal, with this store's words (what to do about it).
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoTrustedKeys => ModelStoreError::NoTrustedKeys,
            Refusal::UntrustedKey { what, key_id } => {
                ModelStoreError::UntrustedKey { what, key_id }
            }
            Refusal::RevokedKey { what, key_id } => ModelStoreError::RevokedKey { what, key_id },
            Refusal::BadSignature { what } => ModelStoreError::BadSignature { what },
            Refusal::BadRelease { what, reason } => ModelStoreError::BadRelease { what, reason },
            Refusal::TooLarge { what, size, limit } => {
                ModelStoreError::TooLarge { what, size, limit }
            }
            Refusal::BelowFloor { what, epoch, floor } => {
                ModelStoreError::BelowFloor { what, epoch, floor }
            }
            Refusal::Incompatible {
                what,
                release,
                device,
            } => ModelStoreError::Incompatible {
                what,
                release,
                device,
            },
            Refusal::ModelMismatch { what, reason } => {
                ModelStoreError::ModelMismatch { what, reason }
            }
        }
    }
}
