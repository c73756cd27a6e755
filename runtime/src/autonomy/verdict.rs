//! Human verdicts applied to the running layer, between frames: a drift verdict tunes the
//! detectors, a sample's label teaches the KNN, a class rename relabels it. The inbox that
//! brings them, their file format and what a sample's label does are in [`super::feedback`];
//! this is where the layer takes them and records what became of each.

use super::event::{self, EventKind};
use super::{Autonomy, feedback};

impl Autonomy {
    /// Apply a waiting inbox delivery, if any (a channel poll when there is none).
    ///
    /// A delivery is acknowledged (its file removed once the store is flushed) only when
    /// everything it changed has been handed to the store: while the store's queue is full
    /// the changes wait in `pending`, and so does the acknowledgement.
    pub(super) fn take_feedback(&mut self) {
        if let Some(mut delivery) = self.inbox.as_ref().and_then(feedback::Inbox::try_recv) {
            for i in 0..delivery.items.len() {
                let outcome = self.apply_feedback(&delivery.items[i]);
                delivery.record(i, outcome);
            }
            self.checkpoint();
            self.unacked.push(delivery);
        }
        if self.unacked.is_empty() || !self.pending.is_empty() {
            return;
        }
        if let Some(inbox) = &self.inbox {
            for delivery in self.unacked.drain(..) {
                inbox.ack(delivery);
            }
        }
    }

    /// Apply one human verdict now; what became of it.
    pub fn apply_feedback(&mut self, item: &feedback::Item) -> feedback::Outcome {
        match item {
            feedback::Item::Drift { event, verdict } => {
                // The verdict on the event ends the review of the frame it named.
                if let Some(q) = self.quarantine.as_mut() {
                    if let Err(e) = q.release_review_of_sample(event.sample_id, &mut self.pending) {
                        tracing::warn!("{e}");
                    }
                }
                match verdict {
                    feedback::Verdict::FalseAlarm => self.detectors.false_alarm(event),
                    feedback::Verdict::Confirmed => self.detectors.confirmed(event),
                }
                let threshold = self
                    .detectors
                    .detectors()
                    .iter()
                    .find(|d| d.kind() == event.detector)
                    .map_or(f64::NAN, |d| d.statistic().1);
                tracing::info!(
                    detector = %event.detector,
                    sample = event.sample_id,
                    ?verdict,
                    threshold,
                    "drift feedback applied"
                );
                self.counts.feedback += 1;
                self.push(EventKind::DriftFeedback {
                    event: *event,
                    verdict: *verdict,
                    threshold,
                });
                feedback::Outcome::Applied(None)
            }
            feedback::Item::Sample { verdict, carried } => {
                let done = feedback::apply_sample(
                    verdict,
                    carried.as_deref(),
                    self.quarantine.as_mut(),
                    self.side.as_mut().map(|s| &mut s.knn),
                    event::now_unix_ms(),
                    &mut self.pending,
                );
                if let Some(kind) = done.event {
                    self.counts.feedback += 1;
                    self.push(kind);
                }
                done.outcome
            }
            feedback::Item::Class(c) => {
                let Some(side) = self.side.as_mut() else {
                    return feedback::Outcome::Refused("the KNN is off on this device".into());
                };
                let held = |name: &str| {
                    let knn = &side.knn;
                    knn.labels()
                        .get(name)
                        .map_or(0, |label| knn.class_count(label))
                };
                // Nothing to rename: say so rather than report a rename that moved nothing.
                if held(&c.from) == 0 {
                    return feedback::Outcome::Refused(format!(
                        "the KNN holds no sample of class {} (unknown here, or renamed already)",
                        c.from
                    ));
                }
                let merged = held(&c.to) > 0;
                match side.knn.relabel(&c.from, &c.to) {
                    Ok(moved) => {
                        tracing::info!(from = %c.from, to = %c.to, moved, "class renamed");
                        self.counts.feedback += 1;
                        self.push(EventKind::ClassRenamed {
                            from: c.from.clone(),
                            to: c.to.clone(),
                            moved,
                        });
                        feedback::Outcome::Applied(Some(format!(
                            "{moved} samples of {} {} {}",
                            c.from,
                            if merged { "merged into" } else { "renamed" },
                            c.to
                        )))
                    }
                    Err(e) => {
                        tracing::warn!("cannot rename class {} to {}: {e}", c.from, c.to);
                        feedback::Outcome::Refused(format!(
                            "cannot rename class {} to {}: {e}",
                            c.from, c.to
                        ))
                    }
                }
            }
        }
    }
}
