//! Writing labelled synthetic frames to disk as `dir/<class>/NNNNN.png`.
//!
//! One sub-folder per class is also the layout of every labelled-folder
//! command (training the default model, directory replay with labels).

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::ImageEncoder;
use image::codecs::png::PngEncoder;

use super::render::Renderer;
use super::rng::{Rng, mix};
use super::scene::Scene;
use super::{MAX_SIDE, MIN_SIDE, Phase, SceneClass};
use crate::frame::Frame;

/// Most images per class one export writes.
pub const MAX_PER_CLASS: usize = 1_000_000;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The requested size, count or class list cannot work.
    #[error("invalid export request: {0}")]
    Invalid(String),
    /// A folder or file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("cannot encode {path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        source: image::ImageError,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Images per class.
    pub per_class: usize,
    /// Classes, in the order written.
    pub classes: Vec<SceneClass>,
    /// Total files written.
    pub files: usize,
}

/// Write `per_class` PNGs of each class of `phase` into `dir/<class>/NNNNN.png`.
///
/// The classes are the four known ones ([`SceneClass::KNOWN`]), plus `star` for
/// the `unseen` phase. Images depend only on the arguments (same seed, same files).
pub fn export_dataset(
    dir: &Path,
    per_class: usize,
    seed: u64,
    width: u32,
    height: u32,
    phase: Phase,
) -> Result<ExportSummary, ExportError> {
    let classes: &[SceneClass] = if phase == Phase::Unseen {
        &SceneClass::ALL
    } else {
        &SceneClass::KNOWN
    };
    export_classes(dir, per_class, seed, width, height, phase, classes)
}

/// Like [`export_dataset`], for an explicit list of classes.
pub fn export_classes(
    dir: &Path,
    per_class: usize,
    seed: u64,
    width: u32,
    height: u32,
    phase: Phase,
    classes: &[SceneClass],
) -> Result<ExportSummary, ExportError> {
    for (name, v) in [("width", width), ("height", height)] {
        if !(MIN_SIDE..=MAX_SIDE).contains(&v) {
            return Err(ExportError::Invalid(format!(
                "{name} {v} is outside {MIN_SIDE}..={MAX_SIDE}"
            )));
        }
    }
    if per_class > MAX_PER_CLASS {
        return Err(ExportError::Invalid(format!(
            "{per_class} images per class is more than {MAX_PER_CLASS}"
        )));
    }
    if classes.is_empty() {
        return Err(ExportError::Invalid("no classes to write".into()));
    }
    let mut unique: Vec<SceneClass> = Vec::with_capacity(classes.len());
    for &c in classes {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    let mut renderer = Renderer::new(width, height, seed);
    let mut frame = Frame::default();
    let mut files = 0;
    for &class in &unique {
        let sub = dir.join(class.as_str());
        fs::create_dir_all(&sub).map_err(|source| ExportError::Io {
            path: sub.clone(),
            source,
        })?;
        for i in 0..per_class {
            let mut rng = Rng::new(mix(mix(seed, 0x5EED_0000 + class as u64), i as u64));
            let scene = Scene::sample(&mut rng, phase, class, width, height);
            frame.reshape(width, height);
            renderer.draw(&scene, &mut frame.data, &mut rng);
            let path = sub.join(format!("{i:05}.png"));
            write_png(&path, &frame)?;
            files += 1;
        }
        tracing::debug!(class = %class, count = per_class, dir = %sub.display(), "exported");
    }
    Ok(ExportSummary {
        per_class,
        classes: unique,
        files,
    })
}

/// Encode `frame` as an RGB8 PNG at `path`.
pub(crate) fn write_png(path: &Path, frame: &Frame) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::create(path).map_err(io)?;
    let mut out = BufWriter::new(file);
    PngEncoder::new(&mut out)
        .write_image(
            &frame.data,
            frame.width,
            frame.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|source| ExportError::Encode {
            path: path.to_owned(),
            source,
        })?;
    std::io::Write::flush(&mut out).map_err(io)
}
