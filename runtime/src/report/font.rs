//! Finding a TrueType font for the report's text.
//!
//! plotters draws text with a font registered at run time; we load one from
//! the system instead of shipping font files. Debian and the device image get
//! DejaVu Sans from `fonts-dejavu-core`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::style::{FontStyle, register_font};

/// Environment variable naming the font file to use.
pub const FONT_ENV: &str = "TINYLCM_FONT";

/// Where common Linux distributions keep a plain sans-serif font.
const CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Largest font file read (a sans-serif TTF is well under 1 MiB).
const MAX_FONT_BYTES: u64 = 16 * 1024 * 1024;

/// No usable font.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    /// Nothing found where we looked.
    #[error(
        "no font found (looked at ${FONT_ENV} and {tried}); install fonts-dejavu-core or set {FONT_ENV} to a .ttf file"
    )]
    NotFound {
        /// The paths tried.
        tried: String,
    },
    /// A file was found but is not a usable font.
    #[error("{path}: not a usable TrueType/OpenType font ({reason})")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The registered font's path, once per process.
static REGISTERED: OnceLock<PathBuf> = OnceLock::new();

/// Register a sans-serif font with plotters (once per process) and return its path.
pub fn load_font() -> Result<&'static Path, FontError> {
    if let Some(path) = REGISTERED.get() {
        return Ok(path);
    }
    let configured = std::env::var_os(FONT_ENV).map(PathBuf::from);
    let path = match &configured {
        Some(path) => path.clone(),
        None => CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| FontError::NotFound {
                tried: CANDIDATES.join(", "),
            })?,
    };
    let invalid = |reason: String| FontError::Invalid {
        path: path.clone(),
        reason,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| invalid(e.to_string()))?
        .len();
    if size > MAX_FONT_BYTES {
        return Err(invalid(format!("{size} bytes is too large for a font")));
    }
    let bytes = std::fs::read(&path).map_err(|e| invalid(e.to_string()))?;
    // plotters keeps fonts for the life of the process; this runs at most once
    // per process (guarded by REGISTERED), so the leak is bounded to one font.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| invalid("the font could not be parsed".into()))?;
    Ok(REGISTERED.get_or_init(|| path))
}
