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
    /// What the device predicted for the frame of this frame's drift onsets, written just
    /// before them, so the sync client can tell a reviewer what the device thought it saw.
    /// (A variant of its own, at the end: the log's older entries keep decoding.)
    DriftSample {
        /// The frame ([`DriftEvent::sample_id`] of the onsets that follow).
        sample_id: u64,
        /// The class predicted: the model's, or the KNN's for a model without a head.
        predicted: String,
        /// The best classes with their scores, best first: the model's probabilities, or the
        /// KNN's vote shares for a model without a head.
        top_k: Vec<(String, f32)>,
    },
}

impl super::Autonomy {
    /// Queue what was predicted for this frame when it has drift onsets (before them, so a
    /// package that holds an onset holds its frame's prediction too). Allocates only on such
    /// frames.
    pub(super) fn record_drift_sample(&mut self, prediction: &crate::pipeline::Prediction<'_>) {
        if self.store.is_none() || self.step.events.is_empty() {
            return;
        }
        let knn = self.side.as_ref().map(|s| (&s.knn, &s.out));
        let knn_name = |id| {
            knn.and_then(|(k, _)| k.labels().name(id))
                .map(str::to_owned)
        };
        let (predicted, top_k) = if self.embedding_only || prediction.scores.is_empty() {
            let Some(predicted) = self.step.knn_label.and_then(knn_name) else {
                return;
            };
            // The KNN's vote: each class's share of the neighbours found.
            let mut shares: Vec<(String, f32)> = Vec::new();
            if let Some((k, out)) = knn {
                let n = out.neighbors.len().max(1) as f32;
                for nb in &out.neighbors {
                    let Some(name) = k.labels().name(nb.label) else {
                        continue;
                    };
                    match shares.iter_mut().find(|(c, _)| c == name) {
                        Some((_, s)) => *s += 1.0 / n,
                        None => shares.push((name.to_owned(), 1.0 / n)),
                    }
                }
            }
            shares.sort_by(|a, b| b.1.total_cmp(&a.1));
            shares.truncate(DRIFT_TOP_K);
            (predicted, shares)
        } else {
            let top = top_indices(prediction.scores, DRIFT_TOP_K)
                .into_iter()
                .filter_map(|(i, s)| self.labels.get(i).map(|l| (l.clone(), s.clamp(0.0, 1.0))))
                .collect();
            (prediction.label.to_owned(), top)
        };
        let entry = RuntimeEvent {
            unix_ms: now_unix_ms(),
            kind: EventKind::DriftSample {
                sample_id: self.step.frame,
                predicted,
                top_k,
            },
        };
        if let Err(e) = self.pending.append_event(&entry) {
            tracing::warn!("cannot record a drift frame's prediction: {e}");
        }
    }
}

/// Most classes in [`EventKind::DriftSample::top_k`].
pub const DRIFT_TOP_K: usize = 3;

/// The `k` best `(index, score)` pairs of `scores`, best first (non-finite scores skipped).
pub fn top_indices(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if !s.is_finite() {
            continue;
        }
        let at = best.iter().position(|&(_, b)| s > b).unwrap_or(best.len());
        if at < k {
            best.insert(at, (i, s));
            best.truncate(k);
        }
    }
    best
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
            EventKind::DriftSample {
                sample_id,
                predicted,
                top_k,
            } => row(
                format!("drift frame {sample_id}"),
                None,
                predicted.clone(),
                top_k
                    .iter()
                    .map(|(c, s)| format!("{c} {s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_indices_are_the_best_first_without_non_finite_scores() {
        let scores = [0.1, f32::NAN, 0.5, 0.3, 0.05];
        assert_eq!(top_indices(&scores, 3), [(2, 0.5), (3, 0.3), (0, 0.1)]);
        assert_eq!(top_indices(&scores, 1), [(2, 0.5)]);
        assert!(top_indices(&[], 3).is_empty());
    }
}
