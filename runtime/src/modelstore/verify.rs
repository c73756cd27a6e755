//! Is this release trustworthy and is this the file it describes? Signature first (nothing
//! unsigned is interpreted; a revoked key's signature counts as none), then what the device's
//! policy says of the signed manifest (its size limit, its epoch floor, its compatible), then
//! size and SHA-256 of the bytes, then the model manifest the release carries. Pure checks on
//! bytes in memory: no file is written before they pass.
//!
//! The checks that need no model bytes ([`verify_release`]) also run before a download, so a
//! release the device would refuse is never fetched.

use std::path::{Path, PathBuf};

use tinylcm_protocol::release::{
    MAX_MODEL_BYTES, PublicKey, ReleaseError, ReleaseManifest, SignedRelease,
};

use super::error::ModelStoreError;
use crate::model::ModelManifest;

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

/// What this device accepts besides a good signature: its `[models]` settings and its floor.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Keys whose signatures count.
    pub trusted: &'a [PublicKey],
    /// Ids of keys whose signatures never count, trusted or not.
    pub revoked: &'a [String],
    /// Largest model file accepted (`[models] max-bytes`).
    pub max_bytes: u64,
    /// The device's `[models] compatible`.
    pub compatible: Option<&'a str>,
    /// The store's epoch floor: releases below it are refused.
    pub epoch_floor: u32,
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
    if policy.trusted.is_empty() {
        return Err(ModelStoreError::NoTrustedKeys);
    }
    if policy
        .revoked
        .iter()
        .any(|id| id.eq_ignore_ascii_case(&signed.key_id))
    {
        return Err(ModelStoreError::RevokedKey {
            what: what.to_string(),
            key_id: signed.key_id.chars().take(32).collect(),
        });
    }
    let release = signed.verify(policy.trusted).map_err(|e| match e {
        ReleaseError::UnknownKey(key_id) => ModelStoreError::UntrustedKey {
            what: what.to_string(),
            key_id,
        },
        ReleaseError::BadSignature(_) => ModelStoreError::BadSignature {
            what: what.to_string(),
        },
        other => ModelStoreError::BadRelease {
            what: what.to_string(),
            reason: other.to_string(),
        },
    })?;
    let what = format!("{} {}", release.name, release.version);
    let limit = policy.max_bytes.min(MAX_MODEL_BYTES);
    if release.size > limit {
        return Err(ModelStoreError::TooLarge {
            what,
            size: release.size,
            limit,
        });
    }
    if release.epoch < policy.epoch_floor {
        return Err(ModelStoreError::BelowFloor {
            what,
            epoch: release.epoch,
            floor: policy.epoch_floor,
        });
    }
    if release.compatible.as_deref() != policy.compatible {
        return Err(ModelStoreError::Incompatible {
            what,
            release: release.compatible.clone(),
            device: policy.compatible.map(str::to_string),
        });
    }
    Ok(release)
}

/// Verifies `signed` under `policy` ([`verify_release`]) and `model` against it.
pub fn verify(
    signed: &SignedRelease,
    model: &[u8],
    policy: &Policy<'_>,
    what: &str,
) -> Result<VerifiedRelease, ModelStoreError> {
    let release = verify_release(signed, policy, what)?;
    let what = format!("{} {}", release.name, release.version);
    release
        .check_model(model)
        .map_err(|e| ModelStoreError::ModelMismatch {
            what: what.clone(),
            reason: match e {
                ReleaseError::ModelMismatch(reason) => reason,
                other => other.to_string(),
            },
        })?;
    let manifest =
        ModelManifest::parse(&release.model_manifest, &PathBuf::from(&what)).map_err(|e| {
            ModelStoreError::BadRelease {
                what: what.clone(),
                reason: format!("its model manifest: {e}"),
            }
        })?;
    if manifest.sha256.to_ascii_lowercase() != release.sha256 {
        return Err(ModelStoreError::BadRelease {
            what,
            reason: format!(
                "its model manifest names SHA-256 {}, the release {}",
                manifest.sha256, release.sha256
            ),
        });
    }
    Ok(VerifiedRelease {
        signed: signed.clone(),
        release,
        manifest,
    })
}

/// Parses a signed release JSON of at most `MAX_MANIFEST_BYTES` plus room for the signature.
pub fn parse_signed(bytes: &[u8], what: &str) -> Result<SignedRelease, ModelStoreError> {
    let limit = tinylcm_protocol::release::MAX_MANIFEST_BYTES * 2 + 4096;
    if bytes.len() > limit {
        return Err(ModelStoreError::BadRelease {
            what: what.to_string(),
            reason: format!("the release file is larger than {limit} bytes"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ModelStoreError::BadRelease {
        what: what.to_string(),
        reason: format!("not a signed release JSON: {e}"),
    })
}
