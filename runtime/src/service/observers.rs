//! Everything that watches a generation's frames, as one named list.
//!
//! The service used to hand the run loop a tuple nested four deep; a named field per
//! observer says what each one is, and adding one is a field and a line in
//! [`Observer::on_frame`] rather than a new level of parentheses. The order of the calls is
//! the order of the fields: the caller's observer first, the watchdog last.

use super::{
    ButtonObserver, HealthObserver, LedObserver, PredictionFeeder, ServiceObserver, SignalForwarder,
};
use crate::pipeline::runner::{FrameReport, Observer};
use crate::status::StatusObserver;
use crate::systemd::WatchdogObserver;

/// The observers of one generation; the ones switched off (by configuration, or missing
/// hardware) are `None`.
pub(super) struct Observers<'a> {
    /// The caller's own observer (`tinylcm run`'s foreground output, a test's probe).
    pub caller: &'a mut dyn ServiceObserver,
    /// The status report.
    pub status: Option<&'a mut StatusObserver>,
    /// The health watch of a freshly installed model.
    pub health: Option<&'a mut HealthObserver>,
    /// Forwards a stop signal to the loop.
    pub signals: Option<&'a mut SignalForwarder>,
    /// The status LED.
    pub led: Option<&'a mut LedObserver>,
    /// The feedback button.
    pub button: Option<&'a mut ButtonObserver>,
    /// Predictions for the sync client.
    pub feeder: Option<&'a mut PredictionFeeder>,
    /// The systemd watchdog.
    pub watchdog: Option<&'a mut WatchdogObserver>,
}

impl Observer for Observers<'_> {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.caller.on_frame(report);
        self.status.on_frame(report);
        self.health.on_frame(report);
        self.signals.on_frame(report);
        self.led.on_frame(report);
        self.button.on_frame(report);
        self.feeder.on_frame(report);
        self.watchdog.on_frame(report);
    }
}
