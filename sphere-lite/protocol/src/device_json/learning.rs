//! The learning events a device sends (its package's [`LEARNING_MEMBER`], a JSON list of
//! [`LearningReport`]s), checked and turned into [`LearningEventView`]s for the device's
//! timeline.
//!
//! Why here: sphere-lite's package processing stores what [`learning_of`] returns; as with
//! drift events, the parser of outside input lives in the protocol crate.

use crate::learning::{
    LEARNING_MEMBER, LearningEventView, LearningReport, MAX_LEARNING_EVENTS_PER_MEMBER,
    MAX_LEARNING_MEMBER_BYTES,
};
use crate::package::{FileKind, Package};

/// What the learning member of a package holds.
#[derive(Debug, Default)]
pub struct LearningParts {
    /// Its events.
    pub events: Vec<LearningEventView>,
    /// Problems found.
    pub problems: Vec<String>,
}

/// The learning events of `package`, and the problems found. Never fails: a package without
/// the member has none; a bad member or event is a problem, and every other event is kept
/// (an event of a kind this server does not know, from a newer device, is skipped).
pub fn learning_of(package: &Package, received_unix_ms: u64) -> LearningParts {
    let m = &package.manifest;
    let mut out = LearningParts::default();
    for (entry, content) in &package.files {
        if entry.kind != FileKind::Other || entry.name != LEARNING_MEMBER {
            continue;
        }
        if content.len() > MAX_LEARNING_MEMBER_BYTES {
            out.problems.push(format!(
                "{LEARNING_MEMBER}: {} bytes, more than {MAX_LEARNING_MEMBER_BYTES}; skipped",
                content.len()
            ));
            continue;
        }
        // A list of values first, so one event of an unknown kind costs only that event.
        let values: Vec<serde_json::Value> = match serde_json::from_slice(content) {
            Ok(v) => v,
            Err(e) => {
                out.problems.push(format!(
                    "{LEARNING_MEMBER} is not a JSON list of learning events ({e}); skipped"
                ));
                continue;
            }
        };
        if values.len() > MAX_LEARNING_EVENTS_PER_MEMBER {
            out.problems.push(format!(
                "{LEARNING_MEMBER}: {} events, more than {MAX_LEARNING_EVENTS_PER_MEMBER}; skipped",
                values.len()
            ));
            continue;
        }
        for (i, value) in values.into_iter().enumerate() {
            let r: LearningReport = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    out.problems.push(format!(
                        "{LEARNING_MEMBER}, entry {i}: not a learning event this server knows ({e}); skipped"
                    ));
                    continue;
                }
            };
            let seq = r.event_seq;
            if r.epoch
                .as_deref()
                .is_some_and(|e| !crate::ids::valid_epoch(e))
            {
                out.problems.push(format!(
                    "{LEARNING_MEMBER}, event {seq}: epoch must be 1..={} characters of 0-9 a-z; skipped",
                    crate::ids::MAX_EPOCH_BYTES
                ));
                continue;
            }
            if let Err(e) = r.event.check() {
                out.problems
                    .push(format!("{LEARNING_MEMBER}, event {seq}: {e}; skipped"));
                continue;
            }
            out.events.push(LearningEventView {
                device_id: m.device_id.clone(),
                package_id: m.package_id.clone(),
                event_seq: seq,
                epoch: r.epoch,
                unix_ms: r.unix_ms,
                received_unix_ms,
                event: r.event,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Limits, PackageBuilder, read_package};

    fn package(members: &[(&str, FileKind, Vec<u8>)]) -> Package {
        let mut b = PackageBuilder::new("p1", "dev-1", 1).unwrap();
        for (name, kind, bytes) in members {
            b.add(*name, *kind, bytes.clone()).unwrap();
        }
        read_package(&b.finish().unwrap()[..], &Limits::default()).unwrap()
    }

    /// A good event is kept; an unknown kind, a bad string and a bad epoch are problems of
    /// their own events only.
    #[test]
    fn bad_events_are_problems_and_the_rest_is_kept() {
        let json = serde_json::json!([
            {"event_seq": 3, "epoch": "e1", "unix_ms": 9,
             "event": {"kind": "new-class", "round": 2, "class": "new-2", "members": 12}},
            {"event_seq": 4, "unix_ms": 9, "event": {"kind": "teleported", "round": 2}},
            {"event_seq": 5, "unix_ms": 9,
             "event": {"kind": "new-class", "round": 2, "class": "", "members": 1}},
            {"event_seq": 6, "epoch": "NOT VALID", "unix_ms": 9,
             "event": {"kind": "round-kept", "round": 2, "added": 1}}
        ]);
        let p = package(&[(
            LEARNING_MEMBER,
            FileKind::Other,
            json.to_string().into_bytes(),
        )]);
        let parts = learning_of(&p, 77);
        assert_eq!(parts.events.len(), 1);
        let e = &parts.events[0];
        assert_eq!(
            (e.event_seq, e.epoch.as_deref(), e.received_unix_ms),
            (3, Some("e1"), 77)
        );
        assert_eq!(e.device_id, "dev-1");
        assert_eq!(parts.problems.len(), 3, "{:?}", parts.problems);
    }

    /// A package of a device older than learning events (no member), and an `other` member
    /// under another name, hold none and raise no problem.
    #[test]
    fn packages_without_the_member_are_fine() {
        let p = package(&[("notes.json", FileKind::Other, b"[1]".to_vec())]);
        let parts = learning_of(&p, 1);
        assert!(parts.events.is_empty() && parts.problems.is_empty());
    }

    #[test]
    fn a_member_that_is_not_a_list_is_one_problem() {
        let p = package(&[(LEARNING_MEMBER, FileKind::Other, b"{".to_vec())]);
        let parts = learning_of(&p, 1);
        assert!(parts.events.is_empty());
        assert_eq!(parts.problems.len(), 1);
    }
}
