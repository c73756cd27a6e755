//! The `[autonomy]` section: what the runtime does with each prediction after the model.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// Which prediction the runtime reports (and counts, and syncs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classifier {
    /// The KNN on the model's embedding: it learns on the device (feedback, adaptation).
    #[default]
    Knn,
    /// The model's own top class; the KNN still runs for the drift detectors.
    Model,
}

/// `[autonomy]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AutonomyConfig {
    /// Run features, KNN and drift detectors after the model (default true).
    pub enabled: bool,
    /// Which prediction is reported: `knn` (default) or `model`.
    pub classifier: Classifier,
    /// A frame whose mean k-NN distance exceeds the reference mean by this many reference σ
    /// is quarantined as far from everything known, even without an open incident (default 6).
    pub far_sigma: f64,
    /// An incident closes after this many frames with no detector in drift (default 60).
    pub incident_quiet_frames: u32,
    /// KNN and detector states are written to the state store at most this often, seconds
    /// (default 10; events are written as they happen).
    pub checkpoint_seconds: u64,
}

impl Default for AutonomyConfig {
    fn default() -> Self {
        AutonomyConfig {
            enabled: true,
            classifier: Classifier::Knn,
            far_sigma: 6.0,
            incident_quiet_frames: 60,
            checkpoint_seconds: 10,
        }
    }
}

impl AutonomyConfig {
    /// Check values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.far_sigma.is_finite() && self.far_sigma > 0.0 && self.far_sigma <= 1000.0) {
            return Err(ConfigError::new(
                "autonomy.far-sigma",
                format!("{} is out of range", self.far_sigma),
                "use a positive number of reference σ up to 1000, e.g. 6",
            ));
        }
        if self.incident_quiet_frames == 0 || self.incident_quiet_frames > 1_000_000 {
            return Err(ConfigError::new(
                "autonomy.incident-quiet-frames",
                format!("{} is out of range", self.incident_quiet_frames),
                "use 1..=1000000 frames, e.g. 60",
            ));
        }
        if self.checkpoint_seconds == 0 || self.checkpoint_seconds > 86_400 {
            return Err(ConfigError::new(
                "autonomy.checkpoint-seconds",
                format!("{} is out of range", self.checkpoint_seconds),
                "use 1..=86400 seconds, e.g. 10",
            ));
        }
        Ok(())
    }
}
