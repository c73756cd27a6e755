//! What a device learnt on its own, as it reports it, and an operator's naming of a class it
//! proposed.
//!
//! Why a format of its own: adaptation rounds (kept or rolled back, with the guard's reason),
//! the classes a device proposes (`new-N`, with their member counts), closed incidents and
//! class renames were only visible as metric keys. A device now sends them, one
//! [`LearningReport`] per event of its event log, in a package member named
//! [`LEARNING_MEMBER`]; the server keeps them per device for its timeline.
//!
//! The member's kind is `other` (not a kind of its own) on purpose: a server older than this
//! format stores it uninterpreted instead of refusing the whole package for an unknown kind,
//! so a device can be upgraded before its server without losing its drift events.
//!
//! Every string in here comes from a device or an operator: whoever renders it must escape it.

use serde::{Deserialize, Serialize};

use crate::api::{FeedbackItemState, MAX_DETECTOR_BYTES, MAX_LABEL_BYTES};

/// The name of the package member (kind `other`) that holds a JSON list of
/// [`LearningReport`]s.
pub const LEARNING_MEMBER: &str = "learning.json";
/// Most reports in one learning member.
pub const MAX_LEARNING_EVENTS_PER_MEMBER: usize = 1000;
/// Largest learning member parsed, in bytes.
pub const MAX_LEARNING_MEMBER_BYTES: usize = 1024 * 1024;
/// Longest guard reason in bytes (the runtime's are short kebab-case words).
pub const MAX_REASON_BYTES: usize = 64;
/// Most detector names of a closed incident.
pub const MAX_INCIDENT_DETECTORS: usize = 16;
/// Most (class, score) pairs a drift event carries ([`crate::api::DriftEventReport::top_k`]).
pub const MAX_TOP_K: usize = 5;

/// One event of the device's event log about what it learnt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LearningReport {
    /// The event's number in the device's event log (unique per device and epoch, the
    /// server's idempotency key with them, as for drift events).
    pub event_seq: u64,
    /// The life of the device's state database ([`crate::ids::valid_epoch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// When it happened on the device (Unix ms).
    pub unix_ms: u64,
    /// What happened.
    pub event: LearningEvent,
}

/// What a device learnt, or undid.
///
/// JSON: internally tagged by `kind` (`"pseudo-label"`, `"new-class"`, `"round-kept"`,
/// `"round-rolled-back"`, `"incident-closed"`, `"class-renamed"`). A kind this server does
/// not know (from a newer device) is a problem of its package and skipped, never a refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LearningEvent {
    /// An adaptation round added a cluster's representatives to a class the device knew.
    PseudoLabel {
        /// The round (its adaptation id on the device).
        round: u64,
        /// The class they went to.
        class: String,
        /// Quarantined samples in the cluster.
        members: u64,
    },
    /// An adaptation round proposed a new class (named `new-N` by the device) from a
    /// cluster of unfamiliar samples.
    NewClass {
        /// The round.
        round: u64,
        /// The proposed class's name, e.g. `new-2`.
        class: String,
        /// Quarantined samples in the cluster.
        members: u64,
    },
    /// The guard watched the round's effect and kept it.
    RoundKept {
        /// The round.
        round: u64,
        /// Samples the round added to the KNN.
        added: u64,
        /// Mean confidence before the round.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence_before: Option<f64>,
        /// Mean confidence over the guard's window after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence_after: Option<f64>,
    },
    /// The guard rolled the round back (the KNN is as it was before it).
    RoundRolledBack {
        /// The round.
        round: u64,
        /// The guard's reason, e.g. `confidence-collapse`, `protected-samples`
        /// (1..=[`MAX_REASON_BYTES`] printable bytes).
        reason: String,
        /// Samples the round had added.
        added: u64,
        /// Mean confidence before the round.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence_before: Option<f64>,
        /// Mean confidence over the guard's window after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence_after: Option<f64>,
    },
    /// A drift incident ended: no detector has been in drift for a while.
    IncidentClosed {
        /// The device's incident number.
        incident: u64,
        /// The detectors that fired during it.
        #[serde(default)]
        detectors: Vec<String>,
    },
    /// A class was renamed, or merged into another, on an operator's feedback.
    ClassRenamed {
        /// Its old name.
        from: String,
        /// Its new name (a class that existed already: the two are merged).
        to: String,
        /// Samples moved.
        moved: u64,
    },
}

impl LearningEvent {
    /// Why this event cannot be kept (a string out of bounds), if so.
    pub fn check(&self) -> Result<(), String> {
        let class = |what: &str, s: &str| -> Result<(), String> {
            if s.is_empty() || s.len() > MAX_LABEL_BYTES || !printable(s) {
                return Err(format!(
                    "{what} must be 1..={MAX_LABEL_BYTES} printable bytes"
                ));
            }
            Ok(())
        };
        match self {
            LearningEvent::PseudoLabel { class: c, .. }
            | LearningEvent::NewClass { class: c, .. } => class("class", c),
            LearningEvent::RoundKept {
                confidence_before,
                confidence_after,
                ..
            } => finite(*confidence_before, *confidence_after),
            LearningEvent::RoundRolledBack {
                reason,
                confidence_before,
                confidence_after,
                ..
            } => {
                if reason.is_empty() || reason.len() > MAX_REASON_BYTES || !printable(reason) {
                    return Err(format!(
                        "reason must be 1..={MAX_REASON_BYTES} printable bytes"
                    ));
                }
                finite(*confidence_before, *confidence_after)
            }
            LearningEvent::IncidentClosed { detectors, .. } => {
                if detectors.len() > MAX_INCIDENT_DETECTORS {
                    return Err(format!(
                        "at most {MAX_INCIDENT_DETECTORS} detectors per incident"
                    ));
                }
                if detectors
                    .iter()
                    .any(|d| d.is_empty() || d.len() > MAX_DETECTOR_BYTES || !printable(d))
                {
                    return Err(format!(
                        "detector names must be 1..={MAX_DETECTOR_BYTES} printable bytes"
                    ));
                }
                Ok(())
            }
            LearningEvent::ClassRenamed { from, to, .. } => {
                class("from", from)?;
                class("to", to)
            }
        }
    }
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn finite(a: Option<f64>, b: Option<f64>) -> Result<(), String> {
    if [a, b].into_iter().flatten().all(f64::is_finite) {
        Ok(())
    } else {
        Err("confidences must be finite numbers".into())
    }
}

/// One learning event as the server keeps it (the device page's timeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LearningEventView {
    /// The reporting device.
    pub device_id: String,
    /// The package it arrived in.
    pub package_id: String,
    /// The device's event log number.
    pub event_seq: u64,
    /// The life of the device's state database; absent for devices older than epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// When it happened on the device (Unix ms).
    pub unix_ms: u64,
    /// When the server stored it (Unix ms).
    pub received_unix_ms: u64,
    /// What happened.
    pub event: LearningEvent,
}

impl LearningEventView {
    /// The key that makes a report unique per device: `<epoch>/<event_seq>` (or the bare
    /// `event_seq` for a device older than epochs).
    pub fn key(&self) -> String {
        match &self.epoch {
            Some(e) => format!("{e}/{:020}", self.event_seq),
            None => format!("{:020}", self.event_seq),
        }
    }
}

/// An operator's rename of a device's class (the dashboard's class form): name a class the
/// device proposed (or any class it has), or merge it into another: every sample of `from` becomes `to` in the
/// device's KNN. Delivered to the device as a [`crate::api::FeedbackVerdict::Class`] item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassRenameRequest {
    /// The class as the device names it now, e.g. `new-2`.
    pub from: String,
    /// Its name from now on (an existing class: merge into it); 1..=[`MAX_LABEL_BYTES`]
    /// printable bytes.
    pub to: String,
}

/// A class rename an operator asked for, and how far its feedback item got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClassRenameView {
    /// The device.
    pub device_id: String,
    /// The class as the device named it.
    pub from: String,
    /// Its new name.
    pub to: String,
    /// The operator who asked.
    pub by: String,
    /// When (Unix ms).
    pub requested_unix_ms: u64,
    /// The feedback item: queued → delivered → applied, or refused with the device's reason.
    pub feedback: FeedbackItemState,
}

/// One (class, score) pair of a prediction ([`crate::api::DriftEventReport::top_k`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassScore {
    /// The class.
    pub class: String,
    /// Its score: the model's probability, or the KNN's vote share for a model without a
    /// head (0..=1).
    pub score: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind round-trips through JSON, and the wire names are the documented ones.
    #[test]
    fn every_kind_round_trips() {
        let events = [
            LearningEvent::PseudoLabel {
                round: 1,
                class: "a".into(),
                members: 3,
            },
            LearningEvent::NewClass {
                round: 2,
                class: "new-2".into(),
                members: 12,
            },
            LearningEvent::RoundKept {
                round: 2,
                added: 5,
                confidence_before: Some(0.7),
                confidence_after: Some(0.9),
            },
            LearningEvent::RoundRolledBack {
                round: 3,
                reason: "confidence-collapse".into(),
                added: 4,
                confidence_before: None,
                confidence_after: None,
            },
            LearningEvent::IncidentClosed {
                incident: 4,
                detectors: vec!["adwin".into()],
            },
            LearningEvent::ClassRenamed {
                from: "new-2".into(),
                to: "star".into(),
                moved: 7,
            },
        ];
        let kinds = [
            "pseudo-label",
            "new-class",
            "round-kept",
            "round-rolled-back",
            "incident-closed",
            "class-renamed",
        ];
        for (event, kind) in events.iter().zip(kinds) {
            let report = LearningReport {
                event_seq: 9,
                epoch: Some("abc".into()),
                unix_ms: 5,
                event: event.clone(),
            };
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(json["event"]["kind"], kind);
            let back: LearningReport = serde_json::from_value(json).unwrap();
            assert_eq!(back, report);
            assert!(event.check().is_ok());
        }
    }

    #[test]
    fn strings_out_of_bounds_are_refused() {
        let bad = [
            LearningEvent::NewClass {
                round: 1,
                class: String::new(),
                members: 1,
            },
            LearningEvent::ClassRenamed {
                from: "a".into(),
                to: "b\u{7}".into(),
                moved: 0,
            },
            LearningEvent::RoundRolledBack {
                round: 1,
                reason: "x".repeat(MAX_REASON_BYTES + 1),
                added: 0,
                confidence_before: None,
                confidence_after: None,
            },
            LearningEvent::IncidentClosed {
                incident: 1,
                detectors: vec![String::new()],
            },
        ];
        for event in bad {
            assert!(event.check().is_err(), "{event:?}");
        }
    }
}
