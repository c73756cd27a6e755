//! Errors of the drift module.

use crate::config_error::ConfigError;

use super::DetectorKind;

/// Why a reference or a saved state was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// The state was written by another version of this module.
    #[error(
        "drift state of `{detector}` has version {found}, this build reads version {expected}; \
         delete the state to relearn the reference"
    )]
    Version {
        /// Detector name.
        detector: &'static str,
        /// Version found in the state.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
    /// A state belongs to a different detector.
    #[error("drift state is for `{found}`, not `{expected}`")]
    Kind {
        /// The detector the state was saved from.
        found: DetectorKind,
        /// The detector asked to load it.
        expected: DetectorKind,
    },
    /// The state is inconsistent (corrupt, or from a configuration it cannot serve).
    #[error(
        "drift state of `{detector}` is invalid: {problem}; delete it to relearn the reference"
    )]
    Invalid {
        /// Detector name.
        detector: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// An injected reference cannot be used.
    #[error("reference for `{detector}` is invalid: {problem}")]
    Reference {
        /// Detector name.
        detector: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The saved set does not match the configured detectors.
    #[error("drift state lists {found} detectors, the configuration {expected}")]
    SetMismatch {
        /// Detectors in the state.
        found: usize,
        /// Detectors configured.
        expected: usize,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Shorthand for [`DriftError::Invalid`].
pub(crate) fn invalid(detector: &'static str, problem: impl Into<String>) -> DriftError {
    DriftError::Invalid {
        detector,
        problem: problem.into(),
    }
}

/// Check that every value is finite.
pub(crate) fn check_finite(
    detector: &'static str,
    what: &str,
    values: impl IntoIterator<Item = f64>,
) -> Result<(), DriftError> {
    if values.into_iter().all(f64::is_finite) {
        Ok(())
    } else {
        Err(invalid(detector, format!("{what} is not finite")))
    }
}
