//! Learning and frozen evaluation on one loaded model: the two kinds of run the scorecard
//! is made of.
//!
//! *Learn* runs a stream with a fresh state folder, adaptation as configured and no feedback
//! inbox (the score is of what the device learns on its own). *Evaluate* runs held-out
//! frames on a copy of a learnt state folder (or a fresh one: the initial state) with the
//! KNN frozen: adaptation and quarantine off, no inbox; it checks at the end that the KNN
//! is exactly what it started with, so a score is never of a state that changed under it.
//! The model and its engine are opened once and reused: inference keeps no state between
//! frames.

use std::path::Path;
use std::sync::Arc;

use crate::assemble;
use crate::config::Config;
use crate::config_error::ConfigError;
use crate::frame::{self, SourceConfig};
use crate::model::LoadedModel;
use crate::pipeline::Pipeline;
use crate::pipeline::runner::{self, RunOptions};

use super::EvalError;
use super::confusion::{Confusion, Recorder};
use super::learning::{LearningSummary, RoundLog, knn_classes};

/// The state database's file name in a state folder (see [`assemble::state_in`]).
const STATE_FILE: &str = "state.redb";

/// Held-out frames: a source, and the phase its frames count under when it has none.
#[derive(Debug, Clone)]
pub struct HeldOut {
    /// Phase name for a source without phases (a held-out phase folder).
    pub phase: Option<String>,
    /// The frames.
    pub source: SourceConfig,
}

/// What a frozen evaluation saw.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// (phase, truth, predicted) counts.
    pub confusion: Confusion,
    /// The classes the evaluated KNN holds.
    pub classes: Vec<String>,
}

/// One loaded model, its engine, and the labels it knows.
pub struct Session {
    base: Config,
    model: LoadedModel,
    pipeline: Pipeline,
    known: Vec<String>,
}

/// A fresh temporary folder.
pub fn temp_dir() -> Result<tempfile::TempDir, EvalError> {
    tempfile::Builder::new()
        .prefix("tinylcm-eval-")
        .tempdir()
        .map_err(|source| EvalError::Io {
            path: std::env::temp_dir(),
            source,
        })
}

impl Session {
    /// Load the model of `base` and open its engine.
    pub fn open(base: &Config) -> Result<Session, EvalError> {
        if !base.autonomy.enabled {
            return Err(ConfigError::new(
                "autonomy.enabled",
                "the autonomy layer is off, so nothing is learnt or scored",
                "set `[autonomy] enabled = true` for the evaluation",
            )
            .into());
        }
        if !base.adaptation.enabled {
            tracing::warn!(
                "adaptation is off in the configuration: the learnt state is the initial one"
            );
        }
        let model = assemble::load_model(&base.model).map_err(assemble::AssembleError::from)?;
        let pipeline = assemble::pipeline(base, &model)?;
        let mut known: Vec<String> = pipeline.labels().to_vec();
        // A state built from folders may name classes the model's head does not have: they
        // are the model's too, not proposed ones.
        let initial = assemble::initial_state(&base.model)
            .map_err(|e| assemble::AssembleError::Autonomy(e.into()))?;
        if let Some((_, state)) = initial {
            let knn = state
                .knn()
                .map_err(|e| assemble::AssembleError::Autonomy(e.into()))?;
            for (i, name) in knn.labels().names().iter().enumerate() {
                let has_samples = knn.class_count(crate::knn::LabelId(i as u16)) > 0;
                if has_samples && !known.contains(name) {
                    known.push(name.clone());
                }
            }
        }
        Ok(Session {
            base: base.clone(),
            model,
            pipeline,
            known,
        })
    }

    /// The labels the model knows.
    pub fn known(&self) -> &[String] {
        &self.known
    }

    /// Where the model comes from (`builtin:...` or its path).
    pub fn origin(&self) -> &str {
        &self.model.origin
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            capture_depth: self.base.run.capture_depth,
            ..RunOptions::default()
        }
    }

    /// Learn from `source` with a fresh state in `dir` (which must be empty), as configured.
    pub fn learn(
        &mut self,
        source: &SourceConfig,
        dir: &Path,
    ) -> Result<LearningSummary, EvalError> {
        let mut config = self.base.clone();
        config.source = source.clone();
        assemble::state_in(&mut config, dir);
        config.status.enabled = false;
        config.validate()?;
        let mut frames = frame::open(&config.source)?;
        let store = assemble::store(&config)?;
        let mut autonomy =
            assemble::autonomy_with(&config, &self.model, &self.pipeline, Some(store), false)?;
        let mut log = RoundLog::default();
        let options = self.options();
        let summary = runner::run_with(
            frames.as_mut(),
            &mut self.pipeline,
            Some(&mut autonomy),
            &options,
            &mut log,
        )?;
        autonomy.finish()?;
        let learnt = log.summary(summary.frames, &autonomy);
        // Close the database before `evaluate` copies its file: an open redb file copied
        // is marked as not closed and must be repaired when the copy is opened.
        let store = autonomy.store().cloned();
        drop(autonomy);
        if let Some(store) = store.and_then(Arc::into_inner) {
            store.close()?;
        }
        Ok(learnt)
    }

    /// Evaluate the state learnt in `learnt` (`None`: the initial state) on `held_out`, frozen,
    /// on a copy of its state file.
    pub fn evaluate(
        &mut self,
        learnt: Option<&Path>,
        held_out: &[HeldOut],
    ) -> Result<Evaluated, EvalError> {
        let dir = temp_dir()?;
        if let Some(learnt) = learnt {
            let from = learnt.join(STATE_FILE);
            let to = dir.path().join(STATE_FILE);
            std::fs::copy(&from, &to).map_err(|source| EvalError::Io { path: from, source })?;
        }
        let mut config = self.base.clone();
        assemble::state_in(&mut config, dir.path());
        config.adaptation.enabled = false;
        config.quarantine.enabled = false;
        config.status.enabled = false;
        config.validate()?;
        let store = assemble::store(&config)?;
        let mut autonomy =
            assemble::autonomy_with(&config, &self.model, &self.pipeline, Some(store), false)?;
        let knn_at_start = autonomy.knn().map(crate::knn::Knn::to_state);
        let mut recorder = Recorder::default();
        let options = self.options();
        for h in held_out {
            recorder.phase = h.phase.clone();
            let mut frames = frame::open(&h.source)?;
            runner::run_with(
                frames.as_mut(),
                &mut self.pipeline,
                Some(&mut autonomy),
                &options,
                &mut recorder,
            )?;
        }
        if autonomy.knn().map(crate::knn::Knn::to_state) != knn_at_start {
            return Err(EvalError::NotFrozen);
        }
        Ok(Evaluated {
            confusion: recorder.confusion,
            classes: knn_classes(&autonomy).into_keys().collect(),
        })
    }
}
