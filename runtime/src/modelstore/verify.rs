//! Is this release trustworthy and is this the file it describes? Signature first (nothing
//! unsigned is interpreted), then size and SHA-256 of the bytes, then the model manifest the
//! release carries. Pure checks on bytes in memory: no file is written before they pass.

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

/// Verifies `signed` against `trusted` and `model` against it, refusing models over `limit`.
/// `what` names the release in errors until its manifest is known.
pub fn verify(
    signed: &SignedRelease,
    model: &[u8],
    trusted: &[PublicKey],
    limit: u64,
    what: &str,
) -> Result<VerifiedRelease, ModelStoreError> {
    if trusted.is_empty() {
        return Err(ModelStoreError::NoTrustedKeys);
    }
    let release = signed.verify(trusted).map_err(|e| match e {
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
    let limit = limit.min(MAX_MODEL_BYTES);
    if release.size > limit {
        return Err(ModelStoreError::TooLarge {
            what,
            size: release.size,
            limit,
        });
    }
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
