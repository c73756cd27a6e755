//! Where each inference library is looked for, in one documented order.
//!
//! 1. the config key (`engine.tflite-c-library`, `engine.litert-library`,
//!    `engine.edgetpu-library`);
//! 2. the environment (`TINYLCM_TFLITE_C_LIB`, `TINYLCM_LITERT_LIB`,
//!    `TINYLCM_EDGETPU_LIB`);
//! 3. the development cache filled by `./scripts/fetch-libs`:
//!    `$TINYLCM_CACHE` or `~/.cache/tinylcm`, then
//!    `libs/<pinned dir>/<arch>/<file>` (`arch` = `std::env::consts::ARCH`);
//! 4. the system loader's default name (`libtensorflowlite_c.so`,
//!    `libLiteRt.so`, `libedgetpu.so.1`), which is what the device image installs.
//!
//! The first step that names something wins: a configured path that does not
//! exist is an error, never silently replaced by another library.

use std::fmt;
use std::path::{Path, PathBuf};

use super::pins;

/// Environment variable overriding the cache root (also read by the scripts).
pub const CACHE_ENV: &str = "TINYLCM_CACHE";

/// The three libraries the engine loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryKind {
    /// Classic TF Lite C API.
    TfliteC,
    /// LiteRT C API.
    Litert,
    /// Coral Edge TPU runtime.
    EdgeTpu,
}

impl LibraryKind {
    /// Name the system loader knows the library by.
    pub fn file_name(self) -> &'static str {
        match self {
            LibraryKind::TfliteC => "libtensorflowlite_c.so",
            LibraryKind::Litert => "libLiteRt.so",
            LibraryKind::EdgeTpu => "libedgetpu.so.1",
        }
    }

    /// Environment variable naming the library's path.
    pub fn env_var(self) -> &'static str {
        match self {
            LibraryKind::TfliteC => "TINYLCM_TFLITE_C_LIB",
            LibraryKind::Litert => "TINYLCM_LITERT_LIB",
            LibraryKind::EdgeTpu => "TINYLCM_EDGETPU_LIB",
        }
    }

    /// Dotted config key naming the library's path.
    pub fn config_key(self) -> &'static str {
        match self {
            LibraryKind::TfliteC => "engine.tflite-c-library",
            LibraryKind::Litert => "engine.litert-library",
            LibraryKind::EdgeTpu => "engine.edgetpu-library",
        }
    }

    /// Cache sub-directory of the pinned version, if `fetch-libs` provides one.
    pub fn cache_dir_name(self) -> Option<&'static str> {
        match self {
            LibraryKind::TfliteC => Some(pins::TFLITE_C_CACHE_DIR),
            LibraryKind::Litert => Some(pins::LITERT_CACHE_DIR),
            LibraryKind::EdgeTpu => None,
        }
    }

    /// What the user can do when the library is missing.
    pub fn hint(self) -> String {
        match self {
            LibraryKind::EdgeTpu => format!(
                "install libedgetpu (Debian: libedgetpu1-std) or set {} / {} to its path",
                self.env_var(),
                self.config_key()
            ),
            _ => format!(
                "run ./scripts/fetch-libs (development), or set {} / {} to the library's path",
                self.env_var(),
                self.config_key()
            ),
        }
    }
}

/// Which step of the lookup order produced a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// The config file.
    Config,
    /// An environment variable.
    Env,
    /// The `fetch-libs` cache.
    Cache,
    /// The system loader's search path (bare file name).
    System,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Config => "config",
            LibrarySource::Env => "environment",
            LibrarySource::Cache => "fetch-libs cache",
            LibrarySource::System => "system loader",
        })
    }
}

/// A path to try for one library and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryLocation {
    /// Path, or bare file name for [`LibrarySource::System`].
    pub path: PathBuf,
    /// Which lookup step produced it.
    pub source: LibrarySource,
}

/// Root of the development cache: `$TINYLCM_CACHE` or `~/.cache/tinylcm`.
pub fn cache_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| Path::new(&home).join(".cache").join("tinylcm"))
}

/// Where `fetch-libs` puts `kind` for this machine's architecture.
pub fn cache_path(kind: LibraryKind) -> Option<PathBuf> {
    let dir = kind.cache_dir_name()?;
    Some(
        cache_root()?
            .join("libs")
            .join(dir)
            .join(std::env::consts::ARCH)
            .join(kind.file_name()),
    )
}

/// Resolve `kind` following the documented order; `configured` is the config key's value.
pub fn locate(kind: LibraryKind, configured: Option<&Path>) -> LibraryLocation {
    if let Some(path) = configured {
        return LibraryLocation {
            path: path.to_path_buf(),
            source: LibrarySource::Config,
        };
    }
    if let Some(path) = std::env::var_os(kind.env_var()).filter(|v| !v.is_empty()) {
        return LibraryLocation {
            path: PathBuf::from(path),
            source: LibrarySource::Env,
        };
    }
    if let Some(path) = cache_path(kind).filter(|p| p.is_file()) {
        return LibraryLocation {
            path,
            source: LibrarySource::Cache,
        };
    }
    LibraryLocation {
        path: PathBuf::from(kind.file_name()),
        source: LibrarySource::System,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_wins() {
        let loc = locate(LibraryKind::Litert, Some(Path::new("/opt/x/libLiteRt.so")));
        assert_eq!(loc.source, LibrarySource::Config);
        assert_eq!(loc.path, Path::new("/opt/x/libLiteRt.so"));
    }

    #[test]
    fn edgetpu_has_no_cache_and_falls_back_to_its_soname() {
        assert_eq!(cache_path(LibraryKind::EdgeTpu), None);
        // Unless the developer set the variable, the loader's name is used.
        if std::env::var_os("TINYLCM_EDGETPU_LIB").is_none() {
            let loc = locate(LibraryKind::EdgeTpu, None);
            assert_eq!(loc.source, LibrarySource::System);
            assert_eq!(loc.path, Path::new("libedgetpu.so.1"));
        }
    }

    #[test]
    fn cache_layout_names_version_and_arch() {
        if let Some(p) = cache_path(LibraryKind::TfliteC) {
            let s = p.to_string_lossy().into_owned();
            assert!(s.contains("libs/tflite-c-2.6.0/"), "{s}");
            assert!(s.ends_with(&format!(
                "{}/libtensorflowlite_c.so",
                std::env::consts::ARCH
            )));
        }
    }

    #[test]
    fn hints_name_the_fix() {
        let h = LibraryKind::Litert.hint();
        assert!(h.contains("./scripts/fetch-libs") && h.contains("TINYLCM_LITERT_LIB"));
        assert!(
            LibraryKind::EdgeTpu
                .hint()
                .contains("engine.edgetpu-library")
        );
    }
}
