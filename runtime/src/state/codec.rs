//! The value codec: postcard (compact, serde-based, stable wire format since 1.0), with a
//! size limit so one oversized value cannot fill the database or memory.

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};

use super::error::StateError;

/// The largest encoded value (component state or event) the store accepts: 32 MiB.
pub const MAX_VALUE_BYTES: usize = 32 << 20;

/// Encodes `value`, refusing anything larger than [`MAX_VALUE_BYTES`].
pub(crate) fn encode<T: Serialize + ?Sized>(
    path: &Path,
    what: &str,
    value: &T,
) -> Result<Vec<u8>, StateError> {
    let bytes = postcard::to_stdvec(value).map_err(|e| StateError::Encode {
        path: path.to_path_buf(),
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    check_len(what, bytes.len())?;
    Ok(bytes)
}

/// Refuses lengths above [`MAX_VALUE_BYTES`].
pub(crate) fn check_len(what: &str, len: usize) -> Result<(), StateError> {
    if len > MAX_VALUE_BYTES {
        return Err(StateError::ValueTooLarge {
            what: what.to_string(),
            len,
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Decodes `bytes` as `T`; bad bytes are an error, never a panic.
pub(crate) fn decode<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    bytes: &[u8],
) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|e| StateError::Decode {
        path: path.to_path_buf(),
        what: what.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let p = Path::new("x.redb");
        let bytes = encode(p, "k", &(7u32, "seven".to_string())).unwrap();
        let back: (u32, String) = decode(p, "k", &bytes).unwrap();
        assert_eq!(back, (7, "seven".to_string()));
        // A length prefix promising far more than there is must fail cleanly.
        let err = decode::<Vec<u64>>(p, "k", &[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
        assert!(err.to_string().contains("does not decode"), "{err}");
        assert!(decode::<(u32, String)>(p, "k", &[]).is_err());
    }

    #[test]
    fn too_large_is_refused() {
        let err = check_len("big", MAX_VALUE_BYTES + 1).unwrap_err();
        assert!(matches!(err, StateError::ValueTooLarge { .. }));
    }
}
