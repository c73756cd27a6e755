//! The remote configuration a device was sent by sphere-lite, kept beside its database.
//!
//! An operator's fragment (sections [`REMOTE_SECTIONS`] only) must survive restarts and power
//! cuts, must never take a device off the air, and must be acknowledged only once it holds.
//! So [`RemoteConfig::apply`] first proves the fragment yields a valid configuration together
//! with the device's own file, then writes it atomically (temporary file, fsync, rename,
//! fsync of the folder) and only then returns; the service loop reloads with it. At start a
//! stored fragment that no longer fits (the local file changed under it) is ignored with an
//! error in the log, and the device runs on its own file: a remote setting can make a device
//! worse, never stop it.
//!
//! File: `remote-config.json` beside the state database, `{format, revision, toml,
//! applied_unix_ms}`. An empty fragment means "back to the local file" and removes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinylcm_protocol::remote_config::{MAX_CONFIG_BYTES, REMOTE_SECTIONS};

use crate::config::{Config, ConfigError};

/// Format of the stored file.
pub const FORMAT: u32 = 1;
/// Name of the file beside the state database.
pub const FILE_NAME: &str = "remote-config.json";
/// Largest stored file read back (the fragment's own bound plus the envelope).
const MAX_FILE_BYTES: u64 = (MAX_CONFIG_BYTES as u64) * 2 + 1024;

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

/// Why a remote configuration was refused or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The fragment does not make a valid configuration with the local file.
    #[error(
        "remote configuration {revision} refused: {source} (allowed sections: {sections})",
        sections = REMOTE_SECTIONS.join(", ")
    )]
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

    /// The stored configuration, if any.
    pub fn read(&self) -> Result<Option<Applied>, RemoteError> {
        let io = |source| RemoteError::Io {
            path: self.path.clone(),
            source,
        };
        let file = match std::fs::File::open(&self.path) {
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
            path: self.path.clone(),
            reason,
        };
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(damaged(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let applied: Applied = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if applied.format != FORMAT {
            return Err(damaged(format!(
                "format {} is not {FORMAT}",
                applied.format
            )));
        }
        Ok(Some(applied))
    }

    /// Check `toml` against the local configuration `file`, then keep it durably (or remove
    /// the stored one when `toml` is empty). Returns the configuration it makes.
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
        let config = Config::load_with_remote(file, Some(toml)).map_err(invalid)?;
        let applied = Applied {
            format: FORMAT,
            revision: revision.to_string(),
            toml: toml.to_string(),
            applied_unix_ms: now_unix_ms,
        };
        let json = serde_json::to_vec_pretty(&applied).map_err(|e| RemoteError::Damaged {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(&self.path, &json)?;
        Ok(config)
    }
}

/// Write `bytes` to `path` so that a crash leaves the old file or the new one, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RemoteError> {
    let io = |source| RemoteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    temp.write_all(bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(path)
}

/// fsync the folder of `path`, so a rename or removal in it is durable.
fn sync_dir(path: &Path) -> Result<(), RemoteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| RemoteError::Io {
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
        for bad in ["[knn]\nk = 0\n", "[engine]\nthreads = 2\n", "[knn\n"] {
            let e = remote.apply(None, "bad", bad, 2).unwrap_err();
            assert!(matches!(e, RemoteError::Invalid { .. }), "{bad}: {e}");
        }
        assert_eq!(remote.read().unwrap().unwrap().revision, "good");
    }

    #[test]
    fn a_damaged_file_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let remote = remote(dir.path());
        std::fs::write(remote.path(), b"{\"format\": 1, \"revision\": ").unwrap();
        assert!(matches!(remote.read(), Err(RemoteError::Damaged { .. })));
    }
}
