//! The embedded `Blobs` adapter: files under one directory (`<data>/blobs/`).
//!
//! Why: the embedded default needs no object store. Keys are validated by [`BlobKey`] so no key
//! can name a path outside the root; writes go to a hidden temporary file in the target
//! directory, are fsynced and renamed, so a crash leaves the old object or the new one.
//!
//! Unsynced puts ([`Blobs::put_unsynced`]) skip the two fsyncs; [`Blobs::sync`] then makes a
//! group durable at once: a few objects by an fsync each (and of their folders), more by one
//! `syncfs` of the root's file system, which costs about one fsync whatever the group's size
//! (it also writes out whatever else is dirty on that file system).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::ports::{BlobKey, Blobs, StoreError};
use crate::secret::random_bytes;

/// Blobs as files under a root directory.
pub struct DirBlobs {
    root: PathBuf,
}

fn err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new("blobs", format!("{context}: {e}"))
}

impl DirBlobs {
    /// Use (and create) `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|e| err(&format!("create {}", root.display()), e))?;
        Ok(DirBlobs {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn list_into(&self, dir: &Path, rel: &str, out: &mut Vec<BlobKey>) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue; // temporary files of unfinished writes
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.list_into(&entry.path(), &child, out)?;
            } else if kind.is_file() {
                if let Ok(key) = BlobKey::new(child) {
                    out.push(key);
                }
            }
        }
        Ok(())
    }
}

/// From this many objects on, [`Blobs::sync`] syncs the whole file system once instead of
/// each object: measured on this project's VM disk (ext4), an fsync costs 0.3–0.5 ms and a
/// `syncfs` after a few small writes about as much as three or four of them.
const SYNCFS_FROM: usize = 4;

/// Whether a write is made durable before it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// fsync the file and its folder (a plain put).
    Now,
    /// Left to a later [`Blobs::sync`].
    Later,
}

impl DirBlobs {
    /// Write the object under `key` through `fill` into a hidden temporary file, fsync it
    /// (`Durable::Now`) and rename it into place (see the module docs); the temporary file
    /// goes on any failure.
    fn write_atomically(
        &self,
        key: &BlobKey,
        durable: Durable,
        fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root);
        let suffix: [u8; 8] = random_bytes().map_err(|e| err("temp name", e))?;
        let tmp = dir.join(format!(
            ".tmp-{}",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        let result = (|| -> io::Result<()> {
            let mut file = create_in(dir, &tmp)?;
            fill(&mut file)?;
            if durable == Durable::Now {
                file.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
            if durable == Durable::Now {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| err(&format!("write {key}"), e))
    }

    /// fsync each of `keys` and each folder they are in (a folder once).
    fn sync_each(&self, keys: &[BlobKey]) -> io::Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for key in keys {
            let path = self.path(key);
            fs::File::open(&path)?.sync_data()?;
            dirs.insert(path.parent().unwrap_or(&self.root).to_path_buf());
        }
        for dir in dirs {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Blobs for DirBlobs {
    fn put(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_atomically(key, Durable::Now, |file| file.write_all(bytes))
    }

    fn put_file(&self, key: &BlobKey, path: &Path) -> Result<(), StoreError> {
        copy_in(self, key, path, Durable::Now)
    }

    fn put_unsynced(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_atomically(key, Durable::Later, |file| file.write_all(bytes))
    }

    fn put_file_unsynced(&self, key: &BlobKey, path: &Path) -> Result<(), StoreError> {
        copy_in(self, key, path, Durable::Later)
    }

    fn sync(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let synced = if keys.is_empty() {
            Ok(())
        } else if keys.len() < SYNCFS_FROM {
            self.sync_each(keys)
        } else {
            fs::File::open(&self.root)
                .and_then(|root| nix::unistd::syncfs(&root).map_err(io::Error::from))
        };
        synced.map_err(|e| err(&format!("sync {} objects", keys.len()), e))
    }

    fn open(
        &self,
        key: &BlobKey,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<crate::ports::BlobStream>, StoreError> {
        let mut file = match fs::File::open(self.path(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&format!("read {key}"), e)),
        };
        io::Seek::seek(&mut file, io::SeekFrom::Start(start))
            .map_err(|e| err(&format!("read {key}"), e))?;
        Ok(Some(match len {
            Some(n) => Box::new(io::Read::take(file, n)),
            None => Box::new(file),
        }))
    }

    fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&format!("read {key}"), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
        // Walk the directory part of the prefix only; filter the rest by string prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !dir_part.is_empty() && BlobKey::new(dir_part).is_err() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.list_into(&self.root.join(dir_part), dir_part, &mut out)
            .map_err(|e| err(&format!("list {prefix}"), e))?;
        out.retain(|k| k.as_str().starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn list_sizes(&self, prefix: &str) -> Result<Vec<(BlobKey, u64)>, StoreError> {
        let mut out = Vec::new();
        for key in self.list(prefix)? {
            match fs::metadata(self.path(&key)) {
                Ok(m) => out.push((key, m.len())),
                // Deleted since it was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(&format!("size of {key}"), e)),
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        match fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&format!("delete {key}"), e)),
        }
    }

    fn presigned_get(
        &self,
        _key: &BlobKey,
        _expiry: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None) // files have no URL of their own
    }
}

/// Create the file `path` in the folder `dir`, creating `dir` only when it is missing: most
/// writes go to a folder that exists (a device's), and a failing `mkdir` on every write took
/// about 2% of the server's CPU under `cargo bench --bench ingest`'s fleet phase (`perf`).
fn create_in(dir: &Path, path: &Path) -> io::Result<fs::File> {
    match fs::File::create(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            fs::File::create(path)
        }
        other => other,
    }
}

/// Store the file at `path` under `key` of `blobs`.
fn copy_in(
    blobs: &DirBlobs,
    key: &BlobKey,
    path: &Path,
    durable: Durable,
) -> Result<(), StoreError> {
    let mut source =
        fs::File::open(path).map_err(|e| err(&format!("read {}", path.display()), e))?;
    // `io::copy` between files lets the kernel copy (copy_file_range): no user buffer.
    blobs.write_atomically(key, durable, |file| io::copy(&mut source, file).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobs::open(dir.path()).unwrap();
        let a = BlobKey::new("x/y/a.bin").unwrap();
        let b = BlobKey::new("x/b.bin").unwrap();
        blobs.put(&a, b"one").unwrap();
        blobs.put(&a, b"two").unwrap();
        blobs.put(&b, b"three").unwrap();
        assert_eq!(blobs.get(&a).unwrap().unwrap(), b"two");
        assert_eq!(blobs.list("").unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(blobs.list("x/y/").unwrap(), vec![a.clone()]);
        assert_eq!(blobs.list("nope/").unwrap(), vec![]);
        blobs.delete(&a).unwrap();
        blobs.delete(&a).unwrap();
        assert!(blobs.get(&a).unwrap().is_none());
    }
}
