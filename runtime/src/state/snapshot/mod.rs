//! Snapshots: point-in-time copies of the component states (and counters) in files that are
//! versioned, checksummed (SHA-256), written atomically and kept newest-N.
//!
//! A snapshot is taken before every adaptation so that it can be rolled back, and on demand
//! (`tinylcm snapshot create`). Restoring replaces every component state in one
//! transaction; counters are recorded in the snapshot but not rolled back, because they
//! count events that did happen and that stay in the (append-only) event log. The
//! quarantine table is neither copied nor restored (see [`crate::state`] for why).

mod files;
mod format;

use std::fs;
use std::path::{Path, PathBuf};

pub(crate) use format::Contents;
pub use format::{MAX_SNAPSHOT_BYTES, SNAPSHOT_FORMAT};

use super::Store;
use super::error::StateError;
use super::schema::{OLDEST_SNAPSHOT_SCHEMA, SCHEMA_VERSION};
use super::writer::Msg;

/// One snapshot file, as listed (from its header) or just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The id (`<sequence>-<UTC time>`, e.g. `000042-20261126T052600Z`).
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
    /// Schema version of the database it was taken from.
    pub schema_version: u32,
    /// When it was taken, ms since the Unix epoch.
    pub created_unix_ms: u64,
}

/// A directory of snapshots with a retention limit.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    keep: usize,
}

impl Snapshots {
    /// Snapshots in `dir` (created when first written), keeping the newest `keep` (≥ 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<Self, StateError> {
        if keep == 0 {
            return Err(StateError::Config {
                key: "snapshots.keep",
                reason: "must be at least 1 (the newest snapshot is what a rollback needs)".into(),
            });
        }
        Ok(Self {
            dir: dir.into(),
            keep,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes `store`, writes a snapshot of its component states and counters, then
    /// removes the oldest snapshots beyond the retention limit.
    pub fn create(&self, store: &Store) -> Result<SnapshotInfo, StateError> {
        store.flush()?;
        let contents = store.dump()?;
        fs::create_dir_all(&self.dir)
            .map_err(|e| StateError::io("creating snapshot directory", &self.dir, e))?;
        self.remove_temporaries();
        let seq = self
            .list()?
            .last()
            .and_then(|s| files::seq_of(&s.id))
            .unwrap_or(0)
            + 1;
        let now_ms = crate::utc::now_unix_ms();
        let id = files::make_id(seq, now_ms);
        let path = files::path_of(&self.dir, &id)?;
        let bytes = format::encode(&path, SCHEMA_VERSION, now_ms, &contents)?;
        files::write_atomic(&path, &bytes)?;
        self.prune()?;
        Ok(SnapshotInfo {
            id,
            path,
            bytes: bytes.len() as u64,
            schema_version: SCHEMA_VERSION,
            created_unix_ms: now_ms,
        })
    }

    /// The snapshots, oldest first. Files that are not snapshots are ignored; a snapshot
    /// whose header is unreadable is listed by name with zero size and version.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, StateError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("listing snapshots in", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StateError::io("listing snapshots in", &self.dir, e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{}", files::EXT)))
            else {
                continue;
            };
            if files::validate_id(id).is_err() || files::seq_of(id).is_none() {
                continue;
            }
            let path = entry.path();
            let bytes = entry.metadata().map_or(0, |m| m.len());
            let head = files::read_prefix(&path, format::HEADER_LEN)
                .ok()
                .and_then(|h| format::header(&path, &h).ok());
            out.push(SnapshotInfo {
                id: id.to_string(),
                path,
                bytes,
                schema_version: head.map_or(0, |h| h.schema),
                created_unix_ms: head.map_or(0, |h| h.created_unix_ms),
            });
        }
        out.sort_by_key(|s| (files::seq_of(&s.id), s.id.clone()));
        Ok(out)
    }

    /// Reads and verifies snapshot `id` (size, magic, format, length, SHA-256, schema: from
    /// [`OLDEST_SNAPSHOT_SCHEMA`](super::OLDEST_SNAPSHOT_SCHEMA) to
    /// [`SCHEMA_VERSION`](super::SCHEMA_VERSION)).
    pub fn verify(&self, id: &str) -> Result<SnapshotInfo, StateError> {
        self.load(id).map(|(info, _)| info)
    }

    fn load(&self, id: &str) -> Result<(SnapshotInfo, Contents), StateError> {
        let path = files::path_of(&self.dir, id)?;
        let bytes = files::read_bounded(&path, id, &self.dir)?;
        let (header, contents) =
            format::decode(&path, &bytes, OLDEST_SNAPSHOT_SCHEMA, SCHEMA_VERSION)?;
        let info = SnapshotInfo {
            id: id.to_string(),
            path,
            bytes: bytes.len() as u64,
            schema_version: header.schema,
            created_unix_ms: header.created_unix_ms,
        };
        Ok((info, contents))
    }

    /// Verifies snapshot `id` completely, then replaces every component state in `store`
    /// with the snapshot's in one transaction (durable when this returns). A snapshot that
    /// fails verification leaves the database unchanged.
    pub fn restore(&self, store: &Store, id: &str) -> Result<SnapshotInfo, StateError> {
        let (info, contents) = self.load(id)?;
        store.request(|reply| Msg::Restore {
            states: contents.states,
            reply,
        })?;
        Ok(info)
    }

    /// Removes the oldest snapshots, never the newest (what a rollback needs), until `want`
    /// bytes are freed; returns the bytes freed. The space budget's shedder for snapshots
    /// when the data partition is below its floor.
    pub fn shed_old(&self, want: u64) -> u64 {
        let Ok(all) = self.list() else { return 0 };
        let mut freed = 0;
        for old in all.iter().take(all.len().saturating_sub(1)) {
            if freed >= want {
                break;
            }
            if fs::remove_file(&old.path).is_ok() {
                freed += old.bytes;
            }
        }
        freed
    }

    /// Removes the oldest snapshots beyond the retention limit.
    fn prune(&self) -> Result<(), StateError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep);
        for old in &all[..excess] {
            fs::remove_file(&old.path)
                .map_err(|e| StateError::io("removing old snapshot", &old.path, e))?;
        }
        if excess > 0 {
            files::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Removes temporaries left by a crash during an earlier `create`.
    fn remove_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}
