//! The initial state from a folder of labelled images (one sub-folder per
//! class), through a caller-given embedding function, so this module does
//! not depend on the inference engine.

use super::KnnError;
use super::initial::{Initial, InitialOptions, build_initial};
use crate::frame::{DirectorySource, Frame, FrameSource};
use std::path::Path;

/// Embed every image under `dir` whose folder names its class, then
/// [`build_initial`]. Images directly in `dir` (no class) are skipped with
/// a warning; unreadable images are skipped as the directory source does.
pub fn build_initial_from_folder<F, E>(
    dir: &Path,
    options: &InitialOptions,
    mut embed: F,
) -> Result<Initial, KnnError>
where
    F: FnMut(&Frame) -> Result<Vec<f32>, E>,
    E: std::fmt::Display,
{
    let mut source = DirectorySource::labelled(dir).map_err(|e| KnnError::Source(e.to_string()))?;
    let mut frame = Frame::default();
    let mut samples = Vec::new();
    let mut unlabelled = 0usize;
    while source
        .next_frame(&mut frame)
        .map_err(|e| KnnError::Source(e.to_string()))?
    {
        let Some(label) = frame.truth.as_ref().and_then(|t| t.label.clone()) else {
            unlabelled += 1;
            continue;
        };
        let v = embed(&frame).map_err(|e| KnnError::Embed(format!("{label}: {e}")))?;
        samples.push((label, v));
    }
    if unlabelled > 0 {
        tracing::warn!(
            dir = %dir.display(),
            images = unlabelled,
            "images outside class sub-folders skipped"
        );
    }
    build_initial(samples, options)
}
