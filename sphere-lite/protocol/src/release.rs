//! Signed model releases: what an operator publishes, the server hands out and a device
//! verifies before it installs a model (the user's side: the guide's chapter "Models and
//! over-the-air updates").
//!
//! A release is a [`ReleaseManifest`] (name, version, the model file's size and SHA-256, the
//! runtime's model manifest) serialised to JSON, plus an Ed25519 signature over **exactly those
//! JSON bytes** ([`SignedRelease`]). The JSON text travels as a string and is verified before it
//! is parsed, so no canonical form is needed and nothing unsigned is ever interpreted.
//!
//! Downgrades and cross-product installs: a manifest may carry a security `epoch` (absent =
//! 0, so releases signed before it existed keep their exact bytes and signature) and a
//! `compatible` (the product or board it is for; absent = not bound). Both are signed with the
//! rest; what a device does with them (its epoch floor, its own compatible) is the device's
//! policy ([`crate::release_policy`]). Fields this build does not know are refused (`deny_unknown_fields`),
//! so an older device refuses a release that relies on a newer rule instead of ignoring it.
//!
//! Signatures are checked with Ed25519's strict verification (`verify_strict`: no small-order
//! keys or `R` points, canonical `s`), and keys of small order are refused when parsed, so one
//! signature cannot verify for several messages or keys.
//!
//! Keys are text, one line each: `tinylcm-release-public:<base64 of 32 bytes>` and
//! `tinylcm-release-secret:<base64 of the 32-byte seed>`. A key id (the first 8 bytes of the
//! public key's SHA-256, hex) names the key that signed, so a device can trust several (key
//! rotation) and say which one it did not know.
//!
//! Why in the protocol crate: the signer (`tinylcm model sign`), the server (checks what is
//! uploaded) and the device (checks what it downloads) must agree on every byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::ids::valid_package_id;
use crate::package::{hex, sha256_hex};

/// The release manifest format written in [`ReleaseManifest::format`].
pub const FORMAT: u32 = 1;
/// Largest model file a release may describe (bytes).
pub const MAX_MODEL_BYTES: u64 = 256 * 1024 * 1024;
/// Largest security epoch a release may carry (a bound so that no arithmetic near `u32::MAX`
/// can surprise a device, and far more bumps than a product will ever need).
pub const MAX_EPOCH: u32 = 1_000_000;
/// Longest `compatible` string.
pub const MAX_COMPATIBLE_LEN: usize = 64;
/// Largest release manifest JSON (bytes).
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

const PUBLIC_PREFIX: &str = "tinylcm-release-public:";
const SECRET_PREFIX: &str = "tinylcm-release-secret:";

/// What a release says about its model; signed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Model name (an id: `[A-Za-z0-9_-]`, 1..=64), e.g. `shapes`.
    pub name: String,
    /// Version (an id too), e.g. `3` or `2026-11-26a`.
    pub version: String,
    /// Size of the model file in bytes.
    pub size: u64,
    /// SHA-256 of the model file, 64 lowercase hex digits.
    pub sha256: String,
    /// The runtime's model manifest (`<model>.toml`: labels, input spec, output roles) as text.
    pub model_manifest: String,
    /// When it was signed (Unix ms).
    pub created_unix_ms: u64,
    /// Free text for operators (release notes).
    #[serde(default)]
    pub notes: Option<String>,
    /// Security epoch: a device refuses a release whose epoch is below the highest it has
    /// committed. Bump it when older releases must never run again (a fixed vulnerability);
    /// leave it for ordinary updates. Absent in the JSON = 0 (and 0 is not written, so
    /// releases without it keep the bytes they were signed with).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u32,
    /// The product or board the release is for (e.g. `tinylcm-cm4`); a device installs it only
    /// when its own `[models] compatible` is the same string. Absent = not bound, which only a
    /// device without a compatible of its own takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatible: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Whether `s` is a valid `compatible`: 1 to [`MAX_COMPATIBLE_LEN`] characters of
/// `A-Z a-z 0-9 . _ -` (what RAUC compatibles and board names use).
pub fn valid_compatible(s: &str) -> bool {
    (1..=MAX_COMPATIBLE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A release manifest with its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedRelease {
    /// The [`ReleaseManifest`] as JSON text, exactly the bytes that were signed.
    pub manifest: String,
    /// Id of the signing key ([`PublicKey::id`]).
    pub key_id: String,
    /// Ed25519 signature over `manifest`'s bytes, base64.
    pub signature: String,
}

/// Why a release or a key was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReleaseError {
    /// A key line that does not parse.
    #[error("invalid release key: {0}")]
    BadKey(&'static str),
    /// Signed by a key the verifier does not trust.
    #[error("release signed by key {0}, which is not among the trusted release keys")]
    UnknownKey(String),
    /// The signature does not match the manifest.
    #[error(
        "the release signature does not match its manifest (altered, or not signed by key {0})"
    )]
    BadSignature(String),
    /// The manifest does not parse or breaks a rule.
    #[error("invalid release manifest: {0}")]
    BadManifest(String),
    /// The model bytes do not match the manifest.
    #[error("the model file does not match its release: {0}")]
    ModelMismatch(String),
    /// The OS random source failed while generating a key.
    #[error("cannot generate a key: no OS randomness ({0})")]
    NoRandomness(String),
}

/// A key that verifies releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

/// A key that signs releases (keep it off devices and servers).
pub struct SigningKey(ed25519_dalek::SigningKey);

fn decode_32(text: &str, prefix: &str) -> Result<[u8; 32], ReleaseError> {
    let body = text
        .trim()
        .strip_prefix(prefix)
        .ok_or(ReleaseError::BadKey(
            "wrong prefix (a public key where a secret one belongs, or the reverse?)",
        ))?;
    let bytes = B64
        .decode(body.trim())
        .map_err(|_| ReleaseError::BadKey("not base64"))?;
    bytes
        .try_into()
        .map_err(|_| ReleaseError::BadKey("not 32 bytes"))
}

impl PublicKey {
    /// Parse a `tinylcm-release-public:` line.
    pub fn from_text(text: &str) -> Result<Self, ReleaseError> {
        let bytes = decode_32(text, PUBLIC_PREFIX)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| ReleaseError::BadKey("not a valid Ed25519 public key"))?;
        if key.is_weak() {
            // A small-order point: signatures under it say nothing about who signed.
            return Err(ReleaseError::BadKey(
                "a weak (small-order) Ed25519 public key",
            ));
        }
        Ok(PublicKey(key))
    }

    /// Every key of a keys file: one per line; blank lines and `#` comments are skipped.
    pub fn all_from_text(text: &str) -> Result<Vec<Self>, ReleaseError> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Self::from_text)
            .collect()
    }

    /// The key as a `tinylcm-release-public:` line.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }

    /// First 8 bytes of the key's SHA-256, hex: names the key in a [`SignedRelease`].
    pub fn id(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, ReleaseError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| ReleaseError::NoRandomness(e.to_string()))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Parse a `tinylcm-release-secret:` line.
    pub fn from_text(text: &str) -> Result<Self, ReleaseError> {
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(
            &decode_32(text, SECRET_PREFIX)?,
        )))
    }

    /// The key as a `tinylcm-release-secret:` line (write it to a file only you can read).
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(self.0.to_bytes()))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Sign `manifest` (checked first, so nothing invalid gets a signature).
    pub fn sign(&self, manifest: &ReleaseManifest) -> Result<SignedRelease, ReleaseError> {
        manifest.validate()?;
        let text = serde_json::to_string(manifest)
            .map_err(|e| ReleaseError::BadManifest(e.to_string()))?;
        let signature = self.0.sign(text.as_bytes());
        Ok(SignedRelease {
            manifest: text,
            key_id: self.public().id(),
            signature: B64.encode(signature.to_bytes()),
        })
    }
}

impl ReleaseManifest {
    /// The rules every release keeps: format, ids, size bound, SHA-256 form.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        let bad = |why: String| Err(ReleaseError::BadManifest(why));
        if self.format != FORMAT {
            return bad(format!(
                "format {} (this build reads {FORMAT})",
                self.format
            ));
        }
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            if !valid_package_id(value) {
                return bad(format!(
                    "{field} must be 1 to 64 characters of A-Z a-z 0-9 _ -"
                ));
            }
        }
        if self.size == 0 || self.size > MAX_MODEL_BYTES {
            return bad(format!("size must be 1..={MAX_MODEL_BYTES} bytes"));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return bad("sha256 must be 64 lowercase hex digits".into());
        }
        if self.epoch > MAX_EPOCH {
            return bad(format!("epoch must be 0..={MAX_EPOCH}"));
        }
        if let Some(c) = &self.compatible {
            if !valid_compatible(c) {
                return bad(format!(
                    "compatible must be 1 to {MAX_COMPATIBLE_LEN} characters of A-Z a-z 0-9 . _ -"
                ));
            }
        }
        Ok(())
    }

    /// Whether `model` is the file this release describes (size, then SHA-256).
    pub fn check_model(&self, model: &[u8]) -> Result<(), ReleaseError> {
        if model.len() as u64 != self.size {
            return Err(ReleaseError::ModelMismatch(format!(
                "{} bytes, the release says {}",
                model.len(),
                self.size
            )));
        }
        let actual = sha256_hex(model);
        if actual != self.sha256 {
            return Err(ReleaseError::ModelMismatch(format!(
                "SHA-256 {actual}, the release says {}",
                self.sha256
            )));
        }
        Ok(())
    }
}

impl SignedRelease {
    /// Verify the signature with one of `trusted`, then parse and check the manifest.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<ReleaseManifest, ReleaseError> {
        if self.manifest.len() > MAX_MANIFEST_BYTES {
            return Err(ReleaseError::BadManifest(format!(
                "longer than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let key = trusted
            .iter()
            .find(|k| k.id() == self.key_id)
            .ok_or_else(|| ReleaseError::UnknownKey(self.key_id.chars().take(32).collect()))?;
        let bad_signature = || ReleaseError::BadSignature(self.key_id.clone());
        let bytes: [u8; 64] = B64
            .decode(self.signature.trim())
            .map_err(|_| bad_signature())?
            .try_into()
            .map_err(|_| bad_signature())?;
        key.0
            .verify_strict(
                self.manifest.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&bytes),
            )
            .map_err(|_| bad_signature())?;
        let manifest: ReleaseManifest = serde_json::from_str(&self.manifest)
            .map_err(|e| ReleaseError::BadManifest(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(model: &[u8]) -> ReleaseManifest {
        ReleaseManifest {
            format: FORMAT,
            name: "shapes".into(),
            version: "2".into(),
            size: model.len() as u64,
            sha256: sha256_hex(model),
            model_manifest: "labels = [\"a\"]\n".into(),
            created_unix_ms: 1,
            notes: None,
            epoch: 0,
            compatible: None,
        }
    }

    #[test]
    fn a_signed_release_verifies_and_describes_its_model() {
        let key = SigningKey::generate().unwrap();
        let public = PublicKey::from_text(&key.public().to_text()).unwrap();
        let signed = key.sign(&manifest(b"model")).unwrap();
        let m = signed.verify(&[public]).unwrap();
        assert_eq!(m.name, "shapes");
        m.check_model(b"model").unwrap();
        assert!(matches!(
            m.check_model(b"modem"),
            Err(ReleaseError::ModelMismatch(_))
        ));
        assert!(matches!(
            m.check_model(b"mode"),
            Err(ReleaseError::ModelMismatch(_))
        ));
        // Keys survive their text form.
        let again = SigningKey::from_text(&key.to_text()).unwrap();
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn altered_or_foreign_releases_are_refused() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let signed = key.sign(&manifest(b"model")).unwrap();

        let mut altered = signed.clone();
        altered.manifest = altered.manifest.replace("\"2\"", "\"3\"");
        assert_eq!(
            altered.verify(&[key.public()]),
            Err(ReleaseError::BadSignature(signed.key_id.clone()))
        );
        assert!(matches!(
            signed.verify(&[other.public()]),
            Err(ReleaseError::UnknownKey(_))
        ));
        // A signature by another key under this key's id.
        let mut forged = other.sign(&manifest(b"model")).unwrap();
        forged.key_id = signed.key_id.clone();
        assert!(matches!(
            forged.verify(&[key.public()]),
            Err(ReleaseError::BadSignature(_))
        ));
        let mut garbage = signed.clone();
        garbage.signature = "!!".into();
        assert!(garbage.verify(&[key.public()]).is_err());
    }

    #[test]
    fn invalid_manifests_are_not_signed() {
        let key = SigningKey::generate().unwrap();
        for broken in [
            ReleaseManifest {
                name: "../x".into(),
                ..manifest(b"m")
            },
            ReleaseManifest {
                sha256: "ABC".into(),
                ..manifest(b"m")
            },
            ReleaseManifest {
                size: 0,
                ..manifest(b"m")
            },
            ReleaseManifest {
                format: 9,
                ..manifest(b"m")
            },
        ] {
            assert!(key.sign(&broken).is_err(), "{broken:?}");
        }
    }

    /// Fails before this change: the manifest had no `epoch` or `compatible` (unknown
    /// fields were refused), so a release could not say it must not be downgraded or which
    /// product it is for.
    #[test]
    fn epoch_and_compatible_are_signed_and_absent_means_zero_and_unbound() {
        let key = SigningKey::generate().unwrap();
        let bound = ReleaseManifest {
            epoch: 3,
            compatible: Some("tinylcm-cm4".into()),
            ..manifest(b"model")
        };
        let signed = key.sign(&bound).unwrap();
        assert_eq!(signed.verify(&[key.public()]).unwrap(), bound);
        // Both are under the signature.
        let mut lowered = signed.clone();
        lowered.manifest = lowered.manifest.replace("\"epoch\":3", "\"epoch\":1");
        assert_ne!(lowered.manifest, signed.manifest);
        assert!(matches!(
            lowered.verify(&[key.public()]),
            Err(ReleaseError::BadSignature(_))
        ));
        // A release signed before they existed keeps its bytes: epoch 0, not bound.
        let old = key.sign(&manifest(b"model")).unwrap();
        assert!(!old.manifest.contains("epoch") && !old.manifest.contains("compatible"));
        let m = old.verify(&[key.public()]).unwrap();
        assert_eq!((m.epoch, m.compatible), (0, None));
        // Bounds.
        for broken in [
            ReleaseManifest {
                epoch: MAX_EPOCH + 1,
                ..manifest(b"m")
            },
            ReleaseManifest {
                compatible: Some(String::new()),
                ..manifest(b"m")
            },
            ReleaseManifest {
                compatible: Some("a/b".into()),
                ..manifest(b"m")
            },
            ReleaseManifest {
                compatible: Some("x".repeat(MAX_COMPATIBLE_LEN + 1)),
                ..manifest(b"m")
            },
        ] {
            assert!(key.sign(&broken).is_err(), "{broken:?}");
        }
        assert!(valid_compatible("tinylcm-rpi0-2w") && valid_compatible("board_1.2"));
    }

    /// Fails before this change: `verify` (not `verify_strict`) accepted the identity point as
    /// a key and (identity, 0) as a signature of *any* manifest under it, and such a key line
    /// parsed.
    #[test]
    fn small_order_keys_and_signatures_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap());
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&identity);
        let forged = SignedRelease {
            manifest: serde_json::to_string(&manifest(b"anything")).unwrap(),
            key_id: weak.id(),
            signature: B64.encode(signature),
        };
        assert_eq!(
            forged.verify(std::slice::from_ref(&weak)),
            Err(ReleaseError::BadSignature(weak.id()))
        );
        let line = format!("{PUBLIC_PREFIX}{}", B64.encode(identity));
        assert_eq!(
            PublicKey::from_text(&line),
            Err(ReleaseError::BadKey(
                "a weak (small-order) Ed25519 public key"
            ))
        );
    }

    #[test]
    fn key_files_hold_several_keys_and_refuse_secrets() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        let file = format!(
            "# release keys\n{}\n\n{}\n",
            a.public().to_text(),
            b.public().to_text()
        );
        assert_eq!(PublicKey::all_from_text(&file).unwrap().len(), 2);
        assert!(PublicKey::from_text(&a.to_text()).is_err());
        assert!(PublicKey::from_text("tinylcm-release-public:AAAA").is_err());
    }
}
