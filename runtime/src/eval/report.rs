//! The evaluation's machine-readable record: settings, every run (what learning did, the
//! before and after scorecards with their raw counts) and the spread over runs.
//!
//! Complete on purpose: adaptation is redesigned against these figures, so a figure in the
//! README must be traceable to the run, phase and proposed class it came from. Nothing here
//! depends on the clock or a temporary path, so the same seeds give the same JSON.

use serde::{Deserialize, Serialize};

use super::confusion::Confusion;
use super::learning::LearningSummary;
use super::score::Scorecard;
use super::spread::Aggregate;

/// Version of the JSON layout.
pub const FORMAT: u32 = 1;

/// What was evaluated and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum Settings {
    /// The synthetic scenario over seeds and drift orders.
    Synthetic {
        /// Seeds of the learning runs.
        seeds: Vec<u64>,
        /// Drift orders of the learning runs.
        orders: Vec<Vec<String>>,
        /// Frames per drift phase of a learning run (normal stretches are 2–3 × this).
        phase_frames: u64,
        /// Held-out frames per phase.
        eval_frames: u64,
        /// Held-out seed = learning seed + this.
        held_out_seed_offset: u64,
    },
    /// A user's replay folders.
    Replay {
        /// The learning stream (file order).
        learn: String,
        /// The held-out folder (class sub-folders, optionally under phase folders).
        held_out: String,
    },
}

/// One learning run and its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Seed of the learning scenario (synthetic runs).
    pub seed: Option<u64>,
    /// Drift order of the learning scenario (synthetic runs).
    pub order: Option<Vec<String>>,
    /// Seed of the held-out frames (synthetic runs).
    pub held_out_seed: Option<u64>,
    /// What learning did.
    pub learning: LearningSummary,
    /// The initial state on the held-out frames.
    pub before: Scorecard,
    /// The learnt state, frozen, on the same held-out frames.
    pub after: Scorecard,
    /// The raw counts behind `before`.
    pub before_counts: Confusion,
    /// The raw counts behind `after`.
    pub after_counts: Confusion,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`FORMAT`].
    pub format: u32,
    /// The model evaluated (its origin, e.g. `builtin:default-f32` or a path).
    pub model: String,
    /// The labels it knows: any other predicted label is a proposed class.
    pub known: Vec<String>,
    /// How the runs were made.
    pub settings: Settings,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Spread over the runs.
    pub aggregate: Aggregate,
}
