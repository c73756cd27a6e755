//! Errors of the feature path: one enum, each variant says what was wrong.

use std::path::PathBuf;

/// Failures of building, reading, fitting or applying a feature transform.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// A vector or array has the wrong length.
    #[error("{what}: expected {expected} values, got {got}")]
    Dimension {
        /// Which vector or array.
        what: &'static str,
        /// Length required.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A dimensionality outside `1..=MAX_DIM`, or more outputs than inputs.
    #[error("invalid dimensions {input} -> {output}: {reason}")]
    Dimensions {
        /// Input dimensionality.
        input: usize,
        /// Output dimensionality.
        output: usize,
        /// Why they are refused.
        reason: &'static str,
    },
    /// A NaN, an infinity, or a scale that is not positive.
    #[error("{what}[{index}] = {value} is not allowed ({reason})")]
    Value {
        /// Which array.
        what: &'static str,
        /// Index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
        /// What values are allowed.
        reason: &'static str,
    },
    /// The bytes are not a feature transform file of a supported version,
    /// or they are damaged.
    #[error("not a valid feature transform file: {reason}")]
    Format {
        /// What was wrong (truncated, wrong magic, checksum mismatch, ...).
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Fitting cannot proceed with the data given.
    #[error("cannot fit the feature transform: {reason}")]
    Fit {
        /// What to change.
        reason: String,
    },
}

impl FeatureError {
    pub(crate) fn format(reason: impl Into<String>) -> Self {
        FeatureError::Format {
            reason: reason.into(),
        }
    }
}

/// First value of `values` that is not finite, as an error.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<(), FeatureError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(FeatureError::Value {
            what,
            index,
            value: values[index],
            reason: "must be finite",
        }),
    }
}

/// Length check, as an error naming the vector.
pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), FeatureError> {
    if expected == got {
        Ok(())
    } else {
        Err(FeatureError::Dimension {
            what,
            expected,
            got,
        })
    }
}
