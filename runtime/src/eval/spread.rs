//! The spread over runs: mean, minimum and maximum of every headline figure, so that a
//! claim about learning holds for all seeds and drift orders, not one lucky run.

use serde::{Deserialize, Serialize};

use super::report::RunResult;
use super::score::Scorecard;

/// Mean, minimum and maximum of a figure over runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut n = 0usize;
        let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        (n > 0).then(|| Spread {
            mean: sum / n as f64,
            min,
            max,
        })
    }

    fn counts(values: impl IntoIterator<Item = u64>) -> Spread {
        Spread::of(values.into_iter().map(|v| v as f64)).unwrap_or(Spread {
            mean: 0.0,
            min: 0.0,
            max: 0.0,
        })
    }
}

/// One phase's accuracy over runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpread {
    /// The phase (`overall`: all frames).
    pub phase: String,
    /// Accuracy of the initial state (0..=1).
    pub before: Spread,
    /// Accuracy of the learnt state (0..=1).
    pub after: Spread,
    /// After − before, per run.
    pub change: Spread,
    /// Runs in which learning lowered this phase's accuracy.
    pub runs_lower: usize,
}

/// The spread of everything over runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Runs.
    pub runs: usize,
    /// Accuracy per phase, in the first run's phase order.
    pub phases: Vec<PhaseSpread>,
    /// Accuracy over all held-out frames.
    pub overall: Option<PhaseSpread>,
    /// Proposed classes per run (after learning).
    pub proposed_classes: Spread,
    /// Spurious classes per run.
    pub spurious_classes: Spread,
    /// Spurious classes over all runs.
    pub spurious_total: usize,
    /// Proposed classes standing for an object the model does not know, per run.
    pub new_object_classes: Spread,
    /// Purity of those classes (over all runs' classes).
    pub new_object_purity: Option<Spread>,
    /// Recall of those classes (over all runs' classes).
    pub new_object_recall: Option<Spread>,
    /// Adaptation rounds per learning run.
    pub rounds: Spread,
    /// Rounds kept per learning run.
    pub kept: Spread,
    /// Rounds rolled back per learning run.
    pub rolled_back: Spread,
}

fn phase_spread(
    runs: &[RunResult],
    phase: &str,
    pick: impl Fn(&Scorecard) -> Option<f64>,
) -> Option<PhaseSpread> {
    let pairs: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|r| Some((pick(&r.before)?, pick(&r.after)?)))
        .collect();
    Some(PhaseSpread {
        phase: phase.to_string(),
        before: Spread::of(pairs.iter().map(|p| p.0))?,
        after: Spread::of(pairs.iter().map(|p| p.1))?,
        change: Spread::of(pairs.iter().map(|p| p.1 - p.0))?,
        runs_lower: pairs.iter().filter(|p| p.1 < p.0).count(),
    })
}

/// The spread of `runs`.
pub fn aggregate(runs: &[RunResult]) -> Aggregate {
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        for p in &r.after.phases {
            if !names.contains(&p.phase.as_str()) {
                names.push(&p.phase);
            }
        }
    }
    let phases = names
        .iter()
        .filter_map(|&name| phase_spread(runs, name, |s| s.phase(name).map(|p| p.accuracy)))
        .collect();
    let new_objects = || {
        runs.iter()
            .flat_map(|r| &r.after.proposed)
            .filter(|c| c.majority.is_some() && !c.spurious)
    };
    Aggregate {
        runs: runs.len(),
        phases,
        overall: phase_spread(runs, "overall", |s| Some(s.overall.accuracy)),
        proposed_classes: Spread::counts(runs.iter().map(|r| r.after.proposed.len() as u64)),
        spurious_classes: Spread::counts(runs.iter().map(|r| r.after.spurious as u64)),
        spurious_total: runs.iter().map(|r| r.after.spurious).sum(),
        new_object_classes: Spread::counts(runs.iter().map(|r| {
            r.after
                .proposed
                .iter()
                .filter(|c| c.majority.is_some() && !c.spurious)
                .count() as u64
        })),
        new_object_purity: Spread::of(new_objects().filter_map(|c| c.purity)),
        new_object_recall: Spread::of(new_objects().filter_map(|c| c.recall)),
        rounds: Spread::counts(runs.iter().map(|r| r.learning.rounds)),
        kept: Spread::counts(runs.iter().map(|r| r.learning.kept)),
        rolled_back: Spread::counts(runs.iter().map(|r| r.learning.rolled_back)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::confusion::Confusion;
    use crate::eval::learning::LearningSummary;

    fn run(before_hits: u64, after_hits: u64, spurious: bool) -> RunResult {
        let known: Vec<String> = ["ball", "box"].map(String::from).to_vec();
        let mut before = Confusion::default();
        before.add("normal", "ball", "ball", before_hits);
        before.add("normal", "ball", "box", 10 - before_hits);
        let mut after = Confusion::default();
        after.add("normal", "ball", "ball", after_hits);
        after.add("normal", "ball", "box", 10 - after_hits);
        after.add("noise", "box", "new-1", 2);
        after.add("noise", if spurious { "box" } else { "star" }, "new-1", 1);
        RunResult {
            seed: Some(1),
            order: None,
            held_out_seed: None,
            learning: LearningSummary {
                rounds: 2,
                rolled_back: 1,
                ..LearningSummary::default()
            },
            before: Scorecard::score(&before, &known, &[]),
            after: Scorecard::score(&after, &known, &[]),
            before_counts: before,
            after_counts: after,
        }
    }

    #[test]
    fn spread_is_mean_min_max() {
        let s = Spread::of([0.5, 1.0, 0.0]).unwrap();
        assert_eq!((s.mean, s.min, s.max), (0.5, 0.0, 1.0));
        assert!(Spread::of([]).is_none());
    }

    #[test]
    fn aggregate_counts_lowered_runs_and_spurious_classes() {
        let runs = [run(9, 8, true), run(8, 9, true), run(7, 7, true)];
        let a = aggregate(&runs);
        assert_eq!(a.runs, 3);
        let normal = &a.phases[0];
        assert_eq!(normal.phase, "normal");
        assert!((normal.before.mean - 0.8).abs() < 1e-12);
        assert!((normal.change.min + 0.1).abs() < 1e-12);
        assert!((normal.change.max - 0.1).abs() < 1e-12);
        assert_eq!(normal.runs_lower, 1);
        // The noise phase only has after-frames: no before to compare with.
        assert_eq!(a.phases.len(), 1);
        assert_eq!(a.spurious_total, 3);
        assert_eq!(a.spurious_classes.max, 1.0);
        assert_eq!(a.new_object_classes.max, 0.0);
        assert!(a.new_object_purity.is_none());
        assert_eq!(a.rolled_back.mean, 1.0);
    }

    #[test]
    fn a_new_object_class_has_purity_and_recall_over_runs() {
        // new-1: 3 star frames and 1 ball: it stands for the star, 3 of the 4 star frames.
        let mut after = Confusion::default();
        after.add("unseen", "star", "new-1", 3);
        after.add("unseen", "star", "box", 1);
        after.add("unseen", "ball", "new-1", 1);
        let known: Vec<String> = ["ball", "box"].map(String::from).to_vec();
        let mut r = run(9, 9, false);
        r.after = Scorecard::score(&after, &known, &[]);
        let a = aggregate(&[r]);
        assert_eq!(a.new_object_classes.mean, 1.0);
        assert!((a.new_object_purity.unwrap().mean - 0.75).abs() < 1e-12);
        assert!((a.new_object_recall.unwrap().mean - 0.75).abs() < 1e-12);
        assert_eq!(a.spurious_total, 0);
    }
}
