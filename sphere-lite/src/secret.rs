//! Secrets (device tokens, operator tokens, enrollment keys, dashboard session ids): generation,
//! hashing, comparison, public ids.
//!
//! Why: the original server had no authentication at all. Secrets here are 32 random bytes from
//! the OS, shown once as base64url with a kind prefix; only their SHA-256 is stored, and stored
//! hashes are compared in constant time, so a leaked database does not leak usable tokens.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ports::SecretHash;

/// What a secret is for; its prefix makes a pasted secret recognisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A device's bearer token (`sld_`).
    DeviceToken,
    /// An operator's bearer token (`slo_`).
    OperatorToken,
    /// An enrollment key (`sle_`).
    EnrollmentKey,
    /// A dashboard session id, carried by the session cookie (`sls_`). Never a bearer token.
    Session,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::DeviceToken => "sld_",
            SecretKind::OperatorToken => "slo_",
            SecretKind::EnrollmentKey => "sle_",
            SecretKind::Session => "sls_",
        }
    }
}

/// The OS random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

/// A new secret of `kind`: prefix + base64url (no padding) of 32 random bytes.
pub fn generate(kind: SecretKind) -> Result<String, RandomError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!(
        "{}{}",
        kind.prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// SHA-256 of a secret as presented (the only form that is stored).
pub fn hash(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// The public id of a stored secret: `prefix` + the first 12 hex digits of SHA-256 over a
/// fixed label and the secret's hash. Derived, not random, so every replica (and a migration
/// of records stored before ids existed) gives a secret the same id; it reveals nothing that
/// helps find the secret.
pub fn public_id(prefix: &str, hash: &SecretHash) -> String {
    let mut h = Sha256::new();
    h.update(b"sphere-lite public id v1");
    h.update(hash);
    let digest = h.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Constant-time equality of two hashes.
pub fn hashes_equal(a: &SecretHash, b: &SecretHash) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hashable() {
        let a = generate(SecretKind::DeviceToken).unwrap();
        let b = generate(SecretKind::DeviceToken).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sld_"));
        assert_eq!(a.len(), 4 + 43);
        assert!(hashes_equal(&hash(&a), &hash(&a)));
        assert!(!hashes_equal(&hash(&a), &hash(&b)));
        let s = generate(SecretKind::Session).unwrap();
        assert!(s.starts_with("sls_"));
        let id = public_id("tok-", &hash(&a));
        assert_eq!(id.len(), 4 + 12);
        assert_eq!(id, public_id("tok-", &hash(&a)));
        assert_ne!(id, public_id("tok-", &hash(&b)));
    }
}
