//! The one rule for blob keys: the names under which sphere-lite stores what devices send
//! (`devices/<device>/packages/<package>/<file>`, embeddings, log indexes).
//!
//! Why in the protocol crate: the parsers of device JSON ([`crate::device_json`]) turn the
//! file names a device sends into the keys its files are stored under, and refuse names that
//! make no valid key; sphere-lite's `BlobKey` checks every key with this same rule, so the
//! fuzzed parsers and the server cannot disagree about a key.

/// Longest accepted blob key in bytes (S3 allows 1024).
pub const MAX_KEY_LEN: usize = 1024;

/// A key that breaks the rule of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blob key {key:?}: {reason}")]
pub struct InvalidKey {
    /// The rejected key (may be truncated).
    pub key: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

/// Whether `key` is a valid blob key: 1..=[`MAX_KEY_LEN`] bytes of `A-Z a-z 0-9 . _ - /`,
/// no empty segment, no segment starting with `.` (so `.`, `..` and hidden names never
/// reach a file system or an object store).
pub fn check(key: &str) -> Result<(), InvalidKey> {
    let fail = |reason| {
        Err(InvalidKey {
            key: key.chars().take(100).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return fail("longer than 1024 bytes");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return fail("only A-Z a-z 0-9 . _ - / are allowed");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return fail("empty path segment (leading, trailing or double '/')");
        }
        if segment.starts_with('.') {
            return fail("a segment starts with '.' ('.', '..' and hidden names are not allowed)");
        }
    }
    Ok(())
}

/// The key of file `name` of package `package_id` sent by `device_id`, checked.
pub fn package_file(device_id: &str, package_id: &str, name: &str) -> Result<String, InvalidKey> {
    let key = format!("devices/{device_id}/packages/{package_id}/{name}");
    check(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_file_keys_follow_the_rule() {
        assert_eq!(
            package_file("pi-1", "p1", "s/a.jpg").unwrap(),
            "devices/pi-1/packages/p1/s/a.jpg"
        );
        for bad in ["../x", "s//a", ".hidden", "a b", ""] {
            assert!(package_file("pi-1", "p1", bad).is_err(), "{bad:?}");
        }
        assert!(check(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(check(&"a".repeat(MAX_KEY_LEN)).is_ok());
    }
}
