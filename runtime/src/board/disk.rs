//! [`DiskGuard`]: refuse writes that would fill the SD card.
//!
//! A full card breaks the database's commits, the status file and the logs at once, so the
//! writers that can drop or wait (quarantine thumbnails, the sync outbox) ask first. The
//! figure is `statvfs`'s space for unprivileged writers (`f_bavail`): root's reserve does not
//! count, because a full card is not usable even if root could still write to it.

use std::path::{Path, PathBuf};

use super::BoardError;

/// Free and total bytes of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

impl DiskSpace {
    /// Free space as a percentage of the total (0 for an empty file system).
    pub fn free_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.free_bytes as f64 * 100.0 / self.total_bytes as f64
        }
    }
}

/// Guards the file system holding one path.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    path: PathBuf,
    min_free_bytes: u64,
}

impl DiskGuard {
    /// Guard the file system of `path` (or of its nearest existing ancestor: a folder may be
    /// created on first write), keeping `min_free_bytes` free.
    pub fn new(path: impl Into<PathBuf>, min_free_bytes: u64) -> Self {
        DiskGuard {
            path: path.into(),
            min_free_bytes,
        }
    }

    /// The guarded path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes that must stay free.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    /// Free and total space now (one `statvfs` call).
    #[allow(
        clippy::useless_conversion,
        reason = "statvfs field types are u64 here but u32 on 32-bit targets"
    )]
    pub fn space(&self) -> Result<DiskSpace, BoardError> {
        let existing = self
            .path
            .ancestors()
            .find(|p| !p.as_os_str().is_empty() && p.exists())
            .unwrap_or(Path::new("."));
        let stat = nix::sys::statvfs::statvfs(existing).map_err(|source| BoardError::Statvfs {
            path: self.path.clone(),
            source,
        })?;
        let unit = match u64::from(stat.fragment_size()) {
            0 => u64::from(stat.block_size()),
            n => n,
        };
        Ok(DiskSpace {
            free_bytes: u64::from(stat.blocks_available()).saturating_mul(unit),
            total_bytes: u64::from(stat.blocks()).saturating_mul(unit),
        })
    }

    /// `Ok` if writing `bytes` leaves at least the minimum free, else
    /// [`BoardError::DiskFull`] (or the `statvfs` error).
    pub fn check_write(&self, bytes: u64) -> Result<(), BoardError> {
        let space = self.space()?;
        if space.free_bytes.saturating_sub(bytes) < self.min_free_bytes || space.free_bytes < bytes
        {
            return Err(BoardError::DiskFull {
                path: self.path.clone(),
                bytes,
                free: space.free_bytes,
                min_free: self.min_free_bytes,
            });
        }
        Ok(())
    }

    /// Whether writing `bytes` is fine; a file system that cannot be asked counts as full
    /// (logged), because guessing "fine" is how a card fills up.
    pub fn ok_to_write(&self, bytes: u64) -> bool {
        match self.check_write(bytes) {
            Ok(()) => true,
            Err(BoardError::DiskFull { .. }) => false,
            Err(e) => {
                tracing::warn!("{e}; refusing the write");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_around_the_real_free_space_of_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskGuard::new(dir.path(), 0).space().unwrap();
        assert!(space.total_bytes > 0 && space.free_bytes <= space.total_bytes);
        assert!((0.0..=100.0).contains(&space.free_percent()));
        // Other processes write meanwhile: keep a wide margin around the measured figure.
        let margin = 64 << 20;
        if space.free_bytes > 2 * margin {
            let roomy = DiskGuard::new(dir.path(), space.free_bytes - 2 * margin);
            assert!(roomy.ok_to_write(1 << 20));
            assert!(!roomy.ok_to_write(4 * margin));
        }
        let strict = DiskGuard::new(dir.path().join("not/yet/there"), space.free_bytes + margin);
        assert!(!strict.ok_to_write(0));
        let e = strict.check_write(10).unwrap_err().to_string();
        assert!(e.contains("board.min-free-mib"), "{e}");
    }
}
