//! The hand-over folder `<models dir>/incoming/`: how `tinylcm model install|activate|rollback`
//! reaches a running service, which holds the state database (only one process may open it).
//!
//! The CLI writes the model and release files first, then a request file
//! `<id>.request.json` last, each atomically (temporary + rename, synced), so the service
//! never sees a half-written hand-over: a request names only files that are complete. The
//! service calls [`process_incoming`] (at start and whenever it likes); each request is
//! executed through the same [`ModelStore`] checks as a local install and then removed with
//! its files. Names are plain file names inside the folder: nothing outside it is read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::error::ModelStoreError;
use super::layout::Layout;
use super::record::SlotRecord;
use super::store::{Installed, ModelStore, RolledBack};
use crate::files::{Durability, sync_dir, write_atomic};

/// Suffix of request files.
pub const REQUEST_SUFFIX: &str = ".request.json";
/// Largest request file read.
const MAX_REQUEST_BYTES: u64 = 4096;
/// Files in `incoming/` no request names are removed after this long (a CLI killed half-way).
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// One hand-over request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Install `model` with its signed `release` (file names in `incoming/`).
    Install {
        /// The model file's name.
        model: String,
        /// The signed release file's name.
        release: String,
        /// Activate right after installing.
        activate: bool,
    },
    /// Activate the staged model.
    Activate,
    /// Roll back (see [`ModelStore::rollback`]).
    Rollback {
        /// Why, for the history.
        reason: String,
    },
}

/// What a processed request did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Installed (and activated when asked).
    Installed {
        /// The install.
        installed: Installed,
        /// Whether it is now on trial.
        activated: bool,
    },
    /// The staged model is now on trial.
    Activated(SlotRecord),
    /// Rolled back.
    RolledBack(RolledBack),
}

impl Outcome {
    /// Whether the model that should run changed (the service must reload or restart).
    pub fn changes_active_model(&self) -> bool {
        !matches!(
            self,
            Outcome::Installed {
                activated: false,
                ..
            }
        )
    }
}

/// A processed request and its result.
#[derive(Debug)]
pub struct Processed {
    /// The request file (already removed).
    pub request: PathBuf,
    /// What happened.
    pub result: Result<Outcome, ModelStoreError>,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A new unique request id: `<unix ms>-<pid>-<n>`, so requests sort in arrival order.
fn new_id() -> String {
    format!(
        "{:013}-{}-{}",
        crate::utc::now_unix_ms(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

fn incoming_dir(layout: &Layout) -> Result<PathBuf, ModelStoreError> {
    let dir = layout.incoming();
    std::fs::create_dir_all(&dir)
        .map_err(|e| ModelStoreError::io("creating the hand-over folder", &dir, e))?;
    Ok(dir)
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), ModelStoreError> {
    write_atomic(path, bytes, Durability::Synced)
        .map_err(|e| ModelStoreError::io("writing", path, e))
}

/// Hands `request` to the service: writes the request file (last). Returns its path.
pub fn hand_over(layout: &Layout, request: &Request) -> Result<PathBuf, ModelStoreError> {
    hand_over_as(layout, &new_id(), request)
}

fn hand_over_as(layout: &Layout, id: &str, request: &Request) -> Result<PathBuf, ModelStoreError> {
    let dir = incoming_dir(layout)?;
    let path = dir.join(format!("{id}{REQUEST_SUFFIX}"));
    let json = serde_json::to_vec(request)
        .map_err(|e| ModelStoreError::io("encoding", &path, std::io::Error::other(e)))?;
    put(&path, &json)?;
    Ok(path)
}

/// Hands an install over: copies `model` and `release` into `incoming/` (model first, release
/// next, the request last). The files are checked by the service, not here.
pub fn hand_over_install(
    layout: &Layout,
    model: &Path,
    release: &Path,
    max_bytes: u64,
    activate: bool,
) -> Result<PathBuf, ModelStoreError> {
    let dir = incoming_dir(layout)?;
    let id = new_id();
    let read = |path: &Path, limit: u64| {
        crate::model::read_bounded(path, limit)
            .map_err(|e| ModelStoreError::io("reading", path, std::io::Error::other(e.to_string())))
    };
    let (model_name, release_name) = (format!("{id}.tflite"), format!("{id}.release.json"));
    put(&dir.join(&model_name), &read(model, max_bytes)?)?;
    put(&dir.join(&release_name), &read(release, 1024 * 1024)?)?;
    hand_over_as(
        layout,
        &id,
        &Request::Install {
            model: model_name,
            release: release_name,
            activate,
        },
    )
}

/// Requests waiting in `incoming/`, oldest first.
pub fn pending(layout: &Layout) -> Result<Vec<PathBuf>, ModelStoreError> {
    let dir = layout.incoming();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ModelStoreError::io("listing", &dir, e)),
    };
    let mut list: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(REQUEST_SUFFIX) && !n.starts_with('.'))
        })
        .collect();
    list.sort();
    Ok(list)
}

/// A file name inside `incoming/`: plain, visible, no separators.
fn inside(dir: &Path, name: &str, request: &Path) -> Result<PathBuf, ModelStoreError> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return Err(ModelStoreError::Request {
            path: request.to_path_buf(),
            reason: format!("{name:?} is not a plain file name in the hand-over folder"),
        });
    }
    Ok(dir.join(name))
}

fn read_request(path: &Path) -> Result<Request, ModelStoreError> {
    let bad = |reason: String| ModelStoreError::Request {
        path: path.to_path_buf(),
        reason,
    };
    let bytes =
        crate::model::read_bounded(path, MAX_REQUEST_BYTES).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

/// Executes every waiting request through `store`, oldest first, and removes each with its
/// files; then removes orphaned files older than an hour. For the service loop: call it at
/// start and periodically (an install runs the smoke test: keep it off the inference thread).
pub fn process_incoming(store: &ModelStore) -> Result<Vec<Processed>, ModelStoreError> {
    let dir = store.layout().incoming();
    let mut done = Vec::new();
    for request_path in pending(store.layout())? {
        let mut files = Vec::new();
        let result = read_request(&request_path).and_then(|request| match request {
            Request::Install {
                model,
                release,
                activate,
            } => {
                let model = inside(&dir, &model, &request_path)?;
                let release = inside(&dir, &release, &request_path)?;
                files.extend([model.clone(), release.clone()]);
                store
                    .install_files(&model, &release, activate)
                    .map(|installed| Outcome::Installed {
                        installed,
                        activated: activate,
                    })
            }
            Request::Activate => store.activate().map(Outcome::Activated),
            Request::Rollback { reason } => store.rollback(&reason).map(Outcome::RolledBack),
        });
        match &result {
            Ok(outcome) => tracing::info!("hand-over {}: {outcome:?}", request_path.display()),
            Err(e) => {
                tracing::warn!("hand-over {} refused: {e}", request_path.display());
                // Release refusals are recorded by the install itself; the others (nothing to
                // activate, a trial in progress, a malformed request) only here, so the
                // operator who handed it over sees why in `tinylcm model status`.
                if matches!(
                    e,
                    ModelStoreError::Refused(_) | ModelStoreError::Request { .. }
                ) {
                    store.note_refusal(request_path.display().to_string(), e);
                }
            }
        }
        for path in files.iter().chain([&request_path]) {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ModelStoreError::io("removing", path, e)),
            }
        }
        done.push(Processed {
            request: request_path,
            result,
        });
    }
    if dir.is_dir() {
        remove_orphans(&dir)?;
        sync_dir(&dir).map_err(|e| ModelStoreError::io("syncing", &dir, e))?;
    }
    Ok(done)
}

/// Removes files no request names that are older than [`ORPHAN_AGE`].
fn remove_orphans(dir: &Path) -> Result<(), ModelStoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelStoreError::io("listing", dir, e))?;
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > ORPHAN_AGE);
        if old && entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| ModelStoreError::io("removing", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_folder_are_refused() {
        let dir = Path::new("/x/incoming");
        let req = Path::new("r");
        assert!(inside(dir, "1-2-3.tflite", req).is_ok());
        for bad in ["../state.redb", "/etc/passwd", ".hidden", "", "a/b"] {
            assert!(inside(dir, bad, req).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_round_trip_and_are_listed_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let a = hand_over(&layout, &Request::Activate).unwrap();
        let b = hand_over(
            &layout,
            &Request::Rollback {
                reason: "operator".into(),
            },
        )
        .unwrap();
        assert_eq!(pending(&layout).unwrap(), vec![a.clone(), b]);
        assert_eq!(read_request(&a).unwrap(), Request::Activate);
    }
}
