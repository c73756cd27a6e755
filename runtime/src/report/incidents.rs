//! The incidents of a run as a user reads them: when, in which scenario phase, which
//! detector saw it first and with what statistic, and who agreed.

use crate::autonomy::{Change, Note};
use crate::drift::DriftEvent;
use crate::pipeline::runner::{FrameReport, Observer};

/// Most incidents kept (the oldest are dropped past this: a long run stays bounded).
pub const MAX_INCIDENTS: usize = 1000;

/// One incident of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    /// Its number.
    pub id: u64,
    /// Frame it opened at.
    pub opened_at: u64,
    /// Frame it closed at, if it did during the run.
    pub closed_at: Option<u64>,
    /// The scenario phase at the onset, when the source knows it.
    pub phase: Option<String>,
    /// The event that opened it.
    pub first: DriftEvent,
    /// Detectors that fired after the first, in order.
    pub joined: Vec<String>,
}

/// One adaptation step of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptationRecord {
    /// Frame it happened at.
    pub frame: u64,
    /// The scenario phase then, when the source knows it.
    pub phase: Option<String>,
    /// What happened.
    pub note: Note,
}

/// Collects the incidents and adaptation steps of a run.
#[derive(Debug, Clone, Default)]
pub struct IncidentLog {
    /// Incidents, oldest first.
    pub incidents: Vec<IncidentRecord>,
    /// Adaptation steps, oldest first.
    pub adaptations: Vec<AdaptationRecord>,
}

impl Observer for IncidentLog {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let Some(autonomy) = report.autonomy else {
            return;
        };
        let step = autonomy.last();
        for note in &step.notes {
            if self.adaptations.len() >= MAX_INCIDENTS {
                self.adaptations.remove(0);
            }
            self.adaptations.push(AdaptationRecord {
                frame: report.frames,
                phase: report.truth.and_then(|t| t.phase.clone()),
                note: note.clone(),
            });
        }
        for (i, change) in step.changes.iter().enumerate() {
            match *change {
                Change::Opened(id) => {
                    if self.incidents.len() >= MAX_INCIDENTS {
                        self.incidents.remove(0);
                    }
                    if let Some(first) = step.events.get(i) {
                        self.incidents.push(IncidentRecord {
                            id,
                            opened_at: report.frames,
                            closed_at: None,
                            phase: report.truth.and_then(|t| t.phase.clone()),
                            first: *first,
                            joined: Vec::new(),
                        });
                    }
                }
                Change::Joined(id) => {
                    if let (Some(r), Some(e)) = (
                        self.incidents.iter_mut().rev().find(|r| r.id == id),
                        step.events.get(i),
                    ) {
                        let name = e.detector.to_string();
                        if e.detector != r.first.detector && !r.joined.contains(&name) {
                            r.joined.push(name);
                        }
                    }
                }
                Change::Closed(id) => {
                    if let Some(r) = self.incidents.iter_mut().rev().find(|r| r.id == id) {
                        r.closed_at = Some(report.frames);
                    }
                }
                Change::None => {}
            }
        }
    }
}
