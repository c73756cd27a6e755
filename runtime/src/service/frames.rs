//! Small per-frame duties of the service that do not belong to the pipeline: passing signals
//! on to [`Control`], sampling prediction images for sphere-lite's Data Hub, and showing on
//! the status LED that frames run.
//!
//! Both run on the inference thread, so both are a few atomic loads per frame in the steady
//! state; the image work happens only when the sampler wants a class (at most one frame per
//! class per `[sync] prediction-interval-seconds`).

use std::sync::Arc;

use super::control::Control;
use crate::board::{LedState, StatusLed};
use crate::pipeline::runner::{FrameReport, Observer};
use crate::quarantine::thumbnails::scale::downscale;
use crate::signals::Signals;
use crate::sync::PredictionSampler;

/// Longest side of a prediction sample image, in pixels.
pub const SAMPLE_SIZE: u32 = 160;
/// JPEG quality of prediction samples.
const SAMPLE_QUALITY: u8 = 80;

/// Turns SIGTERM/SIGINT into a stop and SIGHUP into a reload of the service.
pub struct SignalForwarder {
    signals: Signals,
    control: Arc<Control>,
}

impl SignalForwarder {
    /// Forward `signals` to `control`.
    pub fn new(signals: Signals, control: Arc<Control>) -> Self {
        SignalForwarder { signals, control }
    }

    /// The flag a stop signal sets at once (forwarding happens per frame, and a source
    /// waiting for its camera delivers none).
    pub fn stop_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.signals.stop_flag()
    }

    /// Forward what arrived (also called between generations).
    pub fn forward(&self) {
        if self.signals.stop_requested() && !self.control.stopping() {
            self.control.request_stop();
        }
        if self.signals.take_reload() {
            self.control.request_reload("SIGHUP");
        }
    }
}

impl Observer for SignalForwarder {
    fn on_frame(&mut self, _report: &FrameReport<'_>) {
        self.forward();
    }
}

/// Offers a small JPEG of a frame to the sync client's prediction sampler now and then.
pub struct PredictionFeeder {
    sampler: PredictionSampler,
    rgb: Vec<u8>,
}

impl PredictionFeeder {
    /// Feed `sampler`.
    pub fn new(sampler: PredictionSampler) -> Self {
        PredictionFeeder {
            sampler,
            rgb: Vec::new(),
        }
    }

    fn jpeg(&mut self, report: &FrameReport<'_>) -> Option<Vec<u8>> {
        let image = report.image;
        let (w, h) = downscale(
            &image.data,
            image.width,
            image.height,
            SAMPLE_SIZE,
            &mut self.rgb,
        )?;
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, SAMPLE_QUALITY)
            .encode(&self.rgb, w, h, image::ExtendedColorType::Rgb8)
            .ok()?;
        Some(out)
    }
}

impl Observer for PredictionFeeder {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let now = crate::utc::now_unix_ms();
        if !self.sampler.wants(report.label, now) {
            return;
        }
        if let Some(jpeg) = self.jpeg(report) {
            self.sampler
                .offer(report.label, report.prediction.confidence, now, jpeg);
        }
    }
}

/// The status LED as the service drives it: starting while a generation is built, running
/// once frames go through the model, error when the service fails.
pub struct LedObserver {
    led: Box<dyn StatusLed>,
    shown: Option<LedState>,
}

impl LedObserver {
    /// Drive `led`.
    pub fn new(led: Box<dyn StatusLed>) -> Self {
        LedObserver { led, shown: None }
    }

    /// Show `state` (a failing LED is logged once per state, never an error of the service).
    pub fn show(&mut self, state: LedState) {
        if self.shown == Some(state) {
            return;
        }
        self.shown = Some(state);
        if let Err(e) = self.led.set(state) {
            tracing::warn!("status LED: {e}");
        }
    }
}

impl Observer for LedObserver {
    fn on_frame(&mut self, _report: &FrameReport<'_>) {
        // One comparison per frame: `show` returns at once when nothing changes.
        self.show(LedState::Running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardError;
    use std::sync::Mutex;

    /// An LED that records what it was asked to show.
    struct Recorder(Arc<Mutex<Vec<LedState>>>);

    impl StatusLed for Recorder {
        fn set(&mut self, state: LedState) -> Result<(), BoardError> {
            self.0.lock().unwrap().push(state);
            Ok(())
        }
    }

    #[test]
    fn the_led_changes_only_when_the_state_does() {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut led = LedObserver::new(Box::new(Recorder(Arc::clone(&shown))));
        led.show(LedState::Starting);
        led.show(LedState::Starting);
        led.show(LedState::Running);
        led.show(LedState::Running);
        led.show(LedState::Error);
        assert_eq!(
            *shown.lock().unwrap(),
            vec![LedState::Starting, LedState::Running, LedState::Error]
        );
    }
}
