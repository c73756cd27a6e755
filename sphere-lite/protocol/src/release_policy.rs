//! What a device accepts of a signed release: the checks it runs on what the server sends
//! before anything is downloaded or written. Signature first (nothing unsigned is
//! interpreted; a revoked key's signature counts as none), then what the device's policy says
//! of the signed manifest (its size limit, its epoch floor, its compatible), then — with the
//! model bytes — their size and SHA-256 and the model manifest the release carries.
//!
//! Why in the protocol crate: these parsers take bytes from the network, so they are fuzzed
//! ([`crate::release`] is the format, this module the device's reading of it), and the fuzz
//! build must not need the runtime's dependency tree. The runtime maps a [`Refusal`] into its
//! model store's error, which adds what an operator should do about it.

use std::path::Path;

use thiserror::Error;

use crate::model_manifest::ModelManifest;
use crate::release::{
    MAX_MANIFEST_BYTES, MAX_MODEL_BYTES, PublicKey, ReleaseError, ReleaseManifest, SignedRelease,
};

/// Largest signed release JSON read: the largest manifest plus room for its escaping, the key
/// id and the signature.
pub const MAX_SIGNED_BYTES: usize = MAX_MANIFEST_BYTES * 2 + 4096;

/// What a device accepts besides a good signature: its `[models]` settings and its floor.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Keys whose signatures count.
    pub trusted: &'a [PublicKey],
    /// Ids of keys whose signatures never count, trusted or not.
    pub revoked: &'a [String],
    /// Largest model file accepted (the device's `[models] max-bytes`).
    pub max_bytes: u64,
    /// The device's `[models] compatible`.
    pub compatible: Option<&'a str>,
    /// The device's epoch floor: releases below it are refused.
    pub epoch_floor: u32,
}

/// Why a device refuses a release. `what` names the release: as the caller named it until its
/// manifest is verified, then `name version`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// No trusted release key is configured, so nothing can be verified.
    #[error("no trusted release keys are configured")]
    NoTrustedKeys,
    /// Signed by a key the device does not trust.
    #[error("release {what} is signed by key {key_id}, which is not trusted")]
    UntrustedKey {
        /// The release.
        what: String,
        /// The signing key's id (at most 32 characters of what was sent).
        key_id: String,
    },
    /// Signed by a revoked key.
    #[error("release {what} is signed by key {key_id}, which is revoked")]
    RevokedKey {
        /// The release.
        what: String,
        /// The key's id (at most 32 characters of what was sent).
        key_id: String,
    },
    /// The signature does not match the manifest.
    #[error("release {what}: the signature does not match its manifest")]
    BadSignature {
        /// The release.
        what: String,
    },
    /// The signed release, its manifest or the model manifest inside is invalid.
    #[error("release {what} is invalid: {reason}")]
    BadRelease {
        /// The release.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The model is larger than the device accepts.
    #[error("model for release {what} is {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// The release.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The release's security epoch is below the device's floor.
    #[error("release {what} has security epoch {epoch}, below the floor {floor}")]
    BelowFloor {
        /// The release.
        what: String,
        /// Its epoch.
        epoch: u32,
        /// The device's floor.
        floor: u32,
    },
    /// The release is bound to another compatible than the device's (or one side is bound
    /// and the other is not).
    #[error("release {what} is for {release:?}, the device is {device:?}")]
    Incompatible {
        /// The release.
        what: String,
        /// The release's compatible.
        release: Option<String>,
        /// The device's.
        device: Option<String>,
    },
    /// The model bytes are not the file the release describes.
    #[error("model for release {what} does not match it: {reason}")]
    ModelMismatch {
        /// The release.
        what: String,
        /// Size or hash difference.
        reason: String,
    },
}

/// Parses a signed release JSON of at most [`MAX_SIGNED_BYTES`]; `what` names it in errors.
pub fn parse_signed(bytes: &[u8], what: &str) -> Result<SignedRelease, Refusal> {
    if bytes.len() > MAX_SIGNED_BYTES {
        return Err(Refusal::BadRelease {
            what: what.to_string(),
            reason: format!("the release file is larger than {MAX_SIGNED_BYTES} bytes"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| Refusal::BadRelease {
        what: what.to_string(),
        reason: format!("not a signed release JSON: {e}"),
    })
}

/// Verifies `signed` under `policy` without the model file: signature by a trusted key that
/// is not revoked, then size limit, epoch floor and compatible of the signed manifest.
/// `what` names the release in errors until its manifest is known.
pub fn verify_release(
    signed: &SignedRelease,
    policy: &Policy<'_>,
    what: &str,
) -> Result<ReleaseManifest, Refusal> {
    if policy.trusted.is_empty() {
        return Err(Refusal::NoTrustedKeys);
    }
    if policy
        .revoked
        .iter()
        .any(|id| id.eq_ignore_ascii_case(&signed.key_id))
    {
        return Err(Refusal::RevokedKey {
            what: what.to_string(),
            key_id: signed.key_id.chars().take(32).collect(),
        });
    }
    let release = signed.verify(policy.trusted).map_err(|e| match e {
        ReleaseError::UnknownKey(key_id) => Refusal::UntrustedKey {
            what: what.to_string(),
            key_id,
        },
        ReleaseError::BadSignature(_) => Refusal::BadSignature {
            what: what.to_string(),
        },
        other => Refusal::BadRelease {
            what: what.to_string(),
            reason: other.to_string(),
        },
    })?;
    let what = format!("{} {}", release.name, release.version);
    let limit = policy.max_bytes.min(MAX_MODEL_BYTES);
    if release.size > limit {
        return Err(Refusal::TooLarge {
            what,
            size: release.size,
            limit,
        });
    }
    if release.epoch < policy.epoch_floor {
        return Err(Refusal::BelowFloor {
            what,
            epoch: release.epoch,
            floor: policy.epoch_floor,
        });
    }
    if release.compatible.as_deref() != policy.compatible {
        return Err(Refusal::Incompatible {
            what,
            release: release.compatible.clone(),
            device: policy.compatible.map(str::to_string),
        });
    }
    Ok(release)
}

/// Checks `model` against a verified `release` (size, then SHA-256) and returns the model
/// manifest the release carries, parsed, checked, and naming the same SHA-256.
pub fn verify_model(release: &ReleaseManifest, model: &[u8]) -> Result<ModelManifest, Refusal> {
    let what = format!("{} {}", release.name, release.version);
    release
        .check_model(model)
        .map_err(|e| Refusal::ModelMismatch {
            what: what.clone(),
            reason: match e {
                ReleaseError::ModelMismatch(reason) => reason,
                other => other.to_string(),
            },
        })?;
    model_manifest(release)
}

/// The model manifest `release` carries, parsed and checked, and naming the release's SHA-256
/// (the part of [`verify_model`] that needs no model bytes).
pub fn model_manifest(release: &ReleaseManifest) -> Result<ModelManifest, Refusal> {
    let what = format!("{} {}", release.name, release.version);
    let manifest =
        ModelManifest::parse(&release.model_manifest, Path::new(&what)).map_err(|e| {
            Refusal::BadRelease {
                what: what.clone(),
                reason: format!("its model manifest: {e}"),
            }
        })?;
    if manifest.sha256.to_ascii_lowercase() != release.sha256 {
        return Err(Refusal::BadRelease {
            what,
            reason: format!(
                "its model manifest names SHA-256 {}, the release {}",
                manifest.sha256, release.sha256
            ),
        });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::sha256_hex;
    use crate::release::{FORMAT, SigningKey};

    const MODEL: &[u8] = b"model";

    fn release(compatible: Option<&str>, epoch: u32, manifest_sha: &str) -> ReleaseManifest {
        ReleaseManifest {
            format: FORMAT,
            name: "shapes".into(),
            version: "2".into(),
            size: MODEL.len() as u64,
            sha256: sha256_hex(MODEL),
            model_manifest: format!(
                "name = \"m\"\nversion = \"1\"\nsha256 = \"{manifest_sha}\"\n[input]\nwidth = 8\n\
                 height = 8\nchannel_order = \"rgb\"\nresize = \"stretch\"\n\
                 mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n"
            ),
            created_unix_ms: 1,
            notes: None,
            epoch,
            compatible: compatible.map(str::to_string),
        }
    }

    fn policy<'a>(trusted: &'a [PublicKey], revoked: &'a [String]) -> Policy<'a> {
        Policy {
            trusted,
            revoked,
            max_bytes: 1024,
            compatible: Some("cm4"),
            epoch_floor: 2,
        }
    }

    /// Every rule of the policy, in order: keys, revocation (any case), size, floor,
    /// compatible, then the model bytes and the manifest's SHA-256.
    #[test]
    fn each_rule_of_the_policy_refuses_with_its_own_reason() {
        let key = SigningKey::generate().unwrap();
        let trusted = [key.public()];
        let good = key
            .sign(&release(Some("cm4"), 2, &sha256_hex(MODEL)))
            .unwrap();
        let ok = verify_release(&good, &policy(&trusted, &[]), "r").unwrap();
        verify_model(&ok, MODEL).unwrap();

        let none = verify_release(&good, &policy(&[], &[]), "r");
        assert_eq!(none, Err(Refusal::NoTrustedKeys));
        let revoked = [good.key_id.to_uppercase()];
        let e = verify_release(&good, &policy(&trusted, &revoked), "r").unwrap_err();
        assert!(matches!(e, Refusal::RevokedKey { .. }), "{e}");
        let other = [SigningKey::generate().unwrap().public()];
        let e = verify_release(&good, &policy(&other, &[]), "r").unwrap_err();
        assert!(matches!(e, Refusal::UntrustedKey { .. }), "{e}");
        let mut small = policy(&trusted, &[]);
        small.max_bytes = 4;
        let e = verify_release(&good, &small, "r").unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::TooLarge {
                    size: 5,
                    limit: 4,
                    ..
                }
            ),
            "{e}"
        );
        let old = key
            .sign(&release(Some("cm4"), 1, &sha256_hex(MODEL)))
            .unwrap();
        let e = verify_release(&old, &policy(&trusted, &[]), "r").unwrap_err();
        assert!(
            matches!(
                e,
                Refusal::BelowFloor {
                    epoch: 1,
                    floor: 2,
                    ..
                }
            ),
            "{e}"
        );
        let unbound = key.sign(&release(None, 2, &sha256_hex(MODEL))).unwrap();
        let e = verify_release(&unbound, &policy(&trusted, &[]), "r").unwrap_err();
        assert!(matches!(e, Refusal::Incompatible { .. }), "{e}");

        let e = verify_model(&ok, b"modem").unwrap_err();
        assert!(matches!(e, Refusal::ModelMismatch { .. }), "{e}");
        let e = model_manifest(&release(None, 0, &"0".repeat(64))).unwrap_err();
        assert!(
            e.to_string().contains("its model manifest names SHA-256"),
            "{e}"
        );
    }

    #[test]
    fn a_signed_release_file_is_bounded_and_must_be_json() {
        let e = parse_signed(&vec![b' '; MAX_SIGNED_BYTES + 1], "r").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let e = parse_signed(b"{", "r").unwrap_err();
        assert!(e.to_string().contains("not a signed release JSON"), "{e}");
    }
}
