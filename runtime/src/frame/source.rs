//! Choosing and opening a frame source from configuration (`[source]`).

use super::replay::{DirectoryConfig, DirectorySource};
use super::synthetic::{SyntheticConfig, SyntheticSource};
use super::v4l2::CameraConfig;
use super::{FrameError, FrameSource};
use crate::config_error::ConfigError;

/// Which kind of source delivers frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The deterministic synthetic scene (`[source.synthetic]`), the default.
    #[default]
    Synthetic,
    /// A V4L2 camera (`[source.camera]`).
    Camera,
    /// Images replayed from a directory (`[source.directory]`).
    Directory,
}

/// The `[source]` section: the kind, and settings for each kind (only the
/// selected kind's section is used and validated).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// `synthetic` (default), `camera` or `directory`.
    pub kind: SourceKind,
    /// Settings of the synthetic scene.
    pub synthetic: SyntheticConfig,
    /// Settings of the camera.
    pub camera: CameraConfig,
    /// Settings of directory replay.
    pub directory: DirectoryConfig,
}

impl SourceConfig {
    /// Validate the section of the selected kind.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.kind {
            SourceKind::Synthetic => self.synthetic.validate(),
            SourceKind::Camera => self.camera.validate(),
            SourceKind::Directory => self.directory.validate(),
        }
    }
}

/// Open the source `cfg` selects.
pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, FrameError> {
    let source: Box<dyn FrameSource> = match cfg.kind {
        SourceKind::Synthetic => Box::new(SyntheticSource::new(cfg.synthetic.clone())?),
        SourceKind::Directory => Box::new(DirectorySource::new(cfg.directory.clone())?),
        SourceKind::Camera => open_camera(&cfg.camera)?,
    };
    tracing::info!("frame source: {}", source.describe());
    Ok(source)
}

#[cfg(target_os = "linux")]
fn open_camera(cfg: &CameraConfig) -> Result<Box<dyn FrameSource>, FrameError> {
    Ok(Box::new(super::v4l2::CameraSource::new(cfg.clone())?))
}

#[cfg(not(target_os = "linux"))]
fn open_camera(cfg: &CameraConfig) -> Result<Box<dyn FrameSource>, FrameError> {
    Err(FrameError::Open {
        what: cfg.device.display().to_string(),
        reason: "V4L2 cameras are supported on Linux only".into(),
    })
}
