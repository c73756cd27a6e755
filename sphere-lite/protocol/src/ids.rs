//! Device and package ids.
//!
//! Ids end up in URL paths, blob keys, directory names and database keys on the server, so they
//! are restricted to a set that is safe in all of them without escaping: ASCII letters, digits,
//! `_` and `-`, 1 to 64 bytes. A UUID (the original clients' package ids) fits.

/// Longest accepted id in bytes.
pub const MAX_ID_BYTES: usize = 64;

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is a well-formed device id (`[A-Za-z0-9_-]`, 1..=64 bytes).
pub fn valid_device_id(s: &str) -> bool {
    valid_id(s)
}

/// Whether `s` is a well-formed package id (`[A-Za-z0-9_-]`, 1..=64 bytes).
pub fn valid_package_id(s: &str) -> bool {
    valid_id(s)
}

/// Longest accepted state-database epoch in bytes.
pub const MAX_EPOCH_BYTES: usize = 32;

/// Whether `s` is a well-formed state-database epoch (`[0-9a-z]`, 1..=32 bytes; the runtime
/// makes 16 lowercase hex digits). An epoch names one life of a device's state database: its
/// event numbers start again at 1 when the database is recreated, so the server tells events
/// apart by (device, epoch, event_seq). It ends up in blob keys, hence the narrow alphabet.
pub fn valid_epoch(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EPOCH_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_short_lowercase_alphanumerics() {
        for good in ["0", "9f86d081884c7d65", &"z".repeat(MAX_EPOCH_BYTES)] {
            assert!(valid_epoch(good), "{good}");
        }
        for bad in [
            "",
            "ABC",
            "a-b",
            "a/b",
            "a.b",
            &"a".repeat(MAX_EPOCH_BYTES + 1),
        ] {
            assert!(!valid_epoch(bad), "{bad:?}");
        }
    }

    #[test]
    fn accepts_safe_ids() {
        for id in [
            "a",
            "pi-zero_2",
            "6f1c2a9e-8a4b-4c1d-9f00-123456789abc",
            &"x".repeat(64),
        ] {
            assert!(valid_device_id(id), "{id}");
            assert!(valid_package_id(id), "{id}");
        }
    }

    #[test]
    fn refuses_unsafe_ids() {
        let long = "x".repeat(65);
        for id in ["", "..", "a/b", "a b", "a.b", "é", "a\0", "%2e", &long] {
            assert!(!valid_device_id(id), "{id:?}");
            assert!(!valid_package_id(id), "{id:?}");
        }
    }
}
