//! The prediction samples a device sends for the Data Hub gallery (a package's
//! `predictions.json` members, JSON lists of [`PredictionSample`]s), checked against the
//! package's own prediction images.
//!
//! Why here: sphere-lite indexes what [`predictions_of`] returns, and the fuzz target
//! `datahub` runs the same function without the server's dependency tree.

use std::collections::HashSet;

use crate::blob_key::package_file;
use crate::datahub::{
    MAX_PREDICTIONS_FILE_BYTES, MAX_PREDICTIONS_PER_PACKAGE, PREDICTIONS_FILE, PredictionSample,
    PredictionView, valid_class_name,
};
use crate::package::{FileKind, Package};

/// What the prediction files of a package hold.
#[derive(Debug, Default)]
pub struct Predictions {
    /// Prediction samples to index, at most [`MAX_PREDICTIONS_PER_PACKAGE`].
    pub predictions: Vec<PredictionView>,
    /// Problems found (the package is kept).
    pub problems: Vec<String>,
}

/// Whether `name` is an image file the gallery and the dashboard show (by extension).
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Shortened for a problem message (device-supplied text).
fn shown(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The prediction samples of `package` (its `predictions.json` members, each sample naming
/// one of its prediction images) and the problems found. Never fails: a bad file or sample is
/// a problem, and everything else is kept.
pub fn predictions_of(package: &Package) -> Predictions {
    let mut parts = Predictions::default();
    let m = &package.manifest;
    let images: HashSet<&str> = package
        .files
        .iter()
        .filter(|(e, _)| e.kind == FileKind::Prediction && is_image_name(&e.name))
        .map(|(e, _)| e.name.as_str())
        .collect();
    let metadata = package.files.iter().filter(|(e, _)| {
        e.kind == FileKind::Prediction && e.name.rsplit('/').next() == Some(PREDICTIONS_FILE)
    });
    for (entry, content) in metadata {
        let name = &entry.name;
        let problems = &mut parts.problems;
        if content.len() > MAX_PREDICTIONS_FILE_BYTES {
            problems.push(format!(
                "prediction file {name:?}: {} bytes, more than {MAX_PREDICTIONS_FILE_BYTES}; skipped",
                content.len()
            ));
            continue;
        }
        let samples: Vec<PredictionSample> = match serde_json::from_slice(content) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!(
                    "prediction file {name:?} is not a JSON list of prediction samples ({e}); skipped"
                ));
                continue;
            }
        };
        for s in samples {
            if parts.predictions.len() >= MAX_PREDICTIONS_PER_PACKAGE {
                parts.problems.push(format!(
                    "prediction file {name:?}: more than {MAX_PREDICTIONS_PER_PACKAGE} samples in the package; the rest skipped"
                ));
                break;
            }
            let file = shown(&s.file);
            let reason = if !valid_class_name(&s.class) {
                Some("class names are 1..=64 bytes of A-Z a-z 0-9 . _ - (not starting with '.')")
            } else if !(s.confidence.is_finite() && (0.0..=1.0).contains(&s.confidence)) {
                Some("confidence must be a number in 0..=1")
            } else if !images.contains(s.file.as_str()) {
                Some("`file` is not a prediction image (.jpg, .jpeg, .png) of the package")
            } else {
                None
            };
            if let Some(reason) = reason {
                parts.problems.push(format!(
                    "prediction file {name:?}, sample {file:?}: {reason}; sample skipped"
                ));
                continue;
            }
            match package_file(&m.device_id, &m.package_id, &s.file) {
                Ok(key) if parts.predictions.iter().any(|p| p.key == key) => {
                    parts.problems.push(format!(
                        "prediction file {name:?}, sample {file:?}: described twice; the first kept"
                    ));
                }
                Ok(key) => parts.predictions.push(PredictionView {
                    device_id: m.device_id.clone(),
                    package_id: m.package_id.clone(),
                    file: s.file,
                    class: s.class,
                    confidence: s.confidence,
                    unix_ms: s.unix_ms,
                    key,
                }),
                Err(e) => parts.problems.push(format!(
                    "prediction file {name:?}, sample {file:?}: {e}; sample skipped"
                )),
            }
        }
    }
    parts
}
