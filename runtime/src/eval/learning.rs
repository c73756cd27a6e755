//! What the learning run did: its adaptation rounds (clusters applied, the guard's verdict)
//! and the classes the KNN holds at its end, collected from the per-frame notes.
//!
//! The scorecard says whether learning helped; this says what learning was, so that a bad
//! figure can be traced to the round that caused it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::autonomy::{Autonomy, Note};
use crate::pipeline::runner::{FrameReport, Observer};

/// One cluster a round applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `pseudo-label` (into a known class) or `new-class`.
    pub kind: String,
    /// The class its representatives went to.
    pub label: Option<String>,
    /// Quarantined samples in the cluster.
    pub members: usize,
    /// Representatives added to the KNN.
    pub added: usize,
    /// The members (the first [`MAX_EVENT_MEMBERS`](crate::adapt::MAX_EVENT_MEMBERS)) by
    /// what their frames truly showed, when the source knows: a pseudo-label's or a proposed
    /// class's members traced to the truth.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_truth: BTreeMap<String, usize>,
}

/// One adaptation round of the learning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The round's id.
    pub id: u64,
    /// Frame it was applied at.
    pub frame: u64,
    /// Scenario phase of that frame, when the source has phases.
    pub phase: Option<String>,
    /// What it changed.
    pub clusters: Vec<Cluster>,
    /// `kept`, `rolled back (<reason>)`, or `pending` when the run ended under guard.
    pub verdict: String,
}

/// What the learning run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LearningSummary {
    /// Frames of the learning stream.
    pub frames: u64,
    /// Adaptation rounds applied.
    pub rounds: u64,
    /// Rounds the guard kept.
    pub kept: u64,
    /// Rounds the guard rolled back.
    pub rolled_back: u64,
    /// Clusters pseudo-labelled into a known class (over all rounds, rolled back included).
    pub pseudo_labelled: u64,
    /// Clusters that became a new class (over all rounds, rolled back included).
    pub new_classes: u64,
    /// Drift incidents opened.
    pub incidents: u64,
    /// Samples quarantined.
    pub quarantined: u64,
    /// The rounds, in order.
    pub round_log: Vec<Round>,
    /// The KNN at the end: samples per class.
    pub knn_classes: BTreeMap<String, u64>,
}

/// Collects the rounds while the learning run goes.
#[derive(Debug, Default)]
pub struct RoundLog {
    /// The rounds so far.
    pub rounds: Vec<Round>,
    /// What each quarantined frame showed, by quarantine id (sources that know the truth),
    /// the newest [`TRUTH_KEPT`] (a round plans only the newest pending samples).
    truth_of: BTreeMap<u64, String>,
}

/// Quarantined frames whose truth the log keeps (a round plans at most
/// [`MAX_POINTS`](crate::adapt::MAX_POINTS) pending samples, the newest).
const TRUTH_KEPT: usize = 4 * crate::adapt::MAX_POINTS;

/// A unit enum's serde name (`pseudo-label`, `class-mix-explosion`): the names the event log
/// uses, and new variants need no change here.
fn serde_name<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{value:?}").to_lowercase(),
    }
}

impl Observer for RoundLog {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        let Some(a) = report.autonomy else { return };
        if let (Some(id), Some(label)) = (
            a.last().quarantined,
            report.truth.and_then(|t| t.label.as_ref()),
        ) {
            self.truth_of.insert(id, label.clone());
            if self.truth_of.len() > TRUTH_KEPT {
                self.truth_of.pop_first();
            }
        }
        for note in &a.last().notes {
            match note {
                Note::Applied(e) => {
                    let mut by_truth = BTreeMap::new();
                    for label in e.members.iter().filter_map(|m| self.truth_of.get(m)) {
                        *by_truth.entry(label.clone()).or_insert(0) += 1;
                    }
                    let cluster = Cluster {
                        kind: serde_name(&e.kind),
                        label: e.label.clone(),
                        members: e.member_count,
                        added: e.added.len(),
                        by_truth,
                    };
                    match self.rounds.iter_mut().find(|r| r.id == e.id) {
                        Some(r) => r.clusters.push(cluster),
                        None => self.rounds.push(Round {
                            id: e.id,
                            frame: report.frames,
                            phase: report.truth.and_then(|t| t.phase.clone()),
                            clusters: vec![cluster],
                            verdict: "pending".into(),
                        }),
                    }
                }
                Note::Kept(e) => self.verdict(e.id, "kept".into()),
                Note::RolledBack(e) => {
                    let why = e
                        .reason
                        .as_ref()
                        .map_or_else(String::new, |r| format!(" ({})", serde_name(r)));
                    self.verdict(e.id, format!("rolled back{why}"));
                }
            }
        }
    }
}

impl RoundLog {
    fn verdict(&mut self, id: u64, verdict: String) {
        if let Some(r) = self.rounds.iter_mut().find(|r| r.id == id) {
            r.verdict = verdict;
        }
    }

    /// The summary of a learning run of `frames` frames, ended with `autonomy` as it is now.
    pub fn summary(self, frames: u64, autonomy: &Autonomy) -> LearningSummary {
        let clusters = || self.rounds.iter().flat_map(|r| &r.clusters);
        let counts = autonomy.counts();
        LearningSummary {
            frames,
            rounds: self.rounds.len() as u64,
            kept: self.rounds.iter().filter(|r| r.verdict == "kept").count() as u64,
            rolled_back: self
                .rounds
                .iter()
                .filter(|r| r.verdict.starts_with("rolled back"))
                .count() as u64,
            pseudo_labelled: clusters().filter(|c| c.kind == "pseudo-label").count() as u64,
            new_classes: clusters().filter(|c| c.kind == "new-class").count() as u64,
            incidents: counts.incidents,
            quarantined: counts.quarantined,
            knn_classes: knn_classes(autonomy),
            round_log: self.rounds,
        }
    }
}

/// Samples per class the KNN holds (classes without samples left out).
pub fn knn_classes(autonomy: &Autonomy) -> BTreeMap<String, u64> {
    let Some(knn) = autonomy.knn() else {
        return BTreeMap::new();
    };
    knn.labels()
        .names()
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let n = knn.class_count(crate::knn::LabelId(i as u16));
            (n > 0).then(|| (name.clone(), n as u64))
        })
        .collect()
}
