//! Writing a file so that a crash or power cut leaves either the old file or the whole new
//! one: a temporary beside it, then a rename over it.
//!
//! One implementation for every file the runtime replaces (snapshots, initial states,
//! feature transforms, feedback, thumbnails, the status report), so the rules are the same
//! everywhere: the temporary is hidden (`.name.<pid>-<nanos>.tmp`), unique per writer, never
//! follows a symlink planted at its name, and is removed when anything fails.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How much survives a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its folder: once this returns, the new file survives a power cut.
    Synced,
    /// fsync the file, not the folder: after a power cut the old file (or none) may be back.
    FileSynced,
    /// No fsync (files rewritten every few seconds, where SD card wear matters more).
    Unsynced,
}

/// Replace `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let tmp = temporary(path);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        if durability != Durability::Unsynced {
            f.sync_all()?;
        }
        Ok(())
    };
    if let Err(e) = write().and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if durability == Durability::Synced {
        sync_dir(folder(path))?;
    }
    Ok(())
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all())
}

/// The folder `path` is in (`.` for a bare file name).
fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A hidden temporary beside `path`, unique per process and call.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    folder(path).join(format!(".{name}.{}-{nanos}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        for (content, durability) in [
            (&b"one"[..], Durability::Synced),
            (b"two", Durability::FileSynced),
            (b"three", Durability::Unsynced),
        ] {
            write_atomic(&path, content, durability).unwrap();
            assert_eq!(fs::read(&path).unwrap(), content);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.bin");
        assert!(write_atomic(&path, b"x", Durability::Synced).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
