//! The drift events a device sends (a package's `drift-events` members, JSON lists of
//! [`DriftEventReport`]s), checked and turned into pending events for the Drift Hub.
//!
//! Why here: sphere-lite's package processing stores what [`events_of`] returns, and the fuzz
//! target `drift_events` runs the same function without the server's dependency tree.

use std::collections::HashSet;

use crate::api::{
    DriftEventReport, DriftEventStatus, DriftEventView, MAX_DETECTOR_BYTES,
    MAX_DRIFT_EVENTS_PER_MEMBER, MAX_LABEL_BYTES, MAX_SAMPLES_PER_EVENT,
};
use crate::blob_key::package_file;
use crate::datahub::{MAX_EMBEDDING_DIMS, valid_embedding};
use crate::learning::{ClassScore, MAX_TOP_K};
use crate::package::{FileKind, Package};

/// Largest `drift-events` member parsed, in bytes (1000 events fit easily).
pub const MAX_DRIFT_MEMBER_BYTES: usize = 1024 * 1024;

/// Whether `s` has no control characters (device text shown on the dashboard and in logs).
pub fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// What the `drift-events` members of a package hold.
#[derive(Debug, Default)]
pub struct DriftParts {
    /// Its events, pending, ids unassigned.
    pub events: Vec<DriftEventView>,
    /// (event_seq, embedding) of the events that carried a valid embedding.
    pub embeddings: Vec<(u64, Vec<f32>)>,
    /// Problems found.
    pub problems: Vec<String>,
}

/// The drift events of `package` (as pending events, ids unassigned), their embeddings and
/// the problems found. Never fails: a bad member or event is a problem, and everything else
/// is kept (an event with a bad embedding is kept without it).
pub fn events_of(package: &Package, received_unix_ms: u64) -> DriftParts {
    let m = &package.manifest;
    let samples: HashSet<&str> = package
        .files
        .iter()
        .filter(|(e, _)| e.kind == FileKind::Sample)
        .map(|(e, _)| e.name.as_str())
        .collect();
    let mut events = Vec::new();
    let mut embeddings = Vec::new();
    let mut problems = Vec::new();
    for (entry, content) in &package.files {
        if entry.kind != FileKind::DriftEvents {
            continue;
        }
        let name = &entry.name;
        if content.len() > MAX_DRIFT_MEMBER_BYTES {
            problems.push(format!(
                "drift-events member {name:?}: {} bytes, more than {MAX_DRIFT_MEMBER_BYTES}; skipped",
                content.len()
            ));
            continue;
        }
        let reports: Vec<DriftEventReport> = match serde_json::from_slice(content) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!(
                    "drift-events member {name:?} is not a JSON list of drift events ({e}); skipped"
                ));
                continue;
            }
        };
        if reports.len() > MAX_DRIFT_EVENTS_PER_MEMBER {
            problems.push(format!(
                "drift-events member {name:?}: {} events, more than {MAX_DRIFT_EVENTS_PER_MEMBER}; skipped",
                reports.len()
            ));
            continue;
        }
        for r in reports {
            let seq = r.event_seq;
            if r.detector.is_empty()
                || r.detector.len() > MAX_DETECTOR_BYTES
                || !printable(&r.detector)
            {
                problems.push(format!(
                    "drift-events member {name:?}, event {seq}: detector name must be 1..={MAX_DETECTOR_BYTES} printable bytes; event skipped"
                ));
                continue;
            }
            if ![r.statistic, r.threshold, r.magnitude]
                .iter()
                .all(|v| v.is_finite())
            {
                problems.push(format!(
                    "drift-events member {name:?}, event {seq}: non-finite number; event skipped"
                ));
                continue;
            }
            if r.epoch
                .as_deref()
                .is_some_and(|e| !crate::ids::valid_epoch(e))
            {
                problems.push(format!(
                    "drift-events member {name:?}, event {seq}: epoch must be 1..={} characters of 0-9 a-z; event skipped",
                    crate::ids::MAX_EPOCH_BYTES
                ));
                continue;
            }
            if r.samples.len() > MAX_SAMPLES_PER_EVENT {
                problems.push(format!(
                    "drift-events member {name:?}, event {seq}: {} samples, only the first {MAX_SAMPLES_PER_EVENT} kept",
                    r.samples.len()
                ));
            }
            let mut keys = Vec::new();
            for sample in r.samples.iter().take(MAX_SAMPLES_PER_EVENT) {
                if !samples.contains(sample.as_str()) {
                    problems.push(format!(
                        "drift-events member {name:?}, event {seq}: sample {:?} is not a `sample` member of the package; dropped",
                        sample.chars().take(120).collect::<String>()
                    ));
                    continue;
                }
                match package_file(&m.device_id, &m.package_id, sample) {
                    Ok(key) if keys.contains(&key) => {}
                    Ok(key) => keys.push(key),
                    Err(e) => problems.push(format!(
                        "drift-events member {name:?}, event {seq}: sample {sample:?}: {e}; dropped"
                    )),
                }
            }
            let (predicted, top_k) = prediction_of(&r, name, &mut problems);
            match r.embedding {
                Some(e) if valid_embedding(&e) => embeddings.push((seq, e)),
                Some(_) => problems.push(format!(
                    "drift-events member {name:?}, event {seq}: embedding must be 1..={MAX_EMBEDDING_DIMS} finite numbers; event kept without it"
                )),
                None => {}
            }
            events.push(DriftEventView {
                id: 0,
                device_id: m.device_id.clone(),
                package_id: m.package_id.clone(),
                event_seq: seq,
                epoch: r.epoch,
                incident: r.incident,
                detector: r.detector,
                statistic: r.statistic,
                threshold: r.threshold,
                magnitude: r.magnitude,
                sample_id: r.sample_id,
                unix_ms: r.unix_ms,
                received_unix_ms,
                samples: keys,
                status: DriftEventStatus::Pending,
                label: None,
                note: None,
                decided_by: None,
                decided_unix_ms: None,
                feedback: Vec::new(),
                predicted,
                top_k,
            });
        }
    }
    DriftParts {
        events,
        embeddings,
        problems,
    }
}

/// The predicted class and top-k of a report, each dropped with a problem when out of
/// bounds (the event is kept without it).
fn prediction_of(
    r: &DriftEventReport,
    member: &str,
    problems: &mut Vec<String>,
) -> (Option<String>, Vec<ClassScore>) {
    let seq = r.event_seq;
    let class_ok = |c: &str| !c.is_empty() && c.len() <= MAX_LABEL_BYTES && printable(c);
    let predicted = match &r.predicted {
        Some(p) if !class_ok(p) => {
            problems.push(format!(
                "drift-events member {member:?}, event {seq}: predicted class must be 1..={MAX_LABEL_BYTES} printable bytes; dropped"
            ));
            None
        }
        p => p.clone(),
    };
    let top_ok = r.top_k.len() <= MAX_TOP_K
        && r.top_k
            .iter()
            .all(|s| class_ok(&s.class) && s.score.is_finite() && (0.0..=1.0).contains(&s.score));
    let top_k = if top_ok {
        r.top_k.clone()
    } else {
        problems.push(format!(
            "drift-events member {member:?}, event {seq}: top_k must be at most {MAX_TOP_K} classes of 1..={MAX_LABEL_BYTES} printable bytes with scores in 0..=1; dropped"
        ));
        Vec::new()
    };
    (predicted, top_k)
}

#[cfg(test)]
mod tests {
    use crate::package::{FileKind, Limits, PackageBuilder, read_package};

    use super::*;

    #[test]
    fn bad_members_and_events_are_problems_and_the_rest_is_kept() {
        let mut b = PackageBuilder::new("p1", "dev-1", 1).unwrap();
        b.add("s/a.jpg", FileKind::Sample, vec![1]).unwrap();
        b.add("bad.json", FileKind::DriftEvents, b"{nope".to_vec())
            .unwrap();
        let good = serde_json::json!([
            {"event_seq": 1, "incident": 1, "detector": "adwin", "statistic": 1.0,
             "threshold": 0.5, "magnitude": 0.1, "sample_id": 3, "unix_ms": 9,
             "samples": ["s/a.jpg", "s/missing.jpg", "bad.json"]},
            {"event_seq": 2, "incident": 1, "detector": "", "statistic": 1.0,
             "threshold": 0.5, "magnitude": 0.1, "sample_id": 3, "unix_ms": 9}
        ]);
        b.add(
            "good.json",
            FileKind::DriftEvents,
            good.to_string().into_bytes(),
        )
        .unwrap();
        let package = read_package(&b.finish().unwrap()[..], &Limits::default()).unwrap();
        let DriftParts {
            events, problems, ..
        } = events_of(&package, 5);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].samples, ["devices/dev-1/packages/p1/s/a.jpg"]);
        assert_eq!(events[0].received_unix_ms, 5);
        // bad.json; a missing sample; a non-sample member; an empty detector.
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("bad.json"));
    }
}

#[cfg(test)]
mod prediction_tests {
    use crate::package::{FileKind, Limits, PackageBuilder, read_package};

    use super::*;

    fn events(json: serde_json::Value) -> DriftParts {
        let mut b = PackageBuilder::new("p1", "dev-1", 1).unwrap();
        b.add(
            "d.json",
            FileKind::DriftEvents,
            json.to_string().into_bytes(),
        )
        .unwrap();
        let package = read_package(&b.finish().unwrap()[..], &Limits::default()).unwrap();
        events_of(&package, 5)
    }

    /// The predicted class and top-k a device sends are kept with the event; an event of an
    /// older device without them is kept as before, with none.
    #[test]
    fn predicted_class_and_top_k_are_kept_and_optional() {
        let parts = events(serde_json::json!([
            {"event_seq": 1, "incident": 1, "detector": "adwin", "statistic": 1.0,
             "threshold": 0.5, "magnitude": 0.1, "sample_id": 3, "unix_ms": 9,
             "predicted": "circle",
             "top_k": [{"class": "circle", "score": 0.61}, {"class": "square", "score": 0.3}]},
            {"event_seq": 2, "incident": 1, "detector": "adwin", "statistic": 1.0,
             "threshold": 0.5, "magnitude": 0.1, "sample_id": 3, "unix_ms": 9}
        ]));
        assert!(parts.problems.is_empty(), "{:?}", parts.problems);
        assert_eq!(parts.events[0].predicted.as_deref(), Some("circle"));
        assert_eq!(parts.events[0].top_k.len(), 2);
        assert_eq!(parts.events[0].top_k[1].class, "square");
        assert_eq!(parts.events[1].predicted, None);
        assert!(parts.events[1].top_k.is_empty());
    }

    /// A top-k out of bounds (a score above 1, too many classes) or a bad predicted class is
    /// dropped with a problem; the event itself is kept.
    #[test]
    fn a_bad_top_k_is_dropped_and_the_event_kept() {
        let many: Vec<_> = (0..=MAX_TOP_K)
            .map(|i| serde_json::json!({"class": format!("c{i}"), "score": 0.1}))
            .collect();
        let parts = events(serde_json::json!([
            {"event_seq": 1, "incident": 1, "detector": "adwin", "statistic": 1.0,
             "threshold": 0.5, "magnitude": 0.1, "sample_id": 3, "unix_ms": 9,
             "predicted": "", "top_k": [{"class": "a", "score": 1.5}]},
            {"event_seq": 2, "incident": 1, "detector": "adwin", "statistic": 1.0,
             "threshold": 0.5, "magnitude": 0.1, "sample_id": 3, "unix_ms": 9,
             "top_k": many}
        ]));
        assert_eq!(parts.events.len(), 2);
        assert!(
            parts
                .events
                .iter()
                .all(|e| e.top_k.is_empty() && e.predicted.is_none())
        );
        assert_eq!(parts.problems.len(), 3, "{:?}", parts.problems);
    }
}
