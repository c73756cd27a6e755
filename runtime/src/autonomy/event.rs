//! What the runtime writes to its event log: drift onsets, incidents, adaptations,
//! rollbacks and feedback, each with the frame it happened at and the wall-clock time.
//!
//! One enum for all of them so the log has one ordered history that the sync client can
//! ship as it is and `tinylcm status` can read back.

use serde::{Deserialize, Serialize};

use crate::drift::DriftEvent;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeEvent {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// A detector's drift onset, and the incident it belongs to.
    Drift {
        /// The incident (see [`super::incident`]).
        incident: u64,
        /// The detector's event.
        event: DriftEvent,
    },
    /// An incident ended: no detector has been in drift for a while.
    IncidentClosed {
        /// The incident.
        incident: u64,
        /// Frame it opened at.
        opened_at: u64,
        /// Frame it closed at.
        closed_at: u64,
        /// Detectors that fired during it.
        detectors: Vec<String>,
    },
    /// An adaptation step (applied cluster, kept or rolled-back round).
    Adaptation {
        /// The snapshot taken before the round, if one was.
        snapshot: Option<String>,
        /// What happened, with proxy metrics before (and after, for verdicts).
        event: Box<crate::adapt::AdaptationEvent>,
    },
    /// A human labelled (or rejected) a quarantined sample.
    SampleFeedback {
        /// The quarantine entry.
        id: u64,
        /// The label given; `None`: rejected.
        label: Option<String>,
        /// Whether the KNN learnt the sample.
        learnt: bool,
    },
    /// A human renamed a class of the KNN.
    ClassRenamed {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
        /// Samples moved.
        moved: usize,
    },
    /// A human's verdict on a drift event was applied to its detector.
    DriftFeedback {
        /// The event judged.
        event: DriftEvent,
        /// The verdict.
        verdict: super::feedback::Verdict,
        /// The detector's threshold after applying it.
        threshold: f64,
    },
}

pub use crate::utc::now_unix_ms;

/// One event as a row of text, for `tinylcm status` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// What happened.
    pub what: String,
    /// The incident it belongs to.
    pub incident: Option<u64>,
    /// The detector or class concerned.
    pub subject: String,
    /// Figures (statistic and threshold, samples, ...).
    pub detail: String,
}

impl EventKind {
    /// The event as a row of text.
    pub fn row(&self) -> EventRow {
        let row = |what: String, incident, subject: String, detail: String| EventRow {
            what,
            incident,
            subject,
            detail,
        };
        match self {
            EventKind::Drift { incident, event } => row(
                "drift onset".into(),
                Some(*incident),
                event.detector.to_string(),
                format!("{:.2} / {:.2}", event.statistic, event.threshold),
            ),
            EventKind::IncidentClosed {
                incident,
                opened_at,
                closed_at,
                detectors,
            } => row(
                format!("incident closed (frames {opened_at}–{closed_at})"),
                Some(*incident),
                detectors.join(", "),
                String::new(),
            ),
            EventKind::Adaptation { snapshot, event } => row(
                format!("adaptation #{} {:?}", event.id, event.kind).to_lowercase(),
                None,
                event.label.clone().unwrap_or_default(),
                format!(
                    "{} samples, {} added, snapshot {}",
                    event.member_count,
                    event.added.len(),
                    snapshot.as_deref().unwrap_or("none")
                ),
            ),
            EventKind::SampleFeedback { id, label, learnt } => row(
                format!("feedback: sample {id}"),
                None,
                label.clone().unwrap_or_else(|| "rejected".into()),
                if *learnt {
                    "learnt by the KNN".into()
                } else {
                    String::new()
                },
            ),
            EventKind::ClassRenamed { from, to, moved } => row(
                "feedback: class renamed".into(),
                None,
                format!("{from} → {to}"),
                format!("{moved} samples"),
            ),
            EventKind::DriftFeedback {
                event,
                verdict,
                threshold,
            } => row(
                format!("feedback: {verdict:?}").to_lowercase(),
                None,
                event.detector.to_string(),
                format!("threshold now {threshold:.2}"),
            ),
        }
    }
}
