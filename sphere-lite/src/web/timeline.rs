//! A device's timeline on its page: incidents, adaptation rounds, proposed classes,
//! rollbacks and class renames, newest first (the form that names a class beside it is
//! `classes`).
//!
//! Why a module of its own: what a device learnt was scattered over metric keys; this puts
//! it in one ordered story per device, from the drift events, the learning events it reports
//! and the renames operators asked for (each with its feedback item's progress, so an
//! operator sees whether the device applied it). Device-supplied text (class, detector and
//! reason names) reaches the HTML only through askama expressions.

use std::collections::BTreeSet;

use tinylcm_protocol::api::{DriftEventQuery, DriftEventStatus};
use tinylcm_protocol::learning::{ClassRenameView, LearningEvent};

use super::classes::{ClassForm, progress_text};
use super::time;
use crate::domain::{DomainError, IncidentKey, MAX_LEARNING_PAGE, Sphere, group_by_incident};

/// Entries shown at most.
pub(super) const TIMELINE_ENTRIES: usize = 60;
/// Drift events looked at for the incidents (the newest of them count).
const MAX_DRIFT_SCAN: usize = 2500;
/// How far back (device clock) incidents are looked for.
const DRIFT_WINDOW_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// One entry of the timeline.
#[derive(Debug, Clone)]
pub struct TimelineRow {
    /// When it happened (device clock), for the order.
    pub unix_ms: u64,
    /// When, formatted.
    pub when: String,
    /// Its kind, also its CSS class: `incident`, `incident-closed`, `round`, `rollback`,
    /// `proposed`, `pseudo-label`, `rename`.
    pub kind: &'static str,
    /// What happened, in a few words.
    pub what: String,
    /// Figures and reasons.
    pub detail: String,
    /// Where to read more.
    pub link: Option<String>,
}

/// The device page's timeline section.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Entries, newest first.
    pub rows: Vec<TimelineRow>,
    /// The rename form (`classes`); `None` for read-only sessions or a device without
    /// classes.
    pub form: Option<ClassForm>,
}

fn confidences(before: Option<f64>, after: Option<f64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("mean confidence {b:.2} → {a:.2}"),
        _ => String::new(),
    }
}

fn rename_row(r: &ClassRenameView) -> TimelineRow {
    let by = if r.by.is_empty() {
        String::new()
    } else {
        format!(" by {}", r.by)
    };
    TimelineRow {
        unix_ms: r.requested_unix_ms,
        when: time::format_utc(r.requested_unix_ms),
        kind: "rename",
        what: format!("rename {} → {} asked{by}", r.from, r.to),
        detail: progress_text(&r.feedback),
        link: None,
    }
}

fn learning_row(e: &tinylcm_protocol::learning::LearningEventView) -> TimelineRow {
    let (kind, what, detail) = match &e.event {
        LearningEvent::PseudoLabel {
            round,
            class,
            members,
        } => (
            "pseudo-label",
            format!("round {round}: {members} samples learnt as {class}"),
            String::new(),
        ),
        LearningEvent::NewClass {
            round,
            class,
            members,
        } => (
            "proposed",
            format!("round {round}: proposed class {class}"),
            format!("{members} samples"),
        ),
        LearningEvent::RoundKept {
            round,
            added,
            confidence_before,
            confidence_after,
        } => (
            "round",
            format!("round {round} kept"),
            format!(
                "{added} samples added; {}",
                confidences(*confidence_before, *confidence_after)
            )
            .trim_end_matches("; ")
            .to_owned(),
        ),
        LearningEvent::RoundRolledBack {
            round,
            reason,
            added,
            confidence_before,
            confidence_after,
        } => (
            "rollback",
            format!("round {round} rolled back: {reason}"),
            format!(
                "{added} samples removed again; {}",
                confidences(*confidence_before, *confidence_after)
            )
            .trim_end_matches("; ")
            .to_owned(),
        ),
        LearningEvent::IncidentClosed {
            incident,
            detectors,
        } => (
            "incident-closed",
            format!("incident {incident} closed"),
            detectors.join(", "),
        ),
        LearningEvent::ClassRenamed { from, to, moved } => (
            "rename",
            format!("class {from} renamed {to} on the device"),
            format!("{moved} samples moved"),
        ),
    };
    TimelineRow {
        unix_ms: e.unix_ms,
        when: time::format_utc(e.unix_ms),
        kind,
        what,
        detail,
        link: None,
    }
}

/// The incidents of `device_id` in the last [`DRIFT_WINDOW_MS`] before `now`, as entries.
fn incident_rows(
    sphere: &Sphere,
    device_id: &str,
    now: u64,
) -> Result<Vec<TimelineRow>, DomainError> {
    let mut query = DriftEventQuery {
        device: Some(device_id.to_owned()),
        since: Some(now.saturating_sub(DRIFT_WINDOW_MS)),
        limit: Some(tinylcm_protocol::api::MAX_DRIFT_EVENT_PAGE),
        ..DriftEventQuery::default()
    };
    let mut events = Vec::new();
    loop {
        let page = sphere.list_drift_events(&query)?;
        events.extend(page.events);
        match page.next_after {
            Some(after) if events.len() < MAX_DRIFT_SCAN => query.after = Some(after),
            _ => break,
        }
    }
    let mut rows = Vec::new();
    for group in group_by_incident(events) {
        let Some(first) = group.iter().min_by_key(|e| e.unix_ms) else {
            continue;
        };
        let key = IncidentKey::of(first);
        let detectors: BTreeSet<&str> = group.iter().map(|e| e.detector.as_str()).collect();
        let pending = group
            .iter()
            .filter(|e| e.status == DriftEventStatus::Pending)
            .count();
        let status = if pending == group.len() {
            "pending review".to_owned()
        } else if pending > 0 {
            "partly decided".to_owned()
        } else {
            match group.iter().find_map(|e| e.label.as_deref()) {
                Some(l) => format!("{}: {l}", first.status.as_str()),
                None => first.status.as_str().to_owned(),
            }
        };
        let predicted = group
            .iter()
            .find_map(|e| e.predicted.as_deref())
            .map(|p| format!("; predicted {p}"))
            .unwrap_or_default();
        rows.push(TimelineRow {
            unix_ms: first.unix_ms,
            when: time::format_utc(first.unix_ms),
            kind: "incident",
            what: format!("incident {} opened", key.incident),
            detail: format!(
                "{}; {status}{predicted}",
                detectors.into_iter().collect::<Vec<_>>().join(", ")
            ),
            link: Some(format!("/ui/drift/{}", first.id)),
        });
    }
    Ok(rows)
}

/// The timeline of `device_id` (without the rename form, which `classes` builds).
pub(super) fn timeline(
    sphere: &Sphere,
    device_id: &str,
    now: u64,
) -> Result<Timeline, DomainError> {
    let learning = sphere.learning_events(device_id, MAX_LEARNING_PAGE)?;
    let renames = sphere.class_renames(device_id, MAX_LEARNING_PAGE)?;
    let mut rows = incident_rows(sphere, device_id, now)?;
    rows.extend(learning.iter().map(learning_row));
    rows.extend(renames.iter().map(rename_row));
    rows.sort_by_key(|r| std::cmp::Reverse(r.unix_ms));
    rows.truncate(TIMELINE_ENTRIES);
    Ok(Timeline { rows, form: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinylcm_protocol::learning::LearningEventView;

    fn view(event: LearningEvent) -> LearningEventView {
        LearningEventView {
            device_id: "d".into(),
            package_id: "p".into(),
            event_seq: 1,
            epoch: None,
            unix_ms: 5,
            received_unix_ms: 6,
            event,
        }
    }

    #[test]
    fn rows_say_what_was_learnt_and_why_a_round_was_undone() {
        let r = learning_row(&view(LearningEvent::RoundRolledBack {
            round: 3,
            reason: "protected-samples".into(),
            added: 4,
            confidence_before: Some(0.9),
            confidence_after: Some(0.5),
        }));
        assert_eq!(r.kind, "rollback");
        assert_eq!(r.what, "round 3 rolled back: protected-samples");
        assert!(r.detail.contains("0.90 → 0.50"), "{}", r.detail);
        let r = learning_row(&view(LearningEvent::NewClass {
            round: 2,
            class: "new-2".into(),
            members: 12,
        }));
        assert_eq!((r.kind, r.detail.as_str()), ("proposed", "12 samples"));
        let r = learning_row(&view(LearningEvent::RoundKept {
            round: 2,
            added: 5,
            confidence_before: None,
            confidence_after: None,
        }));
        assert_eq!(r.detail, "5 samples added");
    }
}
