//! Where frames come from: a V4L2 camera, a directory of images, or a
//! deterministic synthetic scene.
//!
//! Every source fills a caller-owned [`Frame`] so that the steady state of the
//! capture loop allocates nothing.

pub mod convert;
pub mod decode;
pub mod negotiate;
pub mod pace;
pub mod replay;
mod source;
pub mod synthetic;
pub mod v4l2;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use convert::PixelFormat;
pub use replay::{DirectoryConfig, DirectorySource, OnError};
pub use source::{SourceConfig, SourceKind, open};
pub use synthetic::{Phase, SceneClass, SyntheticConfig, SyntheticSource};
pub use v4l2::CameraConfig;
#[cfg(target_os = "linux")]
pub use v4l2::CameraSource;

/// One RGB8 image (packed, row-major, 3 bytes per pixel) plus what is known about it.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R, G, B.
    pub data: Vec<u8>,
    /// Sequence number assigned by the source, starting at 0.
    pub sequence: u64,
    /// Capture time relative to the source's start.
    pub timestamp: Duration,
    /// Ground truth, when the source knows it (synthetic scenes, labelled folders).
    pub truth: Option<Truth>,
}

impl Frame {
    /// Resize the buffer for `width` x `height` RGB8, reusing its allocation.
    pub fn reshape(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(width as usize * height as usize * 3, 0);
    }

    /// Set [`Frame::truth`], reusing the strings already there (no allocation
    /// once their capacity suffices).
    pub fn set_truth(&mut self, label: Option<&str>, phase: Option<&str>) {
        fn put(slot: &mut Option<String>, value: Option<&str>) {
            match (slot.as_mut(), value) {
                (Some(s), Some(v)) => {
                    s.clear();
                    s.push_str(v);
                }
                (None, Some(v)) => *slot = Some(v.to_owned()),
                (_, None) => *slot = None,
            }
        }
        let truth = self.truth.get_or_insert(Truth {
            label: None,
            phase: None,
        });
        put(&mut truth.label, label);
        put(&mut truth.phase, phase);
    }
}

/// What a source knows about the content of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    /// Class shown in the frame (e.g. "ball"), if any.
    pub label: Option<String>,
    /// Scenario phase (e.g. "normal", "lighting"), if the source has phases.
    pub phase: Option<String>,
}

/// Failures of a frame source.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The device or directory could not be opened or read.
    #[error("cannot open {what}: {reason}")]
    Open {
        /// Device path or directory.
        what: String,
        /// What the OS or decoder said.
        reason: String,
    },
    /// A frame did not arrive in time.
    #[error("{what}: no frame within {timeout:?}")]
    Timeout {
        /// Device path.
        what: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// A frame or image could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// File name or device path.
        what: String,
        /// Why.
        reason: String,
    },
    /// The device disappeared; a reopen may help.
    #[error("{what} disconnected: {reason}")]
    Disconnected {
        /// Device path.
        what: String,
        /// Why.
        reason: String,
    },
    /// A wait inside the source (a camera's reopen back-off) was cut short because the
    /// process is asked to stop.
    #[error("{what}: {reason}; stopped while waiting")]
    Interrupted {
        /// Device path.
        what: String,
        /// What the source was waiting for.
        reason: String,
    },
}

/// A stream of frames.
pub trait FrameSource: Send {
    /// Fill `frame` with the next frame, reusing its buffer.
    ///
    /// Returns `Ok(false)` when a finite source has no more frames.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, FrameError>;

    /// One line for logs: what this source is (e.g. "v4l2 /dev/video0 640x480 MJPEG").
    fn describe(&self) -> String;

    /// Cut long waits inside the source short once `flag` is set: a camera's reopen back-off
    /// lasts up to a minute, longer than systemd waits for a stop. The source then fails
    /// with [`FrameError::Interrupted`]. Sources without such waits ignore it.
    fn interrupt_on(&mut self, flag: Arc<AtomicBool>) {
        let _ = flag;
    }
}
