//! `tinylcm eval`: what the device learns, scored against the truth on held-out frames.
//!
//! Drift detection has its measurements; learning had none, and what the adaptation rounds
//! added could make the model worse without anything noticing (the guard only sees
//! label-free proxies). Here a learning run goes through a stream with adaptation on; then
//! the initial state ("before") and the learnt state ("after"), frozen, classify the same
//! held-out frames whose truth is known, and the [`Scorecard`] compares them per phase and
//! judges every class the device proposed (its majority object, purity, recall, spurious
//! or not). Over several seeds and drift orders the [`Aggregate`] gives the spread.
//!
//! ```text
//! per seed s:   held-out frames (seed s + 1000, every phase) ── initial state ──► before
//!   per order:  learning scenario (seed s, drift order) ──► learnt state (temp folder)
//!               copy of learnt state, frozen ── held-out frames ──► after
//! ```
//!
//! Files: [`scenario`] (the synthetic streams), [`heldout`] (a user's held-out folder),
//! [`session`] (learn and frozen evaluation on one loaded model), [`confusion`] (the counts),
//! [`learning`] (what the rounds did), [`score`] (the rules), [`spread`] (over runs),
//! [`report`] (the JSON record).

pub mod confusion;
pub mod heldout;
pub mod learning;
pub mod report;
pub mod scenario;
pub mod score;
pub mod session;
pub mod spread;

use std::path::{Path, PathBuf};

pub use confusion::{Confusion, Recorder};
pub use learning::LearningSummary;
pub use report::{Report, RunResult, Settings};
pub use scenario::{DriftOrder, HELD_OUT_SEED_OFFSET};
pub use score::{PhaseScore, ProposedClass, Scorecard};
pub use session::{HeldOut, Session};
pub use spread::{Aggregate, PhaseSpread, Spread};

use crate::assemble::AssembleError;
use crate::config::Config;
use crate::config_error::ConfigError;
use crate::frame::{DirectoryConfig, FrameError, OnError, SourceConfig, SourceKind};

/// Failures of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Model, engine, state store or autonomy layer could not start.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A frame source could not be opened.
    #[error(transparent)]
    Source(#[from] FrameError),
    /// A run stopped.
    #[error("the pipeline stopped: {0}")]
    Run(#[from] crate::pipeline::runner::RunError),
    /// The learnt state could not be saved.
    #[error("cannot save the learnt state: {0}")]
    State(#[from] crate::state::StateError),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The held-out folder has no truth to score against.
    #[error("held-out folder {path}: {reason}")]
    HeldOut {
        /// The folder.
        path: PathBuf,
        /// What is wrong and the layout it should have.
        reason: String,
    },
    /// The KNN changed while it was scored (a bug: scores would be of a moving state).
    #[error("the KNN changed during a frozen evaluation; the scores would be meaningless")]
    NotFrozen,
}

/// The synthetic evaluation: learning seeds × drift orders.
#[derive(Debug, Clone)]
pub struct SyntheticPlan {
    /// Seeds of the learning scenarios.
    pub seeds: Vec<u64>,
    /// Drift orders of the learning scenarios.
    pub orders: Vec<DriftOrder>,
    /// Frames per drift phase of a learning scenario.
    pub phase_frames: u64,
    /// Held-out frames per phase.
    pub eval_frames: u64,
}

/// Run `plan` with the model, KNN, detector and adaptation settings of `base` (its source is
/// replaced; the scene's size is kept); `progress` sees each run as it ends.
pub fn synthetic(
    base: &Config,
    plan: &SyntheticPlan,
    progress: &mut dyn FnMut(&RunResult),
) -> Result<Report, EvalError> {
    let mut session = Session::open(base)?;
    let known = session.known().to_vec();
    let mut runs = Vec::new();
    for &seed in &plan.seeds {
        let held_out_seed = seed.saturating_add(HELD_OUT_SEED_OFFSET);
        let held_out = [HeldOut {
            phase: None,
            source: scenario::synthetic(
                base,
                held_out_seed,
                scenario::held_out_phases(plan.eval_frames),
            )
            .source,
        }];
        // The initial state is the same for every order: scored once per seed.
        let before = session.evaluate(None, &held_out)?;
        for order in &plan.orders {
            let learn =
                scenario::synthetic(base, seed, order.learning_phases(plan.phase_frames)).source;
            let run = learn_and_score(&mut session, &learn, &held_out, &before, &known)?;
            let run = RunResult {
                seed: Some(seed),
                order: Some(order.names()),
                held_out_seed: Some(held_out_seed),
                ..run
            };
            progress(&run);
            runs.push(run);
        }
    }
    Ok(Report {
        format: report::FORMAT,
        model: session.origin().to_string(),
        known,
        settings: Settings::Synthetic {
            seeds: plan.seeds.clone(),
            orders: plan.orders.iter().map(DriftOrder::names).collect(),
            phase_frames: plan.phase_frames,
            eval_frames: plan.eval_frames,
            held_out_seed_offset: HELD_OUT_SEED_OFFSET,
        },
        aggregate: spread::aggregate(&runs),
        runs,
    })
}

/// Learn from the images of `learn` (file order; sub-folders included), then score the
/// initial and the learnt state on the held-out folder `held_out` (see [`heldout`]).
pub fn replay(base: &Config, learn: &Path, held_out: &Path) -> Result<Report, EvalError> {
    let phases = heldout::layout(held_out)?;
    let folder = |path: &Path| {
        let mut source = base.source.clone();
        source.kind = SourceKind::Directory;
        source.directory = DirectoryConfig {
            path: path.to_path_buf(),
            labels_from_folders: true,
            looping: false,
            fps: 0.0,
            on_error: OnError::Skip,
        };
        source
    };
    let held: Vec<HeldOut> = phases
        .iter()
        .map(|p| HeldOut {
            phase: p.phase.clone(),
            source: folder(&p.dir),
        })
        .collect();
    let mut session = Session::open(base)?;
    let known = session.known().to_vec();
    let before = session.evaluate(None, &held)?;
    let run = learn_and_score(&mut session, &folder(learn), &held, &before, &known)?;
    let runs = vec![run];
    Ok(Report {
        format: report::FORMAT,
        model: session.origin().to_string(),
        known,
        settings: Settings::Replay {
            learn: learn.display().to_string(),
            held_out: held_out.display().to_string(),
        },
        aggregate: spread::aggregate(&runs),
        runs,
    })
}

/// One learning run from `learn` in a fresh folder, scored on `held_out` against `before`.
fn learn_and_score(
    session: &mut Session,
    learn: &SourceConfig,
    held_out: &[HeldOut],
    before: &session::Evaluated,
    known: &[String],
) -> Result<RunResult, EvalError> {
    let dir = session::temp_dir()?;
    let learning = session.learn(learn, dir.path())?;
    let after = session.evaluate(Some(dir.path()), held_out)?;
    Ok(RunResult {
        seed: None,
        order: None,
        held_out_seed: None,
        learning,
        before: Scorecard::score(&before.confusion, known, &before.classes),
        after: Scorecard::score(&after.confusion, known, &after.classes),
        before_counts: before.confusion.clone(),
        after_counts: after.confusion,
    })
}
