//! Snapshot files on disk: id rules, atomic writes, bounded reads.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::files::Durability;

use super::super::error::StateError;
use super::format::MAX_SNAPSHOT_BYTES;

/// File name extension of snapshot files.
pub(crate) const EXT: &str = "snap";

/// Checks that `id` can only name a file directly inside the snapshots directory.
pub(crate) fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidSnapshotId { id: id.to_string() })
    }
}

/// The file of snapshot `id` (validated) in `dir`.
pub(crate) fn path_of(dir: &Path, id: &str) -> Result<PathBuf, StateError> {
    validate_id(id)?;
    Ok(dir.join(format!("{id}.{EXT}")))
}

/// The sequence number that starts a snapshot id (`000042-...`).
pub(crate) fn seq_of(id: &str) -> Option<u64> {
    let digits = id.split('-').next()?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An id: sequence number and UTC time, e.g. `000042-20261126T052600Z`.
pub(crate) fn make_id(seq: u64, unix_ms: u64) -> String {
    format!("{seq:06}-{}", crate::utc::compact(unix_ms))
}

/// Writes `bytes` to `path` so that a crash leaves either the old state or the whole new
/// file, durable when this returns.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    crate::files::write_atomic(path, bytes, Durability::Synced)
        .map_err(|e| StateError::io("writing snapshot", path, e))
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    crate::files::sync_dir(dir).map_err(|e| StateError::io("syncing snapshot directory", dir, e))
}

/// Reads a snapshot file: regular files only (no symlinks), at most
/// [`MAX_SNAPSHOT_BYTES`], checked before reading.
pub(crate) fn read_bounded(path: &Path, id: &str, dir: &Path) -> Result<Vec<u8>, StateError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::SnapshotNotFound {
                id: id.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(StateError::io("reading snapshot", path, e)),
    };
    if !meta.file_type().is_file() {
        return Err(StateError::SnapshotCorrupt {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_SNAPSHOT_BYTES {
        return Err(StateError::SnapshotCorrupt {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, more than the {MAX_SNAPSHOT_BYTES} a snapshot may have",
                meta.len()
            ),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)
        .and_then(|f| f.take(MAX_SNAPSHOT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| StateError::io("reading snapshot", path, e))?;
    if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
        return Err(StateError::SnapshotCorrupt {
            path: path.to_path_buf(),
            reason: "grew past the size limit while being read".into(),
        });
    }
    Ok(bytes)
}

/// Reads the first `n` bytes of `path` (or fewer if it is shorter).
pub(crate) fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>, StateError> {
    let mut bytes = Vec::with_capacity(n);
    File::open(path)
        .and_then(|f| f.take(n as u64).read_to_end(&mut bytes))
        .map_err(|e| StateError::io("reading snapshot", path, e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_the_directory() {
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a.b",
            "x\0",
            &"a".repeat(65),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        validate_id("000001-20261126T052600Z").unwrap();
    }

    #[test]
    fn ids_carry_sequence_and_utc_time() {
        // 2026-11-26 05:26:00 UTC
        let id = make_id(42, 1_795_670_760_000);
        assert_eq!(id, "000042-20261126T052600Z");
        assert_eq!(seq_of(&id), Some(42));
        assert_eq!(make_id(1, 0), "000001-19700101T000000Z");
        assert_eq!(make_id(7, 951_782_400_000), "000007-20000229T000000Z");
        assert_eq!(seq_of("junk"), None);
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.snap");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
