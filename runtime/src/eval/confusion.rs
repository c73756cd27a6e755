//! What a model said on frames whose truth is known: counts of (phase, true label, predicted
//! label), collected by an [`Observer`] on the inference loop.
//!
//! Counts instead of a per-frame list because every figure of the scorecard (accuracy,
//! purity, recall) is a sum over frames; the counts are the whole record, small enough to
//! keep in the JSON report, and independent of frame order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pipeline::runner::{FrameReport, Observer};

/// Phase name of frames whose source has no phases.
pub const ALL_PHASES: &str = "all";

/// Frames of one phase: true label → predicted label → frames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCounts {
    /// The phase (`normal`, `lighting`, ... or a held-out folder's phase folder).
    pub phase: String,
    /// true label → predicted label → frames.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

impl PhaseCounts {
    /// Frames of this phase.
    pub fn frames(&self) -> u64 {
        self.counts.values().flat_map(BTreeMap::values).sum()
    }
}

/// Counts of (phase, truth, prediction), phases in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Per phase, in the order the frames came.
    pub phases: Vec<PhaseCounts>,
    /// Frames without a true label (not scored).
    pub unlabelled: u64,
}

impl Confusion {
    /// Count `frames` frames of `phase` showing `truth`, predicted as `predicted`.
    pub fn add(&mut self, phase: &str, truth: &str, predicted: &str, frames: u64) {
        let i = match self.phases.iter().position(|p| p.phase == phase) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseCounts {
                    phase: phase.to_string(),
                    counts: BTreeMap::new(),
                });
                self.phases.len() - 1
            }
        };
        *self.phases[i]
            .counts
            .entry(truth.to_string())
            .or_default()
            .entry(predicted.to_string())
            .or_default() += frames;
    }

    /// Every cell: (phase, truth, predicted, frames).
    pub fn cells(&self) -> impl Iterator<Item = (&str, &str, &str, u64)> {
        self.phases.iter().flat_map(|p| {
            p.counts.iter().flat_map(move |(truth, row)| {
                row.iter()
                    .map(move |(pred, &n)| (p.phase.as_str(), truth.as_str(), pred.as_str(), n))
            })
        })
    }

    /// Labelled frames in all.
    pub fn frames(&self) -> u64 {
        self.phases.iter().map(PhaseCounts::frames).sum()
    }
}

/// Records every frame's (phase, truth, reported label) while a run goes.
///
/// The label is the one the runtime reports ([`FrameReport::label`]: the KNN's when it
/// classifies), since that is what a user of the device sees and what learning changes.
#[derive(Debug, Default)]
pub struct Recorder {
    /// What was recorded.
    pub confusion: Confusion,
    /// Phase given to every frame, for sources without phases (a held-out phase folder).
    pub phase: Option<String>,
}

impl Observer for Recorder {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let truth = report
            .truth
            .and_then(|t| Some((t.phase.as_deref(), t.label.as_deref()?)));
        match truth {
            Some((phase, label)) => {
                let phase = self.phase.as_deref().or(phase).unwrap_or(ALL_PHASES);
                self.confusion.add(phase, label, report.label, 1);
            }
            None => self.confusion.unlabelled += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_phase_order_and_add_up() {
        let mut c = Confusion::default();
        c.add("normal", "ball", "ball", 3);
        c.add("lighting", "ball", "new-1", 2);
        c.add("normal", "ball", "box", 1);
        c.add("normal", "ball", "ball", 1);
        assert_eq!(c.phases[0].phase, "normal");
        assert_eq!(c.phases[1].phase, "lighting");
        assert_eq!(c.phases[0].counts["ball"]["ball"], 4);
        assert_eq!(c.phases[0].frames(), 5);
        assert_eq!(c.frames(), 7);
        assert_eq!(c.cells().count(), 3);
    }
}
