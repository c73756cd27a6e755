//! The scorecard: held-out accuracy per phase, and for every class the device proposed on
//! its own, which true object it stands for, how pure it is and how much of that object
//! it catches.
//!
//! Why these rules: a proposed class (`new-1`) has no name until a human gives one, so it can
//! be neither right nor wrong by itself. The human would name it after the object most of
//! its frames show (its *majority truth*); frames predicted as it count as correct exactly
//! when they show that object. A class whose majority truth is an object the model already
//! knows was proposed for a nuisance shift of a known object (lighting, noise): the human
//! would have nothing new to name, so it is *spurious* and all its frames count as wrong.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::confusion::Confusion;

/// Accuracy of one phase (or of all frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseScore {
    /// The phase.
    pub phase: String,
    /// Labelled frames.
    pub frames: u64,
    /// Frames counted as correct (see the module's rules).
    pub correct: u64,
    /// `correct / frames` (0..=1; 0 without frames).
    pub accuracy: f64,
}

impl PhaseScore {
    fn new(phase: &str, correct: u64, frames: u64) -> Self {
        PhaseScore {
            phase: phase.to_string(),
            frames,
            correct,
            accuracy: ratio(correct, frames).unwrap_or(0.0),
        }
    }
}

/// A class the device proposed (a label the model does not have), judged on held-out frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedClass {
    /// Its label (e.g. `new-1`).
    pub label: String,
    /// Held-out frames predicted as it.
    pub predicted_frames: u64,
    /// Those frames by true object.
    pub by_truth: BTreeMap<String, u64>,
    /// Those frames by phase.
    pub by_phase: BTreeMap<String, u64>,
    /// The object most of its frames show (ties: the label that sorts first); `None` when no
    /// held-out frame was predicted as it.
    pub majority: Option<String>,
    /// Frames predicted as it that show the majority object.
    pub majority_frames: u64,
    /// Held-out frames of the majority object, in all phases.
    pub majority_total: u64,
    /// `majority_frames / predicted_frames`.
    pub purity: Option<f64>,
    /// `majority_frames / majority_total`.
    pub recall: Option<f64>,
    /// Its majority object is one the model already knows: proposed for a nuisance shift.
    pub spurious: bool,
}

/// Everything scored on one set of held-out frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// The labels the model knows (a prediction outside them is a proposed class).
    pub known: Vec<String>,
    /// Accuracy per phase, in the order the phases came.
    pub phases: Vec<PhaseScore>,
    /// Accuracy over all labelled frames.
    pub overall: PhaseScore,
    /// Proposed classes, by label.
    pub proposed: Vec<ProposedClass>,
    /// Proposed classes that are spurious.
    pub spurious: usize,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Scorecard {
    /// Score `confusion` for a model that knows `known`; `learnt` names the proposed classes
    /// the KNN holds, so that one no held-out frame was predicted as is still listed.
    pub fn score(confusion: &Confusion, known: &[String], learnt: &[String]) -> Scorecard {
        let is_known = |label: &str| known.iter().any(|k| k == label);
        let mut truth_totals: BTreeMap<&str, u64> = BTreeMap::new();
        let mut proposed: BTreeMap<String, ProposedClass> = BTreeMap::new();
        for label in learnt.iter().filter(|l| !is_known(l)) {
            proposed.insert(label.clone(), ProposedClass::empty(label));
        }
        for (phase, truth, predicted, n) in confusion.cells() {
            *truth_totals.entry(truth).or_default() += n;
            if is_known(predicted) {
                continue;
            }
            let class = proposed
                .entry(predicted.to_string())
                .or_insert_with(|| ProposedClass::empty(predicted));
            class.predicted_frames += n;
            *class.by_truth.entry(truth.to_string()).or_default() += n;
            *class.by_phase.entry(phase.to_string()).or_default() += n;
        }
        for class in proposed.values_mut() {
            // The first maximum in label order: `max_by_key` would keep the last one.
            let mut best: Option<(&String, u64)> = None;
            for (truth, &n) in &class.by_truth {
                if best.is_none_or(|(_, b)| n > b) {
                    best = Some((truth, n));
                }
            }
            if let Some((truth, n)) = best {
                class.majority = Some(truth.clone());
                class.majority_frames = n;
                class.majority_total = truth_totals.get(truth.as_str()).copied().unwrap_or(0);
                class.purity = ratio(n, class.predicted_frames);
                class.recall = ratio(n, class.majority_total);
                class.spurious = is_known(truth);
            }
        }
        let correct = |truth: &str, predicted: &str| {
            if is_known(predicted) {
                predicted == truth
            } else {
                proposed
                    .get(predicted)
                    .is_some_and(|c| !c.spurious && c.majority.as_deref() == Some(truth))
            }
        };
        let mut phases = Vec::with_capacity(confusion.phases.len());
        let (mut all_correct, mut all_frames) = (0, 0);
        for p in &confusion.phases {
            let (mut hits, mut frames) = (0, 0);
            for (truth, row) in &p.counts {
                for (predicted, &n) in row {
                    frames += n;
                    if correct(truth, predicted) {
                        hits += n;
                    }
                }
            }
            all_correct += hits;
            all_frames += frames;
            phases.push(PhaseScore::new(&p.phase, hits, frames));
        }
        let proposed: Vec<ProposedClass> = proposed.into_values().collect();
        Scorecard {
            known: known.to_vec(),
            phases,
            overall: PhaseScore::new("overall", all_correct, all_frames),
            spurious: proposed.iter().filter(|c| c.spurious).count(),
            proposed,
        }
    }

    /// The score of `phase`, if it had frames.
    pub fn phase(&self, phase: &str) -> Option<&PhaseScore> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

impl ProposedClass {
    fn empty(label: &str) -> Self {
        ProposedClass {
            label: label.to_string(),
            predicted_frames: 0,
            by_truth: BTreeMap::new(),
            by_phase: BTreeMap::new(),
            majority: None,
            majority_frames: 0,
            majority_total: 0,
            purity: None,
            recall: None,
            spurious: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["empty", "ball", "box", "bar"].map(String::from).to_vec()
    }

    /// A hand-built held-out run: 10 normal frames (1 ball missed as box), 10 lighting frames
    /// of which 6 `empty` frames went to a spurious `new-1`, 10 unseen frames (8 stars, 6 of
    /// them in `new-2` with 1 ball; 2 stars called box), 4 noise frames.
    fn confusion() -> Confusion {
        let mut c = Confusion::default();
        c.add("normal", "ball", "ball", 5);
        c.add("normal", "ball", "box", 1);
        c.add("normal", "box", "box", 4);
        c.add("lighting", "empty", "new-1", 6);
        c.add("lighting", "empty", "empty", 2);
        c.add("lighting", "box", "box", 2);
        c.add("unseen", "star", "new-2", 6);
        c.add("unseen", "star", "box", 2);
        c.add("unseen", "ball", "new-2", 1);
        c.add("unseen", "ball", "ball", 1);
        c.add("noise", "bar", "bar", 3);
        c.add("noise", "empty", "new-1", 1);
        c
    }

    #[test]
    fn proposed_classes_get_majority_purity_recall_and_spurious() {
        let s = Scorecard::score(&confusion(), &known(), &["new-3".into()]);
        let labels: Vec<_> = s.proposed.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["new-1", "new-2", "new-3"]);
        let new1 = &s.proposed[0];
        assert_eq!(new1.majority.as_deref(), Some("empty"));
        assert_eq!(new1.predicted_frames, 7);
        assert_eq!(new1.purity, Some(1.0));
        // 9 empty frames in all (6 + 2 lighting, 1 noise), 7 of them in new-1.
        assert_eq!(new1.majority_total, 9);
        assert!((new1.recall.unwrap() - 7.0 / 9.0).abs() < 1e-12);
        assert!(new1.spurious);
        assert_eq!(new1.by_phase["lighting"], 6);
        assert_eq!(new1.by_phase["noise"], 1);
        let new2 = &s.proposed[1];
        assert_eq!(new2.majority.as_deref(), Some("star"));
        assert!((new2.purity.unwrap() - 6.0 / 7.0).abs() < 1e-12);
        assert!((new2.recall.unwrap() - 6.0 / 8.0).abs() < 1e-12);
        assert!(!new2.spurious);
        // Learnt but never predicted on held-out frames: listed, not judged.
        let new3 = &s.proposed[2];
        assert_eq!((new3.predicted_frames, new3.majority.as_ref()), (0, None));
        assert_eq!(
            (new3.purity, new3.recall, new3.spurious),
            (None, None, false)
        );
        assert_eq!(s.spurious, 1);
    }

    #[test]
    fn accuracy_counts_a_named_new_class_and_never_a_spurious_one() {
        let s = Scorecard::score(&confusion(), &known(), &[]);
        let acc = |p: &str| {
            let p = s.phase(p).unwrap();
            (p.correct, p.frames)
        };
        assert_eq!(acc("normal"), (9, 10));
        // new-1 is spurious: its 6 empty frames are wrong although their truth is its majority.
        assert_eq!(acc("lighting"), (4, 10));
        // new-2 stands for the star: its 6 star frames are right, its ball frame wrong.
        assert_eq!(acc("unseen"), (7, 10));
        assert_eq!(acc("noise"), (3, 4));
        assert_eq!((s.overall.correct, s.overall.frames), (23, 34));
        assert!((s.phase("unseen").unwrap().accuracy - 0.7).abs() < 1e-12);
        let order: Vec<_> = s.phases.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(order, ["normal", "lighting", "unseen", "noise"]);
    }

    #[test]
    fn a_tie_goes_to_the_label_that_sorts_first() {
        let mut c = Confusion::default();
        c.add("unseen", "star", "new-1", 2);
        c.add("unseen", "ball", "new-1", 2);
        let s = Scorecard::score(&c, &known(), &[]);
        assert_eq!(s.proposed[0].majority.as_deref(), Some("ball"));
        assert!(s.proposed[0].spurious);
        assert_eq!(s.overall.correct, 0);
    }

    #[test]
    fn without_proposed_classes_accuracy_is_exact_match() {
        let mut c = Confusion::default();
        c.add("all", "ball", "ball", 3);
        c.add("all", "star", "ball", 1);
        let s = Scorecard::score(&c, &known(), &[]);
        assert!(s.proposed.is_empty());
        assert_eq!(s.spurious, 0);
        assert_eq!((s.overall.correct, s.overall.frames), (3, 4));
    }
}
