//! Where the store's files are: `<dir>/a/` and `<dir>/b/` (each `model.tflite`, `model.toml`,
//! `release.json`) and `<dir>/incoming/` for hand-overs. Every path is built here from fixed
//! names, so nothing the store writes can land outside its folder.

use std::path::{Path, PathBuf};

use super::error::ModelStoreError;
use super::record::Slot;
use crate::files::{Durability, sync_dir, write_atomic};

/// The model file in a slot.
pub const MODEL_FILE: &str = "model.tflite";
/// The runtime's model manifest in a slot.
pub const MANIFEST_FILE: &str = "model.toml";
/// The signed release in a slot.
pub const RELEASE_FILE: &str = "release.json";
/// The hand-over folder.
pub const INCOMING_DIR: &str = "incoming";

/// The store folder's layout.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Layout { dir: dir.into() }
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A slot's folder.
    pub fn slot_dir(&self, slot: Slot) -> PathBuf {
        self.dir.join(slot.dir_name())
    }

    /// A slot's model file.
    pub fn model(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(MODEL_FILE)
    }

    /// A slot's manifest.
    pub fn manifest(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(MANIFEST_FILE)
    }

    /// A slot's signed release.
    pub fn release(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(RELEASE_FILE)
    }

    /// The hand-over folder.
    pub fn incoming(&self) -> PathBuf {
        self.dir.join(INCOMING_DIR)
    }

    /// Writes the three files of a slot, each durably and atomically, after removing
    /// temporaries a crash may have left. The caller guarantees nothing refers to the slot.
    pub(crate) fn write_slot(
        &self,
        slot: Slot,
        model: &[u8],
        manifest: &str,
        release: &[u8],
    ) -> Result<(), ModelStoreError> {
        let dir = self.slot_dir(slot);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ModelStoreError::io("creating the slot folder", &dir, e))?;
        remove_temporaries(&dir)?;
        for (path, bytes) in [
            (self.model(slot), model),
            (self.manifest(slot), manifest.as_bytes()),
            (self.release(slot), release),
        ] {
            write_atomic(&path, bytes, Durability::Synced)
                .map_err(|e| ModelStoreError::io("writing", &path, e))?;
        }
        // The slot folder's entry, and the store folder's own (it may be new), must survive a
        // power cut before the state refers to them.
        sync_dir(&self.dir).map_err(|e| ModelStoreError::io("syncing", &self.dir, e))?;
        match self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => sync_dir(parent).map_err(|e| ModelStoreError::io("syncing", parent, e)),
            None => Ok(()),
        }
    }
}

/// Removes hidden `*.tmp` files (half-written by a killed writer) from `dir`.
pub(crate) fn remove_temporaries(dir: &Path) -> Result<(), ModelStoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ModelStoreError::io("listing", dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| ModelStoreError::io("removing the leftover", &path, e))?;
        }
    }
    Ok(())
}
