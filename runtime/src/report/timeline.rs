//! The data a report draws, collected frame by frame with bounded memory.

use crate::autonomy::{Change, Note};
use crate::pipeline::runner::{FrameReport, Observer};

/// Most frame points kept; past this the timeline keeps every other point
/// (and then every fourth, ...), so a run of any length fits in fixed memory.
pub const MAX_POINTS: usize = 20_000;

/// One frame's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramePoint {
    /// Frame number in the run (1-based, as counted by the loop).
    pub index: u64,
    /// Top-class confidence.
    pub confidence: f32,
    /// Top-class index into [`Timeline::labels`].
    pub class: usize,
}

/// A stretch of frames in one scenario phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    /// Phase name.
    pub phase: String,
    /// First frame index.
    pub start: u64,
    /// Last frame index.
    pub end: u64,
}

/// One drift detector's statistic and threshold over time.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorTrace {
    /// Detector name.
    pub name: String,
    /// (frame index, statistic, threshold).
    pub points: Vec<(u64, f64, f64)>,
}

/// Something worth a vertical marker: a drift onset, an adaptation, a rollback.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMark {
    /// Frame index.
    pub index: u64,
    /// What it marks (sets colour and whether the label is drawn).
    pub kind: MarkKind,
    /// Short text, e.g. the detector that fired.
    pub label: String,
}

/// The kinds of marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// An incident opened.
    Drift,
    /// An incident closed.
    Closed,
    /// An adaptation changed the KNN.
    Adapted,
    /// The guard kept an adaptation.
    Kept,
    /// The guard rolled an adaptation back.
    RolledBack,
}

/// Everything a report shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Class labels in score order.
    pub labels: Vec<String>,
    /// Frame outcomes (decimated past [`MAX_POINTS`]).
    pub frames: Vec<FramePoint>,
    /// Scenario phases, in order.
    pub phases: Vec<PhaseSpan>,
    /// Drift detector traces.
    pub detectors: Vec<DetectorTrace>,
    /// Events to mark.
    pub events: Vec<EventMark>,
    /// Keep one frame in `stride` (doubles each time the buffer fills).
    stride: u64,
}

impl Timeline {
    /// An empty timeline for a model with these labels.
    pub fn new(labels: Vec<String>) -> Self {
        Timeline {
            labels,
            stride: 1,
            ..Timeline::default()
        }
    }

    /// Record one frame.
    pub fn record(&mut self, index: u64, confidence: f32, class: usize, phase: Option<&str>) {
        if let Some(phase) = phase {
            match self.phases.last_mut() {
                Some(span) if span.phase == phase => span.end = index,
                _ => self.phases.push(PhaseSpan {
                    phase: phase.to_string(),
                    start: index,
                    end: index,
                }),
            }
        }
        if !index.is_multiple_of(self.stride.max(1)) {
            return;
        }
        if self.frames.len() >= MAX_POINTS {
            self.stride = self.stride.max(1) * 2;
            let stride = self.stride;
            self.frames.retain(|p| p.index.is_multiple_of(stride));
            for d in &mut self.detectors {
                d.points.retain(|p| p.0.is_multiple_of(stride));
            }
            if !index.is_multiple_of(stride) {
                return;
            }
        }
        self.frames.push(FramePoint {
            index,
            confidence,
            class,
        });
    }

    /// Last frame index recorded (0 when empty).
    pub fn last_index(&self) -> u64 {
        self.frames.last().map_or(0, |p| p.index)
    }
}

impl Observer for Timeline {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let phase = report.truth.and_then(|t| t.phase.as_deref());
        self.record(
            report.frames,
            report.prediction.confidence,
            report.prediction.class,
            phase,
        );
        let Some(autonomy) = report.autonomy else {
            return;
        };
        for (i, change) in autonomy.last().changes.iter().enumerate() {
            let detector = autonomy.last().events.get(i).map(|e| e.detector);
            let (kind, label) = match (change, detector) {
                (Change::Opened(id), Some(d)) => (MarkKind::Drift, format!("#{id} {d}")),
                (Change::Closed(id), _) => (MarkKind::Closed, format!("#{id} closed")),
                _ => continue,
            };
            if self.events.len() < MAX_EVENTS {
                self.events.push(EventMark {
                    index: report.frames,
                    kind,
                    label,
                });
            }
        }
        for note in &autonomy.last().notes {
            let (kind, label) = match note {
                Note::Applied(e) => (
                    MarkKind::Adapted,
                    format!("{:?} {}", e.kind, e.label.as_deref().unwrap_or("")).to_lowercase(),
                ),
                Note::Kept(e) => (MarkKind::Kept, format!("round {} kept", e.id)),
                Note::RolledBack(e) => {
                    (MarkKind::RolledBack, format!("round {} rolled back", e.id))
                }
            };
            if self.events.len() < MAX_EVENTS {
                self.events.push(EventMark {
                    index: report.frames,
                    kind,
                    label,
                });
            }
        }
        if self.last_index() != report.frames {
            return;
        }
        let detectors = autonomy.detectors().detectors();
        if self.detectors.is_empty() {
            self.detectors = detectors
                .iter()
                .map(|d| DetectorTrace {
                    name: d.kind().to_string(),
                    points: Vec::new(),
                })
                .collect();
        }
        for (trace, d) in self.detectors.iter_mut().zip(detectors) {
            let (statistic, threshold) = d.statistic();
            trace.points.push((report.frames, statistic, threshold));
        }
    }
}

/// Most event marks kept.
pub const MAX_EVENTS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_become_spans() {
        let mut t = Timeline::new(vec!["a".into()]);
        for i in 1..=10 {
            t.record(i, 0.9, 0, Some(if i <= 6 { "normal" } else { "noise" }));
        }
        assert_eq!(
            t.phases,
            vec![
                PhaseSpan {
                    phase: "normal".into(),
                    start: 1,
                    end: 6
                },
                PhaseSpan {
                    phase: "noise".into(),
                    start: 7,
                    end: 10
                },
            ]
        );
        assert_eq!(t.frames.len(), 10);
    }

    #[test]
    fn memory_stays_bounded_on_long_runs() {
        let mut t = Timeline::new(vec!["a".into()]);
        let n = (MAX_POINTS as u64) * 5 + 3;
        for i in 1..=n {
            t.record(i, 0.5, 0, None);
        }
        assert!(t.frames.len() <= MAX_POINTS);
        assert!(t.frames.len() >= MAX_POINTS / 4, "{}", t.frames.len());
        // Evenly spaced and in order, reaching close to the end.
        let step = t.frames[1].index - t.frames[0].index;
        assert!(t.frames.windows(2).all(|w| w[1].index - w[0].index == step));
        assert!(n - t.last_index() < step * 2);
    }
}
