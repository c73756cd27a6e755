//! The thumbnails directory: which files are ours, writing one atomically, and keeping the
//! total under the byte budget.
//!
//! Only names of the form `<20-digit id>.jpg` (and their `.<name>.tmp` temporaries) are ever
//! created, counted or removed, so pointing `thumbnail-dir` at a directory holding other
//! files cannot lose them; names come from the numeric id alone.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::super::entry::{thumbnail_id, thumbnail_name};

/// Our thumbnails in the directory: id → file size, and the total.
#[derive(Debug)]
pub(crate) struct Inventory {
    dir: PathBuf,
    budget: u64,
    files: BTreeMap<u64, u64>,
    total: u64,
}

/// What [`Inventory::scan`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Thumbnails of entries that no longer exist, removed.
    pub orphans: usize,
    /// Temporaries left by a crash in the middle of a write, removed.
    pub temporaries: usize,
}

impl Inventory {
    /// Lists our files in `dir`, removing temporaries and thumbnails whose id `keep` refuses
    /// (left by a crash, by a dropped delete job, or by entries removed while thumbnails
    /// were off). Files that are not ours are left alone and not counted.
    pub fn scan(dir: &Path, budget: u64, keep: impl Fn(u64) -> bool) -> (Inventory, Scan) {
        let mut inv = Inventory {
            dir: dir.to_path_buf(),
            budget,
            files: BTreeMap::new(),
            total: 0,
        };
        let mut scan = Scan::default();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("quarantine thumbnails: cannot list {}: {e}", dir.display());
                return (inv, scan);
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            if let Some(tmp) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
                if thumbnail_id(tmp).is_some() && remove(&path) {
                    scan.temporaries += 1;
                }
                continue;
            }
            let Some(id) = thumbnail_id(name) else {
                continue;
            };
            if keep(id) {
                inv.files.insert(id, meta.len());
                inv.total += meta.len();
            } else if remove(&path) {
                scan.orphans += 1;
            }
        }
        (inv, scan)
    }

    /// The file of thumbnail `id`.
    pub fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(thumbnail_name(id))
    }

    /// Bytes of our thumbnails on disk.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of our thumbnails on disk.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Writes thumbnail `id` so that a crash leaves the old file or the whole new one
    /// (temporary, fsync, rename). The directory itself is not fsynced: after a power cut a
    /// thumbnail may be missing, which readers expect anyway, and it spares the SD card.
    pub fn write(&mut self, id: u64, jpeg: &[u8]) -> io::Result<()> {
        let path = self.path_of(id);
        crate::files::write_atomic(&path, jpeg, crate::files::Durability::FileSynced)?;
        if let Some(old) = self.files.insert(id, jpeg.len() as u64) {
            self.total -= old;
        }
        self.total += jpeg.len() as u64;
        Ok(())
    }

    /// Removes thumbnail `id` (nothing if there is none).
    pub fn remove(&mut self, id: u64) -> bool {
        let path = self.path_of(id);
        let known = self.files.remove(&id);
        if let Some(bytes) = known {
            self.total -= bytes;
        }
        remove(&path) || known.is_some()
    }

    /// Removes the oldest thumbnails (lowest ids) until `want` bytes are freed or none is
    /// left; returns the count and the bytes freed (the space budget's shedder).
    pub fn shed_oldest(&mut self, want: u64) -> (usize, u64) {
        let (mut n, mut freed) = (0, 0);
        while freed < want {
            let Some((id, bytes)) = self.files.pop_first() else {
                break;
            };
            self.total -= bytes;
            remove(&self.path_of(id));
            freed += bytes;
            n += 1;
        }
        (n, freed)
    }

    /// Removes the oldest thumbnails (lowest ids) until the total fits the budget; returns
    /// how many went.
    pub fn enforce_budget(&mut self) -> usize {
        let mut removed = 0;
        while self.total > self.budget {
            let Some((id, bytes)) = self.files.pop_first() else {
                break;
            };
            self.total -= bytes;
            remove(&self.path_of(id));
            removed += 1;
        }
        removed
    }
}

/// Removes a file; false when it was not there or could not be removed (logged).
fn remove(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(
                "quarantine thumbnails: cannot remove {}: {e}",
                path.display()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_keeps_ours_removes_orphans_and_temporaries_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join(thumbnail_name(1)), [0u8; 10]).unwrap();
        fs::write(d.join(thumbnail_name(2)), [0u8; 20]).unwrap();
        fs::write(d.join(format!(".{}.tmp", thumbnail_name(3))), [0u8; 5]).unwrap();
        fs::write(d.join("holiday.jpg"), [0u8; 50]).unwrap();
        fs::write(d.join(".other.tmp"), [0u8; 5]).unwrap();
        let (inv, scan) = Inventory::scan(d, 1000, |id| id == 1);
        assert_eq!(
            scan,
            Scan {
                orphans: 1,
                temporaries: 1
            }
        );
        assert_eq!((inv.len(), inv.total()), (1, 10));
        assert!(d.join(thumbnail_name(1)).exists());
        assert!(!d.join(thumbnail_name(2)).exists());
        assert!(d.join("holiday.jpg").exists() && d.join(".other.tmp").exists());
    }

    #[test]
    fn writes_replace_atomically_and_the_budget_removes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut inv, _) = Inventory::scan(dir.path(), 90, |_| true);
        for id in 1..=4 {
            inv.write(id, &[id as u8; 30]).unwrap();
        }
        inv.write(4, &[9; 40]).unwrap();
        assert_eq!(inv.total(), 130);
        assert_eq!(inv.enforce_budget(), 2);
        assert_eq!(inv.total(), 70);
        assert!(!inv.path_of(1).exists() && !inv.path_of(2).exists());
        assert_eq!(fs::read(inv.path_of(4)).unwrap(), [9; 40]);
        assert_eq!(
            inv.shed_oldest(1),
            (1, 30),
            "the oldest left (3) goes first"
        );
        assert!(!inv.path_of(3).exists());
        inv.write(3, &[3; 30]).unwrap();
        assert!(inv.remove(3));
        assert!(!inv.remove(3));
        assert_eq!((inv.len(), inv.total()), (1, 40));
        // No temporaries left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let sub = dir.path().join("thumbs");
        fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink(&victim, sub.join(format!(".{}.tmp", thumbnail_name(5))))
            .unwrap();
        let (mut inv, _) = Inventory::scan(&sub, 1000, |_| true);
        inv.write(5, b"jpeg").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(fs::read(inv.path_of(5)).unwrap(), b"jpeg");
    }
}
