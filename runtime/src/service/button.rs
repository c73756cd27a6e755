//! The button (`[board] button-pin`): the one input a person at the device has.
//!
//! A field user at the camera sees the LED blink "degraded" after a change they know is
//! normal (new lighting, a moved shelf). Holding the button for [`LONG_PRESS`] marks the open
//! drift incident as a false alarm, exactly as `tinylcm feedback --incident N
//! --false-alarm` would: a verdict file in the feedback inbox, applied by the autonomy layer
//! between frames and synced to the server like any other verdict. A short press does
//! nothing (a bumped button must not dismiss a real drift), and one hold acts once.
//!
//! The button is read once per frame on the inference thread (one `ioctl`, no thread of
//! its own): a hold is seen as long as frames run, which is when there is an incident to mark.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::autonomy::feedback::{DriftVerdict, FeedbackFile, Submit as _, Verdict};
use crate::board::Button;
use crate::pipeline::runner::{FrameReport, Observer};

/// How long the button must be held to mark the open incident as a false alarm.
pub const LONG_PRESS: Duration = Duration::from_secs(2);

/// Reads the button every frame and acts on a long press.
pub struct ButtonObserver {
    button: Box<dyn Button>,
    inbox: PathBuf,
    pressed_since: Option<Instant>,
    acted: bool,
    failing: bool,
}

impl ButtonObserver {
    /// Watch `button`; verdicts go into the feedback `inbox`.
    pub fn new(button: Box<dyn Button>, inbox: PathBuf) -> Self {
        ButtonObserver {
            button,
            inbox,
            pressed_since: None,
            acted: false,
            failing: false,
        }
    }

    /// Send verdicts to `inbox` from now on (the state folder may change with a reload).
    pub fn set_inbox(&mut self, inbox: PathBuf) {
        self.inbox = inbox;
    }

    /// Take one reading at `now`; `open_incident` is the incident a long press marks.
    /// Returns the verdict file written, if this reading completed a long press.
    pub fn poll(&mut self, now: Instant, open_incident: Option<u64>) -> Option<PathBuf> {
        let pressed = match self.button.is_pressed() {
            Ok(p) => {
                self.failing = false;
                p
            }
            Err(e) => {
                // Logged once per run of failures: a broken button must not flood the log.
                if !self.failing {
                    tracing::warn!("button: {e}");
                    self.failing = true;
                }
                false
            }
        };
        if !pressed {
            if let (Some(since), false) = (self.pressed_since.take(), self.acted) {
                tracing::info!(
                    "button released after {:.1} s: hold it {} s to mark the open incident as a false alarm",
                    now.saturating_duration_since(since).as_secs_f64(),
                    LONG_PRESS.as_secs()
                );
            }
            self.acted = false;
            return None;
        }
        let since = *self.pressed_since.get_or_insert_with(|| {
            tracing::info!("button pressed");
            now
        });
        if self.acted || now.saturating_duration_since(since) < LONG_PRESS {
            return None;
        }
        self.acted = true;
        let Some(incident) = open_incident else {
            tracing::info!(
                "button held {} s: no drift incident is open, nothing to mark",
                LONG_PRESS.as_secs()
            );
            return None;
        };
        let verdict = FeedbackFile {
            drift: vec![DriftVerdict {
                incident: Some(incident),
                event: None,
                verdict: Verdict::FalseAlarm,
            }],
            ..FeedbackFile::default()
        };
        match verdict.submit(&self.inbox) {
            Ok(path) => {
                tracing::info!(
                    "button held {} s: incident {incident} marked as a false alarm ({})",
                    LONG_PRESS.as_secs(),
                    path.display()
                );
                Some(path)
            }
            Err(e) => {
                tracing::warn!("button held: cannot mark incident {incident}: {e}");
                None
            }
        }
    }
}

impl Observer for ButtonObserver {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let incident = report
            .autonomy
            .and_then(|a| a.open_incident())
            .map(|i| i.id);
        self.poll(Instant::now(), incident);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardError;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A button the test presses (the unit under test is the press logic, not GPIO).
    struct Held(Arc<AtomicBool>);

    impl Button for Held {
        fn is_pressed(&mut self) -> Result<bool, BoardError> {
            Ok(self.0.load(Ordering::Relaxed))
        }
    }

    #[test]
    fn a_long_press_marks_the_open_incident_once_and_a_short_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        let held = Arc::new(AtomicBool::new(false));
        let mut b = ButtonObserver::new(Box::new(Held(Arc::clone(&held))), inbox.clone());
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);

        // Short press: nothing written.
        held.store(true, Ordering::Relaxed);
        assert_eq!(b.poll(at(0), Some(3)), None);
        assert_eq!(b.poll(at(1500), Some(3)), None);
        held.store(false, Ordering::Relaxed);
        assert_eq!(b.poll(at(1600), Some(3)), None);
        assert!(!inbox.exists());

        // Long press: one verdict for the open incident, however long it is held.
        held.store(true, Ordering::Relaxed);
        assert_eq!(b.poll(at(2000), Some(3)), None);
        let path = b.poll(at(4000), Some(3)).expect("a verdict");
        assert_eq!(b.poll(at(9000), Some(3)), None);
        let text = std::fs::read_to_string(&path).unwrap();
        let file = FeedbackFile::parse(&path, &text).unwrap();
        assert_eq!(
            file.drift,
            vec![DriftVerdict {
                incident: Some(3),
                event: None,
                verdict: Verdict::FalseAlarm
            }]
        );

        // Released and held again without an open incident: nothing to mark.
        held.store(false, Ordering::Relaxed);
        b.poll(at(9100), None);
        held.store(true, Ordering::Relaxed);
        b.poll(at(9200), None);
        assert_eq!(b.poll(at(12000), None), None);
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 1);
    }
}
