//! Writing a file so that a crash or power cut leaves either the old file or the whole new
//! one: a temporary beside it, then a rename over it.
//!
//! One implementation for every file the runtime replaces (snapshots, initial states,
//! feature transforms, feedback, thumbnails, the status report, the remote configuration,
//! the sync credentials), so the rules are the same everywhere: the temporary is hidden
//! (`.name.<pid>-<nanos>.tmp`), unique per writer, in the same folder (a rename never crosses
//! file systems), never follows a symlink planted at its name, is created with its final
//! permissions (a secret is never readable by others, not even for a moment), and is removed
//! when anything fails.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
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

/// Replace `path` with `bytes` atomically (permissions: the process's default, `0666` less
/// the umask).
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    write_atomic_mode(path, bytes, durability, 0o666)
}

/// Replace `path` with `bytes` atomically and durably ([`Durability::Synced`]), readable and
/// writable by the owner only (`0600`): credentials and what an operator sent.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, Durability::Synced, 0o600)
}

/// [`write_atomic`] with the permission bits `mode` (less the umask) for the new file.
fn write_atomic_mode(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
    mode: u32,
) -> io::Result<()> {
    let tmp = temporary(path);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
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
    fn a_private_file_is_owner_only_and_replaces_a_readable_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        write_atomic(&path, b"old", Durability::Synced).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
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
