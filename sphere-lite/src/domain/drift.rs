//! Drift Hub: drift events from packages, the operator's review, and the feedback queue the
//! device pulls.
//!
//! Why: in the original server the loop never closed (events, samples and images were not
//! linked, validations failed with 422, notes were lost, status and validations were unrelated,
//! and the device's pull endpoints were missing or discarded what they got). Here:
//!
//! * an event keeps the device's own numbers (`event_seq`, `incident`) and the blob keys of its
//!   samples, so the review page can show the images and the verdict can name the event the
//!   device knows;
//! * a decision is one atomic step: status + audit fields + the feedback items for the device,
//!   and only a pending event can be decided (a second decision is a 409 with the event as it
//!   stands, never a silent overwrite);
//! * feedback is a per-device queue with increasing ids; the device acknowledges what it
//!   applied and acknowledged items are never delivered again (exactly once from its view);
//! * the device then reports what became of each item (applied, or refused with its reason:
//!   a label for a sample it no longer holds and kept no features of, an unknown class), and a
//!   decided event shows each of its items queued → delivered → applied / refused, so the
//!   dashboard never shows a label as taken when the device could not take it;
//! * a bad `drift-events` member is recorded as a problem of its package; the rest of the
//!   package (files, other members, other events) is kept.
//!
//! Device-supplied strings (detector names, sample names) and operator text (labels, notes) are
//! stored and returned as data; whoever renders them (the dashboard) must escape them.

use std::collections::HashSet;

use tinylcm_protocol::api::{
    AckRequest, AckResponse, DEFAULT_DRIFT_EVENT_PAGE, DriftEventList, DriftEventQuery,
    DriftEventStatus, DriftEventView, DriftVerdict, FeedbackPage, FeedbackResults,
    FeedbackResultsAnswer, FeedbackVerdict, MAX_DETECTOR_BYTES, MAX_DRIFT_EVENT_PAGE,
    MAX_FEEDBACK_PAGE, MAX_LABEL_BYTES, MAX_NOTE_BYTES, MAX_RESULT_REASON_BYTES,
    MAX_RESULTS_PER_REPORT, RejectRequest, ValidateRequest,
};
// The parser of the `drift-events` members lives in the protocol crate, where the fuzz
// target `drift_events` runs it without the server's dependency tree.
pub(super) use tinylcm_protocol::device_json::drift::events_of;
use tinylcm_protocol::device_json::drift::printable;

use super::{DomainError, Sphere, now_unix_ms};
use crate::ports::{DecideOutcome, Decision, DriftEventFilter};

/// The quarantine entry a sample stands for: a sample whose file name is the runtime's
/// quarantine thumbnail name (`<id as 20 digits>.jpg`, `runtime/src/quarantine/entry.rs`
/// `thumbnail_name`), in any folder, is quarantine entry `id`. Other names map to nothing.
pub fn quarantine_id(sample: &str) -> Option<u64> {
    let name = sample.rsplit('/').next()?;
    let digits = name.strip_suffix(".jpg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn bad(error: impl Into<String>, fix: &str) -> DomainError {
    DomainError::BadRequest {
        error: error.into(),
        fix: Some(fix.into()),
    }
}

fn check_note(note: &Option<String>) -> Result<(), DomainError> {
    if let Some(n) = note {
        if n.len() > MAX_NOTE_BYTES || n.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(bad(
                format!("`note` must be at most {MAX_NOTE_BYTES} bytes without control characters"),
                "shorten the note",
            ));
        }
    }
    Ok(())
}

fn not_found(id: u64) -> DomainError {
    DomainError::NotFound {
        error: format!("no drift event {id}"),
        fix: Some("list the events with GET /api/v2/drift-events".into()),
    }
}

impl Sphere {
    /// One page of drift events matching `query` (operators).
    pub fn list_drift_events(
        &self,
        query: &DriftEventQuery,
    ) -> Result<DriftEventList, DomainError> {
        let limit = query.limit.unwrap_or(DEFAULT_DRIFT_EVENT_PAGE);
        if limit == 0 {
            return Err(bad(
                "`limit` must be at least 1",
                "leave it out or pass 1..=500",
            ));
        }
        let limit = limit.min(MAX_DRIFT_EVENT_PAGE);
        if let Some(d) = &query.device {
            if !tinylcm_protocol::ids::valid_device_id(d) {
                return Err(bad(
                    "`device` is not a device id",
                    "pass an id from GET /api/v2/devices",
                ));
            }
        }
        if let Some(d) = &query.detector {
            if d.is_empty() || d.len() > MAX_DETECTOR_BYTES {
                return Err(bad(
                    "`detector` must be 1..=64 bytes",
                    "pass a detector name",
                ));
            }
        }
        let filter = DriftEventFilter {
            device: query.device.clone(),
            detector: query.detector.clone(),
            status: query.status,
            since: query.since,
            until: query.until,
        };
        let events = self
            .tracking
            .drift_events(&filter, query.after.unwrap_or(0), limit)?;
        let next_after = (events.len() == limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok(DriftEventList { events, next_after })
    }

    /// One drift event (operators).
    pub fn get_drift_event(&self, id: u64) -> Result<DriftEventView, DomainError> {
        self.tracking.drift_event(id)?.ok_or_else(|| not_found(id))
    }

    /// pending → validated by `operator`. Feedback for the device: `Drift { event, confirmed }`,
    /// and with a label also `Sample { id, label }` for every sample that is a quarantine
    /// thumbnail ([`quarantine_id`]).
    pub fn validate_drift_event(
        &self,
        id: u64,
        operator: &str,
        request: &ValidateRequest,
    ) -> Result<DriftEventView, DomainError> {
        self.validate_drift_event_once(id, operator, request, &mut HashSet::new())
    }

    /// [`Sphere::validate_drift_event`], labelling only the samples not in `labelled` (and
    /// adding those it labels): the events of one incident often share their samples, and a
    /// decision on several events then tells the device each sample's label once (a second
    /// label for a sample that left the quarantine with the first would come back refused).
    pub fn validate_drift_event_once(
        &self,
        id: u64,
        operator: &str,
        request: &ValidateRequest,
        labelled: &mut HashSet<u64>,
    ) -> Result<DriftEventView, DomainError> {
        if let Some(l) = &request.label {
            if l.trim().is_empty() || l.len() > MAX_LABEL_BYTES || !printable(l) {
                return Err(bad(
                    format!("`label` must be 1..={MAX_LABEL_BYTES} printable bytes"),
                    "give the class name the device should learn, or leave `label` out",
                ));
            }
        }
        check_note(&request.note)?;
        let event = self.get_drift_event(id)?;
        let mut feedback = vec![FeedbackVerdict::Drift {
            incident: None,
            event: Some(event.event_seq),
            verdict: DriftVerdict::Confirmed,
        }];
        let mut added = Vec::new();
        if let Some(label) = &request.label {
            for q in event.samples.iter().filter_map(|s| quarantine_id(s)) {
                if !labelled.contains(&q) && !added.contains(&q) {
                    added.push(q);
                    feedback.push(FeedbackVerdict::Sample {
                        id: q,
                        label: Some(label.clone()),
                        reject: false,
                    });
                }
            }
        }
        let decided = self.decide(
            id,
            Decision {
                status: DriftEventStatus::Validated,
                label: request.label.clone(),
                note: request.note.clone(),
                by: operator.to_owned(),
                unix_ms: now_unix_ms(),
            },
            &feedback,
        )?;
        labelled.extend(added);
        Ok(decided)
    }

    /// pending → rejected by `operator`. Feedback for the device: `Drift { event, false-alarm }`.
    pub fn reject_drift_event(
        &self,
        id: u64,
        operator: &str,
        request: &RejectRequest,
    ) -> Result<DriftEventView, DomainError> {
        check_note(&request.note)?;
        let event = self.get_drift_event(id)?;
        let feedback = [FeedbackVerdict::Drift {
            incident: None,
            event: Some(event.event_seq),
            verdict: DriftVerdict::FalseAlarm,
        }];
        self.decide(
            id,
            Decision {
                status: DriftEventStatus::Rejected,
                label: None,
                note: request.note.clone(),
                by: operator.to_owned(),
                unix_ms: now_unix_ms(),
            },
            &feedback,
        )
    }

    fn decide(
        &self,
        id: u64,
        decision: Decision,
        feedback: &[FeedbackVerdict],
    ) -> Result<DriftEventView, DomainError> {
        match self.tracking.decide_drift_event(id, &decision, feedback)? {
            DecideOutcome::Decided(event) => {
                tracing::info!(
                    event = id, device = %event.device_id, status = event.status.as_str(),
                    by = %decision.by, feedback = feedback.len(), "drift event decided"
                );
                self.notify(super::Change::Decided {
                    id,
                    device: event.device_id.clone(),
                });
                Ok(event)
            }
            DecideOutcome::AlreadyDecided(current) => Err(DomainError::Conflict {
                error: format!("drift event {id} is {} already", current.status.as_str()),
                fix: Some("a decision is final; the current state is in `current`".into()),
                current: Box::new(current),
            }),
            DecideOutcome::NotFound => Err(not_found(id)),
        }
    }

    /// The device's unacknowledged feedback after `after` (device already authorised).
    pub fn feedback_page(&self, device_id: &str, after: u64) -> Result<FeedbackPage, DomainError> {
        let items = self
            .tracking
            .feedback_after(device_id, after, MAX_FEEDBACK_PAGE)?;
        let next_after = items.last().map(|i| i.id).unwrap_or(after);
        Ok(FeedbackPage { items, next_after })
    }

    /// Acknowledge the device's feedback up to `request.up_to` (device already authorised).
    pub fn ack_feedback(
        &self,
        device_id: &str,
        request: &AckRequest,
    ) -> Result<AckResponse, DomainError> {
        let acknowledged_up_to = self.tracking.ack_feedback(device_id, request.up_to)?;
        Ok(AckResponse { acknowledged_up_to })
    }

    /// Record what the device did with its feedback items (device already authorised): 1..=32
    /// results, reasons of at most 256 printable bytes. The first result of an item stands;
    /// results for items never queued for the device are skipped.
    pub fn record_feedback_results(
        &self,
        device_id: &str,
        request: &FeedbackResults,
    ) -> Result<FeedbackResultsAnswer, DomainError> {
        if request.results.is_empty() || request.results.len() > MAX_RESULTS_PER_REPORT {
            return Err(bad(
                format!("`results` must hold 1..={MAX_RESULTS_PER_REPORT} results"),
                "send the results in several bodies",
            ));
        }
        for r in &request.results {
            if let Some(reason) = &r.reason {
                if reason.len() > MAX_RESULT_REASON_BYTES || !printable(reason) {
                    return Err(bad(
                        format!(
                            "result of item {}: `reason` must be at most \
                             {MAX_RESULT_REASON_BYTES} printable bytes",
                            r.id
                        ),
                        "cut the reason (tinylcm_protocol::api::FeedbackResult::new does)",
                    ));
                }
            }
        }
        let recorded = self
            .tracking
            .record_feedback_results(device_id, &request.results)?;
        if recorded > 0 {
            tracing::info!(device = %device_id, recorded, "feedback results recorded");
            self.notify(super::Change::FeedbackResults {
                device: device_id.to_owned(),
            });
        }
        Ok(FeedbackResultsAnswer { recorded })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_ids_come_only_from_thumbnail_names() {
        assert_eq!(quarantine_id("s/00000000000000000012.jpg"), Some(12));
        assert_eq!(quarantine_id("00000000000000000000.jpg"), Some(0));
        for other in [
            "s/12.jpg",
            "s/0000000000000000001x.jpg",
            "s/00000000000000000012.png",
            "",
        ] {
            assert_eq!(quarantine_id(other), None, "{other}");
        }
    }
}
