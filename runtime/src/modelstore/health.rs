//! The health window of a model on trial: the service feeds it one call per frame and it
//! says when the model has earned its commit, or why it must be rolled back.
//!
//! Without labels the runtime cannot measure accuracy, so the window uses label-free proxies:
//! every frame must produce finite outputs (`ok`), and the mean top-class confidence must not
//! collapse against the committed model's (recorded when that one was committed). Crashes are
//! not seen here: they show as service starts without a commit (`ModelStore::boot`).

/// What the window says after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep watching.
    Pending,
    /// The trial passed: call `ModelStore::commit` with [`HealthWindow::summary`].
    Commit,
    /// The trial failed for this reason: call `ModelStore::rollback`.
    Rollback(String),
}

/// What the window measured, stored with the commit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSummary {
    /// Frames seen.
    pub frames: u64,
    /// Mean top-class confidence over the frames that reported one.
    pub mean_confidence: Option<f32>,
}

/// Per-frame health accounting of a trial (no allocation after construction).
#[derive(Debug, Clone)]
pub struct HealthWindow {
    frames_needed: u64,
    baseline: Option<f32>,
    min_ratio: f32,
    frames: u64,
    confidence_sum: f64,
    confidence_count: u64,
    decided: Option<Verdict>,
}

impl HealthWindow {
    /// A window of `frames_needed` frames; `baseline` is the committed model's mean
    /// confidence (none: only finiteness is checked), `min_ratio` the share of it required.
    pub fn new(frames_needed: u64, baseline: Option<f32>, min_ratio: f32) -> Self {
        HealthWindow {
            frames_needed: frames_needed.max(1),
            baseline: baseline.filter(|b| b.is_finite() && *b > 0.0),
            min_ratio,
            frames: 0,
            confidence_sum: 0.0,
            confidence_count: 0,
            decided: None,
        }
    }

    /// Accounts one frame: `ok` is false when the model failed or gave non-finite outputs;
    /// `confidence` is the top-class score. Once decided, the verdict stays.
    pub fn on_frame(&mut self, ok: bool, confidence: Option<f32>) -> Verdict {
        if let Some(v) = &self.decided {
            return v.clone();
        }
        self.frames += 1;
        let confidence_ok = confidence.is_none_or(f32::is_finite);
        if !ok || !confidence_ok {
            return self.decide(Verdict::Rollback(format!(
                "frame {} of the health window failed or gave non-finite outputs",
                self.frames
            )));
        }
        if let Some(c) = confidence {
            self.confidence_sum += f64::from(c);
            self.confidence_count += 1;
        }
        if self.frames < self.frames_needed {
            return Verdict::Pending;
        }
        let verdict = match (self.summary().mean_confidence, self.baseline) {
            (Some(mean), Some(base)) if mean < base * self.min_ratio => Verdict::Rollback(format!(
                "mean confidence {mean:.3} over {} frames collapsed below {:.0} % of the committed \
                 model's {base:.3}",
                self.frames,
                self.min_ratio * 100.0
            )),
            _ => Verdict::Commit,
        };
        self.decide(verdict)
    }

    fn decide(&mut self, verdict: Verdict) -> Verdict {
        self.decided = Some(verdict.clone());
        verdict
    }

    /// What was measured so far.
    pub fn summary(&self) -> HealthSummary {
        HealthSummary {
            frames: self.frames,
            mean_confidence: (self.confidence_count > 0)
                .then(|| (self.confidence_sum / self.confidence_count as f64) as f32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_after_the_window_when_confidence_holds() {
        let mut w = HealthWindow::new(3, Some(0.8), 0.5);
        assert_eq!(w.on_frame(true, Some(0.7)), Verdict::Pending);
        assert_eq!(w.on_frame(true, Some(0.7)), Verdict::Pending);
        assert_eq!(w.on_frame(true, Some(0.7)), Verdict::Commit);
        assert_eq!(w.summary().frames, 3);
        assert!((w.summary().mean_confidence.unwrap() - 0.7).abs() < 1e-6);
    }

    #[test]
    fn rolls_back_on_a_failed_frame_or_collapsed_confidence() {
        let mut w = HealthWindow::new(10, None, 0.5);
        w.on_frame(true, Some(0.9));
        assert!(matches!(w.on_frame(false, None), Verdict::Rollback(_)));
        // Decided: stays rolled back.
        assert!(matches!(w.on_frame(true, Some(0.9)), Verdict::Rollback(_)));

        let mut w = HealthWindow::new(2, Some(0.9), 0.5);
        w.on_frame(true, Some(0.3));
        let Verdict::Rollback(why) = w.on_frame(true, Some(0.3)) else {
            panic!("collapsed confidence must roll back");
        };
        assert!(why.contains("collapsed"), "{why}");

        let mut w = HealthWindow::new(2, None, 0.5);
        assert!(matches!(
            w.on_frame(true, Some(f32::NAN)),
            Verdict::Rollback(_)
        ));
    }
}
