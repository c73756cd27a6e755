//! Pinned library versions and hashes, in one place.
//!
//! The LiteRT C API changed signatures between minor versions under the same
//! symbol names and has no version query, so the SHA-256 of `libLiteRt.so` is
//! its version check. `scripts/fetch-libs` carries the same values: keep both
//! in sync.

/// LiteRT version the `litert` backend was written against.
pub const LITERT_VERSION: &str = "2.3.0";

/// Cache sub-directory holding LiteRT (`libs/<this>/<arch>/libLiteRt.so`).
pub const LITERT_CACHE_DIR: &str = "litert-2.3.0";

/// SHA-256 of the accepted `libLiteRt.so` builds: (arch, hash).
pub const LITERT_SHA256: &[(&str, &str)] = &[
    (
        "x86_64",
        "eec47eb35e2924b3166015887e652a58edc9af823ae38e02bf83bef2548300bb",
    ),
    (
        "aarch64",
        "b57687dc234d2b8b0598aef5a9c961ed24263df8f8b3f56adbee1cff618e544b",
    ),
];

/// Environment variable that lets an unpinned `libLiteRt.so` load (with a warning).
pub const LITERT_UNPINNED_ENV: &str = "TINYLCM_LITERT_UNPINNED";

/// TensorFlow Lite C library version fetched for development (x86_64 only).
pub const TFLITE_C_DEV_VERSION: &str = "2.6.0";

/// Cache sub-directory holding the TF Lite C library.
pub const TFLITE_C_CACHE_DIR: &str = "tflite-c-2.6.0";

/// Oldest TF Lite 2.x minor version accepted by the `tflite-c` backend.
///
/// Every C function the backend calls exists with the same signature from 2.6
/// (the development library) up to the 2.2x releases that the Yocto layer
/// builds. The one known ABI hazard, `TfLiteXNNPackDelegateOptionsDefault`
/// returning a struct whose size (and so calling convention) changed, is
/// called only for releases whose layout is known (see `tflite_c::xnnpack`).
pub const TFLITE_C_MIN_MINOR: u32 = 6;

/// Whether `sha256` (lower-case hex) is a pinned LiteRT build.
pub fn litert_hash_is_pinned(sha256: &str) -> bool {
    LITERT_SHA256.iter().any(|(_, h)| *h == sha256)
}

/// Whether a `TfLiteVersion()` string is one the `tflite-c` backend accepts.
pub fn tflite_c_version_supported(version: &str) -> bool {
    matches!(major_minor(version), Some((2, m)) if m >= TFLITE_C_MIN_MINOR)
}

/// Major and minor of a `TfLiteVersion()` string such as `2.21.0` or `2.16.1-rc0`.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse::<u32>()
        .ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tflite_versions() {
        assert!(tflite_c_version_supported("2.6.0"));
        assert!(tflite_c_version_supported("2.21.0"));
        assert!(tflite_c_version_supported("2.16.1-rc0"));
        assert!(!tflite_c_version_supported("2.5.0"));
        assert!(!tflite_c_version_supported("1.15.5"));
        assert!(!tflite_c_version_supported("3.0.0"));
        assert!(!tflite_c_version_supported(""));
        assert!(!tflite_c_version_supported("garbage"));
        assert_eq!(major_minor("2.21.0"), Some((2, 21)));
        assert_eq!(major_minor("2.6"), Some((2, 6)));
        assert_eq!(major_minor("2"), None);
    }

    #[test]
    fn litert_pins() {
        assert!(litert_hash_is_pinned(LITERT_SHA256[0].1));
        assert!(!litert_hash_is_pinned("00"));
    }
}
