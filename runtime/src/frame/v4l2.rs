//! A V4L2 camera (USB UVC webcams; Pi camera modules through libcamera's V4L2
//! compatibility layer) as a frame source.
//!
//! Format and size are negotiated from a preference list ([`super::negotiate`]),
//! frames arrive through mmap streaming with a per-frame timeout, are converted
//! to RGB8 in the caller's buffer ([`super::convert`]), and a camera that
//! disappears (unplugged, driver reset) is reopened with a bounded backoff.

use std::path::PathBuf;
use std::time::Duration;

use super::convert::PixelFormat;
use super::synthetic::check_side;
use crate::config_error::ConfigError;

/// Settings of the camera (`[source.camera]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CameraConfig {
    /// Video device (default `/dev/video0`).
    pub device: PathBuf,
    /// Requested width; the nearest offered size is used (default 640).
    pub width: u32,
    /// Requested height (default 480).
    pub height: u32,
    /// Requested frame rate; the driver may grant another, which is logged (default 30).
    pub fps: u32,
    /// Pixel formats in order of preference (default yuyv, mjpeg, rgb24: YUYV is the
    /// cheapest to convert on a Pi Zero class CPU; MJPEG suits cameras whose
    /// uncompressed modes are too slow over USB).
    pub formats: Vec<PixelFormat>,
    /// Longest wait for one frame, in milliseconds (default 2000).
    pub timeout_ms: u64,
    /// Driver buffers for mmap streaming (default 4).
    pub buffers: u32,
    /// Reopen attempts after the device disappears; 0 gives up at once (default 10).
    pub reopen_attempts: u32,
    /// First wait between reopen attempts in milliseconds, doubled each time up
    /// to 10 s (default 500).
    pub reopen_backoff_ms: u64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fps: 30,
            formats: vec![PixelFormat::Yuyv, PixelFormat::Mjpeg, PixelFormat::Rgb24],
            timeout_ms: 2000,
            buffers: 4,
            reopen_attempts: 10,
            reopen_backoff_ms: 500,
        }
    }
}

/// Longest wait between reopen attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl CameraConfig {
    /// Check every value; keys are reported as `source.camera.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.device.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "source.camera.device",
                "no device given",
                "set device = \"/dev/video0\"",
            ));
        }
        check_side("source.camera.width", self.width)?;
        check_side("source.camera.height", self.height)?;
        if !(1..=240).contains(&self.fps) {
            return Err(ConfigError::new(
                "source.camera.fps",
                format!("{} frames per second is outside 1..=240", self.fps),
                "use the camera's rate, e.g. 30",
            ));
        }
        if self.formats.is_empty() {
            return Err(ConfigError::new(
                "source.camera.formats",
                "no pixel format allowed",
                "list at least one of \"yuyv\", \"mjpeg\", \"rgb24\"",
            ));
        }
        if (1..self.formats.len()).any(|i| self.formats[..i].contains(&self.formats[i])) {
            return Err(ConfigError::new(
                "source.camera.formats",
                "a format is listed twice",
                "list each format once, most preferred first",
            ));
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                "source.camera.timeout-ms",
                format!("{} ms is outside 10..=60000", self.timeout_ms),
                "use e.g. 2000 (a few frame periods)",
            ));
        }
        if !(2..=32).contains(&self.buffers) {
            return Err(ConfigError::new(
                "source.camera.buffers",
                format!("{} buffers is outside 2..=32", self.buffers),
                "use 4",
            ));
        }
        if self.reopen_attempts > 1000 {
            return Err(ConfigError::new(
                "source.camera.reopen-attempts",
                format!("{} attempts is more than 1000", self.reopen_attempts),
                "use e.g. 10 (0 disables reopening)",
            ));
        }
        if !(10..=60_000).contains(&self.reopen_backoff_ms) {
            return Err(ConfigError::new(
                "source.camera.reopen-backoff-ms",
                format!("{} ms is outside 10..=60000", self.reopen_backoff_ms),
                "use e.g. 500",
            ));
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
pub use device::CameraSource;

#[cfg(target_os = "linux")]
mod device {
    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use v4l::buffer::{Flags as BufferFlags, Type};
    use v4l::capability::Flags;
    use v4l::framesize::FrameSizeEnum;
    use v4l::io::traits::CaptureStream;
    use v4l::prelude::{Device, MmapStream};
    use v4l::video::Capture;
    use v4l::video::capture::Parameters;
    use v4l::{Format, FourCC};

    use super::{CameraConfig, MAX_BACKOFF};
    use crate::frame::convert::{Layout, PixelFormat, to_frame};
    use crate::frame::negotiate::{FormatOffer, SizeOffer, choose};
    use crate::frame::{Frame, FrameError, FrameSource};

    /// An open, streaming device. Field order matters: the stream is dropped
    /// (streaming stopped, buffers unmapped) before the device is closed.
    struct Open {
        stream: MmapStream<'static>,
        _device: Device,
        format: PixelFormat,
        layout: Layout,
        describe: String,
    }

    /// A V4L2 capture device as a [`FrameSource`].
    pub struct CameraSource {
        cfg: CameraConfig,
        open: Option<Open>,
        sequence: u64,
        started: Instant,
        interrupts: Vec<Arc<AtomicBool>>,
    }

    /// Longest sleep between two looks at the interrupt flags during a back-off.
    const INTERRUPT_POLL: Duration = Duration::from_millis(50);

    /// Sleep for `span` unless one of `flags` is or becomes set; `false` when one is.
    fn sleep_unless(flags: &[Arc<AtomicBool>], span: Duration) -> bool {
        let until = Instant::now() + span;
        loop {
            if flags.iter().any(|f| f.load(Ordering::Relaxed)) {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(INTERRUPT_POLL));
        }
    }

    impl CameraSource {
        /// Open and configure the device; fails with [`FrameError::Open`] when it
        /// is missing, is not a capture device, or offers none of the formats.
        pub fn new(cfg: CameraConfig) -> Result<Self, FrameError> {
            cfg.validate().map_err(|e| FrameError::Open {
                what: cfg.device.display().to_string(),
                reason: e.to_string(),
            })?;
            let open = open_device(&cfg)?;
            Ok(CameraSource {
                cfg,
                open: Some(open),
                sequence: 0,
                started: Instant::now(),
                interrupts: Vec::new(),
            })
        }

        fn what(&self) -> String {
            self.cfg.device.display().to_string()
        }

        /// Try to open the device again, backing off between attempts.
        fn reopen(&mut self, cause: &str) -> Result<(), FrameError> {
            let mut backoff = Duration::from_millis(self.cfg.reopen_backoff_ms);
            let mut last = cause.to_string();
            for attempt in 1..=self.cfg.reopen_attempts {
                if !sleep_unless(&self.interrupts, backoff) {
                    tracing::info!(device = %self.what(), attempt, "camera reopen abandoned: stopping");
                    return Err(FrameError::Interrupted {
                        what: self.what(),
                        reason: format!("{cause}; reopening"),
                    });
                }
                match open_device(&self.cfg) {
                    Ok(open) => {
                        tracing::info!(device = %self.what(), attempt, "camera reopened: {}", open.describe);
                        self.open = Some(open);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(device = %self.what(), attempt, "camera reopen failed: {e}");
                        last = e.to_string();
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(FrameError::Disconnected {
                what: self.what(),
                reason: format!(
                    "{cause}; gave up after {} reopen attempts (last: {last})",
                    self.cfg.reopen_attempts
                ),
            })
        }
    }

    impl FrameSource for CameraSource {
        fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, FrameError> {
            loop {
                let Some(open) = self.open.as_mut() else {
                    return Err(FrameError::Disconnected {
                        what: self.cfg.device.display().to_string(),
                        reason: "device closed after an earlier failure".into(),
                    });
                };
                let Open {
                    stream,
                    format,
                    layout,
                    ..
                } = open;
                match stream.next() {
                    Ok((buf, meta)) => {
                        if meta.flags.contains(BufferFlags::ERROR) {
                            return Err(FrameError::Decode {
                                what: format!(
                                    "{} frame {}",
                                    self.cfg.device.display(),
                                    meta.sequence
                                ),
                                reason: "the driver marked the frame as corrupt".into(),
                            });
                        }
                        let used = match meta.bytesused as usize {
                            0 => buf.len(),
                            n => n.min(buf.len()),
                        };
                        to_frame(*format, *layout, &buf[..used], frame).map_err(|reason| {
                            FrameError::Decode {
                                what: format!(
                                    "{} frame {}",
                                    self.cfg.device.display(),
                                    meta.sequence
                                ),
                                reason,
                            }
                        })?;
                        frame.truth = None;
                        frame.sequence = self.sequence;
                        self.sequence += 1;
                        frame.timestamp = self.started.elapsed();
                        return Ok(true);
                    }
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(FrameError::Timeout {
                            what: self.what(),
                            timeout: Duration::from_millis(self.cfg.timeout_ms),
                        });
                    }
                    Err(e) => {
                        // ENODEV (unplugged), EIO (driver/USB reset) and friends: the
                        // stream is unusable; start over with a fresh open.
                        let cause = format!("capture failed: {e}");
                        tracing::warn!(device = %self.what(), "{cause}");
                        close(self.open.take(), &self.what());
                        if self.cfg.reopen_attempts == 0 {
                            return Err(FrameError::Disconnected {
                                what: self.what(),
                                reason: cause,
                            });
                        }
                        self.reopen(&cause)?;
                    }
                }
            }
        }

        fn describe(&self) -> String {
            match &self.open {
                Some(open) => open.describe.clone(),
                None => format!("v4l2 {} (closed)", self.cfg.device.display()),
            }
        }

        fn interrupt_on(&mut self, flag: Arc<AtomicBool>) {
            self.interrupts.push(flag);
        }
    }

    /// Close a stream that failed. The device file is closed before any reopen, so the
    /// driver can free the node and a re-plugged camera gets the same `/dev/videoN`.
    ///
    /// v4l's stream and buffer destructors panic when stopping fails with anything but
    /// ENODEV (e.g. EIO from a USB reset); a camera's failure must not end the process, so
    /// such a panic is caught here and logged.
    fn close(open: Option<Open>, what: &str) {
        if let Some(open) = open {
            let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(open)));
            if closed.is_err() {
                tracing::warn!(device = %what, "the failed stream could not be stopped cleanly");
            }
        }
    }

    /// Open the device, negotiate format, size and rate, start mmap streaming.
    fn open_device(cfg: &CameraConfig) -> Result<Open, FrameError> {
        let what = cfg.device.display().to_string();
        let open_err = |reason: String| FrameError::Open {
            what: what.clone(),
            reason,
        };
        let device = Device::with_path(&cfg.device).map_err(|e| open_err(e.to_string()))?;
        let caps = device
            .query_caps()
            .map_err(|e| open_err(format!("not a V4L2 device: {e}")))?;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(Flags::STREAMING)
        {
            return Err(open_err(format!(
                "{} ({}) is not a streaming video capture device",
                caps.card, caps.driver
            )));
        }
        let descriptions = device
            .enum_formats()
            .map_err(|e| open_err(format!("cannot list formats: {e}")))?;
        let mut offers = Vec::new();
        let mut others = Vec::new();
        for d in &descriptions {
            match PixelFormat::from_fourcc(d.fourcc.repr) {
                Some(format) => offers.push(FormatOffer {
                    format,
                    sizes: sizes_of(&device, d.fourcc),
                }),
                None => others.push(d.fourcc.to_string()),
            }
        }
        let choice = choose(&offers, &cfg.formats, (cfg.width, cfg.height)).map_err(|e| {
            let hint = if others.iter().any(|o| is_bayer(o)) {
                ". The device offers raw Bayer only: for a Pi camera module run the runtime \
                 under libcamera's V4L2 compatibility layer (libcamerify / v4l2-compat.so)"
            } else {
                ""
            };
            open_err(format!(
                "{e}; other formats offered: [{}]{hint}",
                others.join(", ")
            ))
        })?;
        let want = Format::new(
            choice.width,
            choice.height,
            FourCC::new(&choice.format.fourcc()),
        );
        let granted = device.set_format(&want).map_err(|e| {
            open_err(format!(
                "cannot set format {} {}x{}: {e}",
                choice.format, choice.width, choice.height
            ))
        })?;
        let format = PixelFormat::from_fourcc(granted.fourcc.repr).ok_or_else(|| {
            open_err(format!(
                "driver switched to unsupported format {}",
                granted.fourcc
            ))
        })?;
        let bpp = format.bytes_per_pixel().unwrap_or(0);
        let row = granted.width as usize * bpp;
        let layout = Layout {
            width: granted.width,
            height: granted.height,
            stride: (granted.stride as usize).max(row),
        };
        if granted.width == 0 || granted.height == 0 {
            return Err(open_err(format!(
                "driver granted an empty size {}x{}",
                granted.width, granted.height
            )));
        }
        let fps = match device.set_params(&Parameters::with_fps(cfg.fps)) {
            Ok(p) if p.interval.numerator > 0 => {
                f64::from(p.interval.denominator) / f64::from(p.interval.numerator)
            }
            Ok(_) => f64::NAN,
            Err(e) => {
                tracing::warn!(device = %what, "cannot set frame rate {}: {e}", cfg.fps);
                f64::NAN
            }
        };
        tracing::info!(
            device = %what,
            card = %caps.card,
            "camera: requested {} {}x{} @ {} fps, granted {} {}x{} @ {:.1} fps",
            choice.format, cfg.width, cfg.height, cfg.fps,
            format, granted.width, granted.height, fps
        );
        let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, cfg.buffers)
            .map_err(|e| open_err(format!("cannot map capture buffers: {e}")))?;
        stream.set_timeout(Duration::from_millis(cfg.timeout_ms));
        Ok(Open {
            stream,
            _device: device,
            format,
            layout,
            describe: format!(
                "v4l2 {what} ({}) {}x{} {format} @ {fps:.1} fps",
                caps.card, granted.width, granted.height
            ),
        })
    }

    /// The sizes the device offers for `fourcc` (empty if it does not say).
    fn sizes_of(device: &Device, fourcc: FourCC) -> Vec<SizeOffer> {
        let Ok(sizes) = device.enum_framesizes(fourcc) else {
            return Vec::new();
        };
        sizes
            .into_iter()
            .take(256)
            .map(|s| match s.size {
                FrameSizeEnum::Discrete(d) => SizeOffer::Discrete {
                    width: d.width,
                    height: d.height,
                },
                FrameSizeEnum::Stepwise(s) => SizeOffer::Stepwise {
                    min_width: s.min_width,
                    max_width: s.max_width,
                    step_width: s.step_width,
                    min_height: s.min_height,
                    max_height: s.max_height,
                    step_height: s.step_height,
                },
            })
            .collect()
    }

    /// Raw Bayer four-character codes (what a Pi camera's unicam node offers).
    fn is_bayer(code: &str) -> bool {
        matches!(
            code.get(..2),
            Some("BA" | "BG" | "GB" | "GR" | "RG" | "pB" | "pG" | "pR" | "pg" | "pb" | "pr")
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_back_off_sleep_ends_early_once_a_flag_is_set() {
            let flag = Arc::new(AtomicBool::new(false));
            let flags = [Arc::clone(&flag)];
            let start = Instant::now();
            assert!(sleep_unless(&flags, Duration::from_millis(120)));
            assert!(start.elapsed() >= Duration::from_millis(120));
            let setter = {
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    flag.store(true, Ordering::Relaxed);
                })
            };
            let start = Instant::now();
            assert!(!sleep_unless(&flags, Duration::from_secs(60)));
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{:?}",
                start.elapsed()
            );
            setter.join().unwrap();
            assert!(!sleep_unless(&flags, Duration::from_secs(60)));
            assert!(sleep_unless(&[], Duration::ZERO));
        }
    }
}
