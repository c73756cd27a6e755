//! Fitting from a folder of images through a caller-given embedding
//! function, so this module does not depend on the inference engine.

use super::error::FeatureError;
use super::fit::{FitOptions, Fitted, fit};
use crate::frame::{DirectorySource, Frame, FrameSource};
use std::path::Path;

/// Most embedding values held for one fit: 128 MiB of f32.
pub const MAX_FIT_VALUES: usize = 32 << 20;

/// Embed every image under `dir` (sub-folders included, as deep as the
/// directory source descends) and [`fit`] a transform to the embeddings.
/// Unreadable images are skipped as the directory source does.
pub fn fit_from_folder<F, E>(
    dir: &Path,
    options: &FitOptions,
    mut embed: F,
) -> Result<Fitted, FeatureError>
where
    F: FnMut(&Frame) -> Result<Vec<f32>, E>,
    E: std::fmt::Display,
{
    let fail = |reason: String| FeatureError::Fit { reason };
    let mut source = DirectorySource::labelled(dir).map_err(|e| fail(e.to_string()))?;
    let mut frame = Frame::default();
    let mut data = Vec::new();
    let mut dim = None;
    while source
        .next_frame(&mut frame)
        .map_err(|e| fail(e.to_string()))?
    {
        let v = embed(&frame).map_err(|e| fail(format!("embedding failed: {e}")))?;
        let d = *dim.get_or_insert(v.len());
        if v.len() != d {
            return Err(FeatureError::Dimension {
                what: "embedding",
                expected: d,
                got: v.len(),
            });
        }
        if data.len() + d > MAX_FIT_VALUES {
            return Err(fail(format!(
                "more than {MAX_FIT_VALUES} embedding values; use fewer images"
            )));
        }
        data.extend_from_slice(&v);
    }
    let dim = dim.ok_or_else(|| fail("no images".into()))?;
    fit(&data, dim, options)
}
