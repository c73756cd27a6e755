//! The live progress line of `demo`, `run` and `replay`.
//!
//! Redrawn at most five times a second so that terminal output never slows
//! the inference loop; when stderr is not a terminal it stays silent and the
//! summary at the end tells the story.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tinylcm::pipeline::runner::{FrameReport, Observer};
use tinylcm::stats::Stage;

/// Minimum time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// Observer that keeps one status line up to date.
pub struct ProgressLine {
    bar: ProgressBar,
    last_draw: Option<Instant>,
}

impl ProgressLine {
    /// A progress line on stderr (hidden when stderr is not a terminal).
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        ProgressLine {
            bar,
            last_draw: None,
        }
    }

    /// Remove the line before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for ProgressLine {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(now);
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        let ms = |stage| report.latencies.percentiles(stage).mean_us / 1000.0;
        let phase = report
            .truth
            .and_then(|t| t.phase.as_deref())
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        let drift = report
            .autonomy
            .map(|a| {
                let open = a
                    .open_incident()
                    .map(|i| format!(" (open: #{} {})", i.id, i.first.detector))
                    .unwrap_or_default();
                format!("  incidents {}{open}", a.counts().incidents)
            })
            .unwrap_or_default();
        self.bar.set_message(format!(
            "{frames} frames{phase}  {fps:.1} fps  capture {c:.2} ms  preprocess {p:.2} ms  invoke {i:.2} ms  autonomy {a:.3} ms  top: {label} {conf:.0}%{drift}",
            frames = report.frames,
            fps = report.frames as f64 / secs,
            c = ms(Stage::Capture),
            p = ms(Stage::Preprocess),
            i = ms(Stage::Invoke),
            a = ms(Stage::Autonomy),
            label = report.label,
            conf = report.prediction.confidence * 100.0,
        ));
        self.bar.tick();
    }
}
