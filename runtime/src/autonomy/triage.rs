//! Which frames the quarantine keeps, and why: during an incident the frames that look
//! unusual, at any time the frames far from everything the KNN knows. A kept frame of a
//! drift onset is also held for a human's review with its event.

use super::{Autonomy, event};
use crate::frame::Frame;
use crate::pipeline::Prediction;
use crate::quarantine::{Candidate, ReasonRef};

impl Autonomy {
    /// Keep the frame in quarantine when an incident is open or it is far from everything.
    pub(super) fn quarantine_frame(&mut self, prediction: &Prediction<'_>, image: &Frame) {
        let (Some(q), Some(side)) = (self.quarantine.as_mut(), self.side.as_ref()) else {
            return;
        };
        let Some(distance) = self.step.distance else {
            return;
        };
        // During an incident, only frames that look unusual (beyond one reference σ of the
        // usual neighbour distance): an incident outlives its drift by the detectors' exit
        // rules, and normal frames in the quarantine would blur every cluster.
        let r = &side.reference.overall;
        let unusual = f64::from(distance) > r.mean + r.std;
        let reason = match self.incidents.open() {
            Some(incident) if unusual => ReasonRef::Drift {
                detector: incident.first.detector.name(),
            },
            _ if self.step.far => ReasonRef::FarFromKnown,
            _ => return,
        };
        let predicted = self
            .step
            .knn_label
            .and_then(|l| side.knn.labels().name(l))
            .unwrap_or(prediction.label);
        let candidate = Candidate {
            sample: self.step.frame,
            reason,
            predicted,
            confidence: if self.embedding_only {
                self.step.knn_confidence
            } else {
                prediction.confidence
            },
            knn_distance: self.step.distance,
            features: &side.buffer,
        };
        let now = event::now_unix_ms();
        match q.admit(candidate, image, now, &mut self.pending) {
            Ok(Some(id)) => {
                self.step.quarantined = Some(id);
                self.counts.quarantined += 1;
                // The frame of a drift onset goes to a human with its event: keep it for the
                // verdict (bounded by the quarantine's review settings).
                if !self.step.events.is_empty() {
                    if let Err(e) = q.hold_for_review(id, now, &mut self.pending) {
                        tracing::debug!("not held for review: {e}");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("not quarantined: {e}"),
        }
    }
}
