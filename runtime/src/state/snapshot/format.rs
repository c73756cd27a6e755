//! The snapshot file format: a fixed header, then a postcard payload.
//!
//! ```text
//! offset size
//!  0      8   magic "TLCMSNAP"
//!  8      4   format version, u32 LE (SNAPSHOT_FORMAT)
//! 12      4   schema version of the database it came from, u32 LE
//! 16      8   created, milliseconds since the Unix epoch, u64 LE
//! 24      8   payload length, u64 LE
//! 32     32   SHA-256 of the payload
//! 64      -   payload: postcard of `Contents` (component states and counters)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::error::StateError;

/// The snapshot file format version this runtime writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// The largest snapshot file this runtime reads or writes: 64 MiB.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

pub(crate) const MAGIC: &[u8; 8] = b"TLCMSNAP";
pub(crate) const HEADER_LEN: usize = 64;

/// What a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Contents {
    /// Component states (`kv`), name → encoded bytes.
    pub states: Vec<(String, Vec<u8>)>,
    /// Counters at the time of the snapshot.
    pub counters: Vec<(String, u64)>,
}

/// The fixed-size header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub format: u32,
    pub schema: u32,
    pub created_unix_ms: u64,
    pub payload_len: u64,
    pub sha256: [u8; 32],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes a whole snapshot file.
pub(crate) fn encode(
    path: &Path,
    schema: u32,
    created_unix_ms: u64,
    contents: &Contents,
) -> Result<Vec<u8>, StateError> {
    let payload = postcard::to_stdvec(contents).map_err(|e| StateError::Encode {
        path: path.to_path_buf(),
        what: "snapshot".into(),
        reason: e.to_string(),
    })?;
    let total = HEADER_LEN + payload.len();
    if total as u64 > MAX_SNAPSHOT_BYTES {
        return Err(StateError::ValueTooLarge {
            what: format!("snapshot {}", path.display()),
            len: total,
            max: MAX_SNAPSHOT_BYTES as usize,
        });
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
    out.extend_from_slice(&schema.to_le_bytes());
    out.extend_from_slice(&created_unix_ms.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StateError {
    StateError::SnapshotCorrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses and checks the header (magic, format version); `bytes` may be the header alone.
pub(crate) fn header(path: &Path, bytes: &[u8]) -> Result<Header, StateError> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(
            path,
            format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt(path, "not a TinyLCM snapshot (bad magic)"));
    }
    let format = u32_at(bytes, 8);
    if format != SNAPSHOT_FORMAT {
        return Err(StateError::SnapshotVersion {
            path: path.to_path_buf(),
            what: "format",
            found: format,
            supported: SNAPSHOT_FORMAT,
        });
    }
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&bytes[32..64]);
    Ok(Header {
        format,
        schema: u32_at(bytes, 12),
        created_unix_ms: u64_at(bytes, 16),
        payload_len: u64_at(bytes, 24),
        sha256,
    })
}

/// Verifies a whole snapshot file (header, length, checksum, schema within
/// `oldest..=schema`) and decodes it.
pub(crate) fn decode(
    path: &Path,
    bytes: &[u8],
    oldest: u32,
    schema: u32,
) -> Result<(Header, Contents), StateError> {
    let h = header(path, bytes)?;
    let payload = &bytes[HEADER_LEN..];
    if h.payload_len != payload.len() as u64 {
        return Err(corrupt(
            path,
            format!(
                "header says {} payload bytes, the file has {} (truncated or appended to)",
                h.payload_len,
                payload.len()
            ),
        ));
    }
    if Sha256::digest(payload).as_slice() != h.sha256 {
        return Err(corrupt(
            path,
            "SHA-256 of the payload does not match the header",
        ));
    }
    if !(oldest..=schema).contains(&h.schema) {
        return Err(StateError::SnapshotVersion {
            path: path.to_path_buf(),
            what: "schema",
            found: h.schema,
            supported: schema,
        });
    }
    let contents: Contents = postcard::from_bytes(payload)
        .map_err(|e| corrupt(path, format!("payload does not decode: {e}")))?;
    Ok((h, contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contents {
        Contents {
            states: vec![("knn".into(), vec![1, 2, 3])],
            counters: vec![("frames".into(), 42)],
        }
    }

    #[test]
    fn round_trip() {
        let p = Path::new("s.snap");
        let bytes = encode(p, 1, 1234, &sample()).unwrap();
        let (h, c) = decode(p, &bytes, 1, 1).unwrap();
        assert_eq!(h.created_unix_ms, 1234);
        assert_eq!(c, sample());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let p = Path::new("s.snap");
        let bytes = encode(p, 1, 1234, &sample()).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            // Bytes 16..24 (creation time) are informative only; all others are checked.
            if (16..24).contains(&i) {
                continue;
            }
            assert!(
                decode(p, &b, 1, 1).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        for n in 0..bytes.len() {
            assert!(
                decode(p, &bytes[..n], 1, 1).is_err(),
                "truncation to {n} went unnoticed"
            );
        }
    }

    #[test]
    fn older_schemas_in_the_accepted_range_are_read_and_others_refused() {
        let p = Path::new("s.snap");
        let v1 = encode(p, 1, 0, &sample()).unwrap();
        let (h, c) = decode(p, &v1, 1, 2).unwrap();
        assert_eq!((h.schema, c), (1, sample()));
        let v0 = encode(p, 0, 0, &sample()).unwrap();
        let err = decode(p, &v0, 1, 2).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::SnapshotVersion {
                    what: "schema",
                    found: 0,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn other_versions_are_refused() {
        let p = Path::new("s.snap");
        let bytes = encode(p, 2, 0, &sample()).unwrap();
        let err = decode(p, &bytes, 1, 1).unwrap_err();
        assert!(matches!(
            err,
            StateError::SnapshotVersion {
                what: "schema",
                found: 2,
                ..
            }
        ));
        let mut b = bytes.clone();
        b[8] = 9;
        let err = decode(p, &b, 1, 2).unwrap_err();
        assert!(matches!(
            err,
            StateError::SnapshotVersion {
                what: "format",
                found: 9,
                ..
            }
        ));
    }
}
