//! Learning must earn its keep: on the default scenario (default phase lengths) over three
//! seeds, what the device learns on its own must not lower held-out accuracy in any phase
//! (normal within 0.5 point), and no class may be proposed for a nuisance shift of a known
//! object (spurious classes = 0). The scorecard is `tinylcm eval`'s (see `tinylcm::eval`).
//! The genuinely new object (the star) must also become one proposed class, pure on held-out
//! frames.

use tinylcm::config::Config;
use tinylcm::eval::{self, DriftOrder, SyntheticPlan};

/// Tolerance of the normal phase, in accuracy (0.5 point; one held-out frame of 200).
const NORMAL_TOLERANCE: f64 = 0.005;
/// Least share of the held-out frames a proposed class takes that must show its object.
const MIN_PURITY: f64 = 0.9;

/// The scorecard of the default configuration on seeds 1–3, demo drift order.
fn default_scenario_on_three_seeds() -> eval::Report {
    let plan = SyntheticPlan {
        seeds: vec![1, 2, 3],
        orders: vec![DriftOrder::defaults()[0].clone()],
        phase_frames: 200,
        eval_frames: 200,
    };
    let config = Config::default();
    config.validate().unwrap();
    eval::synthetic(&config, &plan, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/fetch-libs first)"))
}

#[test]
fn learning_on_the_default_scenario_never_lowers_held_out_accuracy_nor_proposes_spurious_classes() {
    let report = default_scenario_on_three_seeds();
    let mut failures = Vec::new();
    for run in &report.runs {
        let seed = run.seed.unwrap_or(0);
        for after in &run.after.phases {
            let Some(before) = run.before.phase(&after.phase) else {
                continue;
            };
            let tolerance = if after.phase == "normal" {
                NORMAL_TOLERANCE
            } else {
                0.0
            };
            if after.accuracy + tolerance < before.accuracy {
                failures.push(format!(
                    "seed {seed}: {} accuracy {:.1} % → {:.1} % after learning",
                    after.phase,
                    before.accuracy * 100.0,
                    after.accuracy * 100.0
                ));
            }
        }
        // Every applied cluster is traced to what its members' frames truly showed.
        for round in &run.learning.round_log {
            for cluster in &round.clusters {
                let traced: usize = cluster.by_truth.values().sum();
                if traced != cluster.members.min(tinylcm::adapt::MAX_EVENT_MEMBERS) {
                    failures.push(format!(
                        "seed {seed}: round {} traced {traced} of {} members to the truth",
                        round.id, cluster.members
                    ));
                }
            }
        }
        for class in run.after.proposed.iter().filter(|c| c.spurious) {
            failures.push(format!(
                "seed {seed}: spurious class {} ({} held-out frames, {:.0} % of them {}, by phase {:?})",
                class.label,
                class.predicted_frames,
                class.purity.unwrap_or(0.0) * 100.0,
                class.majority.as_deref().unwrap_or("-"),
                class.by_phase
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "learning made the model worse on held-out frames:\n  {}",
        failures.join("\n  ")
    );
}

/// The genuinely new object (the star, never trained on) becomes exactly one proposed class
/// that is at least 90 % pure on held-out frames, in the demo's drift order, seeds 1–3.
///
/// Fails before this change: the 32-d default model never proposed the star (0 proposed
/// classes in every seed; its embedding placed the star next to `box`). Measured with the
/// default model and settings over 5 seeds × both drift orders (`tinylcm eval`): one star
/// class in 10 of 10 runs, 98.9–100 % pure (recall 42.6–58.6 %), 0 spurious classes, and no
/// phase lower after learning (normal −0.5 point once, within its tolerance).
#[test]
fn the_unseen_star_becomes_one_proposed_class_pure_on_held_out_frames() {
    let report = default_scenario_on_three_seeds();
    let mut failures = Vec::new();
    for run in &report.runs {
        let seed = run.seed.unwrap_or(0);
        // The star, never trained on, must become exactly one proposed class that takes
        // (almost) nothing but star frames on held-out data.
        let stars: Vec<_> = run
            .after
            .proposed
            .iter()
            .filter(|c| c.majority.as_deref() == Some("star"))
            .collect();
        match stars.as_slice() {
            [one] if one.purity.unwrap_or(0.0) >= MIN_PURITY => {}
            [one] => failures.push(format!(
                "seed {seed}: the star's class {} is {:.0} % pure on held-out frames (at least \
                 {:.0} % needed): {:?}",
                one.label,
                one.purity.unwrap_or(0.0) * 100.0,
                MIN_PURITY * 100.0,
                one.by_truth
            )),
            many => failures.push(format!(
                "seed {seed}: the unseen star became {} proposed classes, not one ({:?})",
                many.len(),
                many.iter().map(|c| &c.label).collect::<Vec<_>>()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "the unseen object did not become one pure class:\n  {}",
        failures.join("\n  ")
    );
}

/// Held-out normal accuracy before and after learning, with `config`, on seed 1.
fn normal_after_learning(config: &Config) -> (f64, f64, Vec<String>) {
    let plan = SyntheticPlan {
        seeds: vec![1],
        orders: vec![DriftOrder::defaults()[0].clone()],
        phase_frames: 200,
        eval_frames: 200,
    };
    let report = eval::synthetic(config, &plan, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/fetch-libs first)"));
    let run = &report.runs[0];
    let normal = |card: &eval::Scorecard| card.phase("normal").expect("normal phase").accuracy;
    let verdicts = run
        .learning
        .round_log
        .iter()
        .map(|r| r.verdict.clone())
        .collect();
    (normal(&run.before), normal(&run.after), verdicts)
}

/// A round built to be bad is rolled back by the guard's evidence that can see harm. The
/// planner's own safeguards are loosened — every quarantined sample of a local change in one
/// cluster (radius 50, compactness 100), pseudo-labelled with its nearest class however far
/// (near-factor 99), up to 256 representatives — so frames of several objects reach the KNN
/// under one label. Without the protected set (`protected-drop = 1`, the check off) the same
/// learning lowers held-out normal accuracy (measured with the default model: 98.5 % →
/// 94.0 %); with it, the round that moved the original samples' boundaries is rolled back at
/// once and normal accuracy holds (98.5 % → 98.5 %).
#[test]
fn a_round_built_to_tempt_is_rolled_back_by_the_protected_samples() {
    let mut tempting = Config::default();
    tempting.adaptation.radius = 50.0;
    tempting.adaptation.compactness = 100.0;
    tempting.adaptation.near_factor = 99.0;
    tempting.adaptation.far_factor = 100.0;
    tempting.adaptation.representatives = 256;
    tempting.validate().unwrap();
    let mut unguarded = tempting.clone();
    unguarded.adaptation.protected_drop = 1.0;

    let (before, after, verdicts) = normal_after_learning(&unguarded);
    assert!(
        after + NORMAL_TOLERANCE < before,
        "the tempting settings no longer make a harmful round ({before} → {after}, {verdicts:?}): \
         the test shows nothing"
    );
    let (before, after, verdicts) = normal_after_learning(&tempting);
    assert!(
        verdicts
            .iter()
            .any(|v| v == "rolled back (protected-samples)"),
        "no round rolled back for the protected samples: {verdicts:?}"
    );
    assert!(
        after + NORMAL_TOLERANCE >= before,
        "guarded learning still lowered normal accuracy {before} → {after} ({verdicts:?})"
    );
}
