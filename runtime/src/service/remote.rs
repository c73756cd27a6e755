//! The remote configuration a device was sent by sphere-lite, kept beside its database, and
//! the one it refused, kept aside.
//!
//! An operator's fragment (keys of [`REMOTE_KEYS`] only) must survive restarts and power cuts,
//! must never take a device off the air, and must be acknowledged only once it holds. So
//! [`RemoteConfig::apply`] first proves the fragment passes the allow-list (again: the server
//! may be older than it) and yields a valid configuration together with the device's own
//! file, then writes it atomically (temporary file, fsync, rename, fsync of the folder) and
//! only then returns; the service loop reloads with it.
//!
//! A fragment the device cannot run is *refused*: on receipt ([`RemoteConfig::apply`]), at
//! start when the stored one no longer passes (an older runtime stored it, the local file
//! changed under it), or when a generation fails to start or run with it
//! ([`RemoteConfig::refuse_stored`], called by the service loop, which then runs on the local
//! file in the same process). A refused fragment is written atomically to
//! `remote-config.refused.json` with the reason *before* the stored one is removed, so a crash
//! in between leaves both and the stored one is still recognised as refused at the next start:
//! it is never applied again, and a delivery of the same revision is refused at once. The sync
//! client reports the refusal to sphere-lite ([`RemoteConfig::unreported_refusal`]), which
//! keeps it, shows it and does not send that revision again.
//!
//! Files beside the state database: `remote-config.json` `{format, revision, toml,
//! applied_unix_ms}` (an empty fragment means "back to the local file" and removes it), and
//! `remote-config.refused.json` `{format, revision, toml, reason, refused_unix_ms, reported}`
//! (the last refusal only).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinylcm_protocol::api::MAX_REFUSAL_REASON_BYTES;
use tinylcm_protocol::remote_config::MAX_CONFIG_BYTES;
#[cfg(doc)]
use tinylcm_protocol::remote_config::REMOTE_KEYS;

use crate::config::Config;
use crate::config_error::ConfigError;

/// Format of the stored file.
pub const FORMAT: u32 = 1;
/// Name of the file beside the state database.
pub const FILE_NAME: &str = "remote-config.json";
/// Name of the refused fragment's file beside the state database.
pub const REFUSED_FILE_NAME: &str = "remote-config.refused.json";
/// Largest stored file read back (the fragment's own bound plus the envelope and a reason).
const MAX_FILE_BYTES: u64 = (MAX_CONFIG_BYTES as u64) * 2 + 4 * MAX_REFUSAL_REASON_BYTES as u64;

/// A remote configuration as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    /// [`FORMAT`].
    pub format: u32,
    /// The server's revision of the effective fragment.
    pub revision: String,
    /// The fragment.
    pub toml: String,
    /// When the device applied it (Unix ms).
    pub applied_unix_ms: u64,
}

/// A remote configuration the device refused, as kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    /// [`FORMAT`].
    pub format: u32,
    /// The server's revision of the refused fragment.
    pub revision: String,
    /// The fragment.
    pub toml: String,
    /// Why (at most [`MAX_REFUSAL_REASON_BYTES`]).
    pub reason: String,
    /// When the device refused it (Unix ms).
    pub refused_unix_ms: u64,
    /// sphere-lite has recorded the refusal (or is too old to take it).
    #[serde(default)]
    pub reported: bool,
}

/// Why a remote configuration was refused or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The fragment is off the allow-list, or does not make a valid configuration with the
    /// local file.
    #[error("remote configuration {revision} refused: {source}")]
    Invalid {
        /// Its revision.
        revision: String,
        /// What is wrong, naming the key.
        #[source]
        source: ConfigError,
    },
    /// The file could not be written or read.
    #[error("remote configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The revision was refused on this device before; it is not applied again.
    #[error("remote configuration {revision} was refused on this device before ({reason})")]
    RefusedBefore {
        /// Its revision.
        revision: String,
        /// Why it was refused then.
        reason: String,
    },
    /// The stored file is damaged.
    #[error(
        "remote configuration file {path} is damaged ({reason}); delete it to run on the local file"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The remote configuration file of one device.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    path: PathBuf,
}

impl RemoteConfig {
    /// The file beside the state database at `state_path`.
    pub fn beside(state_path: &Path) -> RemoteConfig {
        let dir = state_path.parent().unwrap_or(Path::new("."));
        RemoteConfig {
            path: dir.join(FILE_NAME),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The refused fragment's file.
    pub fn refused_path(&self) -> PathBuf {
        self.path.with_file_name(REFUSED_FILE_NAME)
    }

    /// The stored configuration, if any (as stored: [`RemoteConfig::in_force`] is what runs).
    pub fn read(&self) -> Result<Option<Applied>, RemoteError> {
        self.read_json(&self.path)
    }

    /// The fragment refused last, if any.
    pub fn refused(&self) -> Result<Option<Refused>, RemoteError> {
        self.read_json(&self.refused_path())
    }

    /// The refusal sphere-lite has not recorded yet, if any: (revision, reason).
    pub fn unreported_refusal(&self) -> Option<(String, String)> {
        match self.refused() {
            Ok(Some(r)) if !r.reported => Some((r.revision, r.reason)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Remember that sphere-lite recorded the refusal of `revision` (nothing happens when the
    /// refused fragment is another one by now).
    pub fn mark_reported(&self, revision: &str) -> Result<(), RemoteError> {
        match self.refused()? {
            Some(mut r) if r.revision == revision && !r.reported => {
                r.reported = true;
                self.write_json(&self.refused_path(), &r)
            }
            _ => Ok(()),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned + HasFormat>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, RemoteError> {
        let io = |source| RemoteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
            &mut text,
        )
        .map_err(io)?;
        let damaged = |reason: String| RemoteError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(damaged(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let value: T = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if value.format() != FORMAT {
            return Err(damaged(format!(
                "format {} is not {FORMAT}",
                value.format()
            )));
        }
        Ok(Some(value))
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), RemoteError> {
        let json = serde_json::to_vec_pretty(value).map_err(|e| RemoteError::Damaged {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomically(path, &json)
    }

    /// The stored fragment to run with the local configuration `file`, if any.
    ///
    /// A stored fragment that is refused already (a crash between setting it aside and
    /// removing it) is removed; one that no longer passes the allow-list or no longer makes a
    /// valid configuration with `file` is refused now ([`RemoteConfig::refuse_stored`]). Either
    /// way the device runs on its local file, and says so in the log. A file that cannot be
    /// read is left alone and ignored.
    pub fn in_force(&self, file: Option<&Path>, now_unix_ms: u64) -> Option<(Applied, Config)> {
        let applied = match self.read() {
            Ok(applied) => applied?,
            Err(e) => {
                tracing::error!("{e}; running on the local configuration");
                return None;
            }
        };
        if let Ok(Some(refused)) = self.refused() {
            if refused.revision == applied.revision {
                tracing::warn!(
                    revision = %applied.revision,
                    "the stored remote configuration was refused before; removing it"
                );
                if let Err(e) = self.remove_stored(&applied.revision) {
                    tracing::error!("{e}");
                }
                return None;
            }
        }
        match Config::load_with_remote(file, Some(&applied.toml)) {
            Ok(config) => Some((applied, config)),
            Err(source) => {
                let e = RemoteError::Invalid {
                    revision: applied.revision.clone(),
                    source,
                };
                tracing::error!("{e}; running on the local configuration");
                if let Err(e) = self.refuse_stored(&applied, &e.to_string(), now_unix_ms) {
                    tracing::error!("cannot set the refused remote configuration aside: {e}");
                }
                None
            }
        }
    }

    /// Set `applied` aside as refused for `reason` and remove it from `remote-config.json`
    /// (when it is still the stored one): the refusal is written first, so a crash between
    /// the two steps still finds it refused at the next start.
    pub fn refuse_stored(
        &self,
        applied: &Applied,
        reason: &str,
        now_unix_ms: u64,
    ) -> Result<(), RemoteError> {
        self.write_refused(&applied.revision, &applied.toml, reason, now_unix_ms)?;
        self.remove_stored(&applied.revision)
    }

    fn write_refused(
        &self,
        revision: &str,
        toml: &str,
        reason: &str,
        now_unix_ms: u64,
    ) -> Result<(), RemoteError> {
        let reason = tinylcm_protocol::api::ConfigRefusal::new(revision, reason).reason;
        let refused = Refused {
            format: FORMAT,
            revision: revision.to_string(),
            toml: toml.to_string(),
            reason,
            refused_unix_ms: now_unix_ms,
            reported: false,
        };
        self.write_json(&self.refused_path(), &refused)
    }

    /// Remove the stored fragment if it is `revision`.
    fn remove_stored(&self, revision: &str) -> Result<(), RemoteError> {
        match self.read() {
            Ok(Some(stored)) if stored.revision != revision => return Ok(()),
            Ok(None) => return Ok(()),
            // A damaged file is not the refused fragment's either, but it never runs: removing
            // it is what its error message asks for anyway.
            Ok(Some(_)) | Err(RemoteError::Damaged { .. }) => {}
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => sync_dir(&self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RemoteError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Check `toml` against the allow-list and the local configuration `file`, then keep it
    /// durably (or remove the stored one when `toml` is empty). Returns the configuration it
    /// makes.
    ///
    /// A fragment that does not pass is refused: kept aside with the reason (to be reported),
    /// and the stored one, if any, stays in force. A revision refused before is refused again
    /// at once.
    pub fn apply(
        &self,
        file: Option<&Path>,
        revision: &str,
        toml: &str,
        now_unix_ms: u64,
    ) -> Result<Config, RemoteError> {
        let invalid = |source| RemoteError::Invalid {
            revision: revision.to_string(),
            source,
        };
        if toml.trim().is_empty() {
            let config = Config::load(file).map_err(invalid)?;
            match std::fs::remove_file(&self.path) {
                Ok(()) => sync_dir(&self.path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RemoteError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
            return Ok(config);
        }
        if let Ok(Some(refused)) = self.refused() {
            if refused.revision == revision {
                return Err(RemoteError::RefusedBefore {
                    revision: refused.revision,
                    reason: refused.reason,
                });
            }
        }
        let config = match Config::load_with_remote(file, Some(toml)) {
            Ok(config) => config,
            Err(source) => {
                let e = invalid(source);
                self.write_refused(revision, toml, &e.to_string(), now_unix_ms)?;
                return Err(e);
            }
        };
        let applied = Applied {
            format: FORMAT,
            revision: revision.to_string(),
            toml: toml.to_string(),
            applied_unix_ms: now_unix_ms,
        };
        self.write_json(&self.path, &applied)?;
        Ok(config)
    }
}

/// The stored files carry a format number.
trait HasFormat {
    fn format(&self) -> u32;
}

impl HasFormat for Applied {
    fn format(&self) -> u32 {
        self.format
    }
}

impl HasFormat for Refused {
    fn format(&self) -> u32 {
        self.format
    }
}

/// Write `bytes` to `path` so that a crash leaves the old file or the new one, never a mix
/// (owner-only, as the temporary file this wrote before [`crate::files`] took over was).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RemoteError> {
    let io = |source| RemoteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    crate::files::write_private(path, bytes).map_err(io)
}

/// fsync the folder of `path`, so a rename or removal in it is durable.
fn sync_dir(path: &Path) -> Result<(), RemoteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::files::sync_dir(dir).map_err(|source| RemoteError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(dir: &Path) -> RemoteConfig {
        RemoteConfig::beside(&dir.join("state.redb"))
    }

    #[test]
    fn an_applied_fragment_is_read_back_and_an_empty_one_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        assert_eq!(remote.read().unwrap(), None);
        let config = remote
            .apply(None, "00aa", "[knn]\nk = 9\n", 1_764_000_000_000)
            .unwrap();
        assert_eq!(config.knn.k, 9);
        let stored = remote.read().unwrap().unwrap();
        assert_eq!(
            (stored.revision.as_str(), stored.toml.as_str()),
            ("00aa", "[knn]\nk = 9\n")
        );
        remote.apply(None, "0000", "", 1).unwrap();
        assert_eq!(remote.read().unwrap(), None);
    }

    #[test]
    fn a_fragment_that_breaks_the_configuration_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        remote.apply(None, "good", "[knn]\nk = 5\n", 1).unwrap();
        for (i, bad) in ["[knn]\nk = 0\n", "[engine]\nthreads = 2\n", "[knn\n"]
            .iter()
            .enumerate()
        {
            let e = remote.apply(None, &format!("bad{i}"), bad, 2).unwrap_err();
            assert!(matches!(e, RemoteError::Invalid { .. }), "{bad}: {e}");
        }
        assert_eq!(remote.read().unwrap().unwrap().revision, "good");
    }

    /// Fails before this change: a fragment refused on receipt left no trace (nothing to
    /// report), and the same revision delivered again was checked and refused again silently.
    #[test]
    fn a_fragment_refused_on_receipt_is_kept_aside_and_refused_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        remote.apply(None, "good", "[knn]\nk = 5\n", 1).unwrap();
        let bad = "[quarantine]\nthumbnail-dir = \"/data/elsewhere\"\n";
        let e = remote.apply(None, "00bad", bad, 2).unwrap_err();
        assert!(e.to_string().contains("quarantine.thumbnail-dir"), "{e}");
        let refused = remote.refused().unwrap().unwrap();
        assert_eq!(
            (refused.revision.as_str(), refused.toml.as_str()),
            ("00bad", bad)
        );
        assert!(
            refused.reason.contains("quarantine.thumbnail-dir"),
            "{refused:?}"
        );
        assert!(!refused.reported);
        // The fragment that held stays in force.
        assert_eq!(remote.read().unwrap().unwrap().revision, "good");
        assert_eq!(
            remote.unreported_refusal().map(|(r, _)| r).as_deref(),
            Some("00bad")
        );
        let e = remote.apply(None, "00bad", bad, 3).unwrap_err();
        assert!(matches!(e, RemoteError::RefusedBefore { .. }), "{e}");
        remote.mark_reported("00bad").unwrap();
        assert_eq!(remote.unreported_refusal(), None);
        assert!(remote.refused().unwrap().unwrap().reported);
    }

    /// Fails before this change: a stored fragment an older runtime accepted (a path) was
    /// applied at every start.
    #[test]
    fn a_stored_fragment_off_the_allow_list_is_refused_and_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        let applied = Applied {
            format: FORMAT,
            revision: "00aa00aa00aa00aa".into(),
            toml: "[quarantine]\nthumbnail-dir = \"/data/x\"\n".into(),
            applied_unix_ms: 1,
        };
        std::fs::write(remote.path(), serde_json::to_vec(&applied).unwrap()).unwrap();
        assert!(remote.in_force(None, 5).is_none());
        assert_eq!(remote.read().unwrap(), None);
        let refused = remote.refused().unwrap().unwrap();
        assert_eq!(refused.revision, applied.revision);
        assert_eq!(refused.refused_unix_ms, 5);
        assert!(
            refused.reason.contains("quarantine.thumbnail-dir"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_fragment_set_aside_is_never_in_force_again_even_after_a_crash_half_way() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        remote.apply(None, "00cc", "[knn]\nk = 9\n", 1).unwrap();
        let (applied, config) = remote.in_force(None, 2).unwrap();
        assert_eq!(config.knn.k, 9);
        // A crash after the refusal was written, before the stored file was removed.
        remote
            .write_refused("00cc", &applied.toml, "failed", 3)
            .unwrap();
        assert!(remote.read().unwrap().is_some());
        assert!(remote.in_force(None, 4).is_none());
        assert_eq!(remote.read().unwrap(), None);
        // refuse_stored leaves another revision stored by then alone.
        remote.apply(None, "00dd", "[knn]\nk = 7\n", 5).unwrap();
        remote.refuse_stored(&applied, "late", 6).unwrap();
        assert_eq!(remote.read().unwrap().unwrap().revision, "00dd");
        // A long reason is cut to what the server takes.
        let long = "x".repeat(5 * MAX_REFUSAL_REASON_BYTES);
        remote.write_refused("00ee", "", &long, 7).unwrap();
        assert_eq!(
            remote.refused().unwrap().unwrap().reason.len(),
            MAX_REFUSAL_REASON_BYTES
        );
    }

    #[test]
    fn a_damaged_file_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        std::fs::write(remote.path(), b"{\"format\": 1, \"revision\": ").unwrap();
        assert!(matches!(remote.read(), Err(RemoteError::Damaged { .. })));
    }
}
